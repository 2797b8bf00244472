"""Importers: LIBERO hdf5 demo files and LeRobot-format LIBERO datasets into our schema."""

import json

import h5py
import numpy as np
import pytest

from generation.data.importers import (
    DatasetImportError,
    fit_images,
    import_lerobot_dataset,
    import_libero_hdf5,
    tasks_by_language,
)
from generation.data.reader import load_episodes, read_episode_meta
from generation.data.schema import ENV_STATE_DIM, IMAGE_KEY, WRIST_IMAGE_KEY, DatasetSpec
from generation.envs.suites import get_task, init_states


@pytest.fixture(autouse=True)
def _private_caches(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(home / "hf_datasets"))
    monkeypatch.setenv("HF_LEROBOT_HOME", str(home / "lerobot"))


def _pattern_images(n: int, size: int, seed: int) -> np.ndarray:
    """Asymmetric frames: a bright top-left corner and a per-frame random body."""
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 200, (n, size, size, 3), dtype=np.uint8)
    imgs[:, :4, :8] = 255
    return imgs


def _write_hdf5(path, task, n_demos=2, T=10, size=32, bddl=True, drop=None):
    sim_state = init_states(task.suite, task.index)[0]
    rng = np.random.default_rng(0)
    demos = []
    with h5py.File(path, "w") as f:
        grp = f.create_group("data")
        grp.attrs["problem_info"] = json.dumps(
            {"problem_name": "libero_tabletop_manipulation", "language_instruction": task.language}
        )
        grp.attrs["env_args"] = json.dumps(
            {"type": 1, "env_name": "x", "bddl_file": task.bddl_file}
        )
        if bddl:
            grp.attrs["bddl_file_name"] = task.bddl_file
        for i in range(n_demos):
            d = {
                "actions": rng.uniform(-1, 1, (T, 7)),
                "states": np.repeat(sim_state[None], T, axis=0),
                "obs/agentview_rgb": _pattern_images(T, size, seed=2 * i),
                "obs/eye_in_hand_rgb": _pattern_images(T, size, seed=2 * i + 1),
                "obs/ee_pos": rng.normal(size=(T, 3)),
                "obs/ee_ori": rng.normal(size=(T, 3)),
                "obs/gripper_states": rng.uniform(-0.04, 0.04, (T, 2)),
                "obs/joint_states": rng.normal(size=(T, 7)),
                "dones": np.eye(T, dtype=np.uint8)[-1],
            }
            for k, v in d.items():
                if k != drop:
                    grp.create_dataset(f"demo_{i}/{k}", data=v)
            demos.append(d)
    return demos


@pytest.fixture(scope="module")
def object_task():
    return get_task("libero_object", 0)


def test_hdf5_round_trip(tmp_path, object_task):
    path = tmp_path / f"{object_task.name}_demo.hdf5"
    demos = _write_hdf5(path, object_task)
    spec = DatasetSpec(image_size=32, wrist_image=True)
    root = import_libero_hdf5([path], tmp_path / "out", spec)

    meta = read_episode_meta(root)
    assert len(meta) == 2 and set(meta.source) == {"imported"}
    assert set(meta.suite) == {"libero_object"} and set(meta.task_index) == {0}
    assert set(meta.settle_steps) == {0} and meta.success.all()
    back = load_episodes(root)
    for d, ep in zip(demos, back, strict=True):
        np.testing.assert_allclose(ep.actions, d["actions"].astype(np.float32))
        state = np.concatenate([d["obs/ee_pos"], d["obs/ee_ori"], d["obs/gripper_states"]], axis=1)
        np.testing.assert_allclose(ep.states, state.astype(np.float32))
        np.testing.assert_array_equal(ep.init_state, d["states"][0])
        assert ep.env_states.shape == (10, ENV_STATE_DIM) and not ep.env_states.any()

    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/x", root=root, video_backend="pyav")
    item = ds[10]  # demo_1, first frame
    upright = demos[1]["obs/agentview_rgb"][0][::-1, ::-1]
    got = np.round(item[IMAGE_KEY].numpy().transpose(1, 2, 0) * 255).astype(np.uint8)
    np.testing.assert_array_equal(got, upright)
    assert got[-4:, -8:].min() == 255  # the bright corner moved from top-left to bottom-right
    wrist = np.round(item[WRIST_IMAGE_KEY].numpy().transpose(1, 2, 0) * 255).astype(np.uint8)
    np.testing.assert_array_equal(wrist, demos[1]["obs/eye_in_hand_rgb"][0][::-1, ::-1])
    assert item["task"] == object_task.language


def test_hdf5_resizes_resolves_task_by_language_and_caps_episodes(tmp_path, object_task):
    path = tmp_path / "renamed.hdf5"  # neither the file nor a bddl attr names the task
    _write_hdf5(path, object_task, n_demos=3, size=40, bddl=False)
    root = import_libero_hdf5(
        [tmp_path], tmp_path / "out", DatasetSpec(image_size=32), max_episodes=2
    )
    meta = read_episode_meta(root)
    assert len(meta) == 2 and set(meta.task_name) == {object_task.name}


def test_hdf5_object_states_from_sim_states(tmp_path, object_task):
    path = tmp_path / f"{object_task.name}_demo.hdf5"
    _write_hdf5(path, object_task, n_demos=1, T=3)
    root = import_libero_hdf5(
        [path], tmp_path / "out", DatasetSpec(image_size=32), object_states=True
    )
    (ep,) = load_episodes(root)
    assert np.abs(ep.env_states).sum() > 0
    np.testing.assert_allclose(ep.env_states[0], ep.env_states[-1])  # same sim state each step


def test_hdf5_errors(tmp_path, object_task):
    spec = DatasetSpec(image_size=32)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        import_libero_hdf5([tmp_path / "nope.hdf5"], tmp_path / "out", spec)

    bad = tmp_path / f"{object_task.name}_demo.hdf5"
    _write_hdf5(bad, object_task, n_demos=1, drop="obs/agentview_rgb")
    with pytest.raises(
        DatasetImportError, match=r"lacks \['obs/agentview_rgb'\].*create_dataset.py"
    ):
        import_libero_hdf5([bad], tmp_path / "out", spec)

    other = tmp_path / "mystery.hdf5"
    _write_hdf5(other, object_task, n_demos=1, bddl=False)
    with pytest.raises(DatasetImportError, match="no task of suite libero_goal matches"):
        import_libero_hdf5([other], tmp_path / "out", spec, suite="libero_goal")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- LeRobot format
LIBERO_FEATURES = {
    "observation.images.image": {"dtype": "image", "shape": (48, 48, 3), "names": ["height", "width", "channel"]},
    "observation.images.wrist_image": {"dtype": "image", "shape": (48, 48, 3), "names": ["height", "width", "channel"]},
    "observation.state": {"dtype": "float32", "shape": (8,), "names": ["state"]},
    "action": {"dtype": "float32", "shape": (7,), "names": ["actions"]},
}  # fmt: skip


def _make_lerobot(root, languages, T=6, features=LIBERO_FEATURES, videos=False):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    if videos:
        features = {
            k: {**v, "dtype": "video"} if v["dtype"] == "image" else v for k, v in features.items()
        }
    ds = LeRobotDataset.create(
        repo_id="local/src", fps=10, features=features, root=root, use_videos=videos
    )
    rng = np.random.default_rng(0)
    episodes = []
    for i, language in enumerate(languages):
        ep = {
            "image": _pattern_images(T, 48, seed=i),
            "state": rng.normal(size=(T, 8)).astype(np.float32),
            "action": rng.uniform(-1, 1, (T, 7)).astype(np.float32),
        }
        for t in range(T):
            frame = {
                "observation.state": ep["state"][t],
                "action": ep["action"][t],
                "task": language,
            }
            for key in features:
                if key.startswith("observation.images."):
                    frame[key] = ep["image"][t]
            ds.add_frame(frame)
        ds.save_episode()
        episodes.append(ep)
    ds.finalize()
    return episodes


def test_lerobot_round_trip(tmp_path, object_task):
    stove = "Turn on the stove"  # libero_goal/7, also twice in libero_90: the eval suite wins
    src = _make_lerobot(tmp_path / "src", [object_task.language, stove])
    root = import_lerobot_dataset(tmp_path / "src", tmp_path / "out", DatasetSpec(image_size=32))
    meta = read_episode_meta(root)
    assert meta[["suite", "task_index"]].values.tolist() == [
        ["libero_object", 0],
        ["libero_goal", 7],
    ]
    assert set(meta.source) == {"imported"} and meta.success.all()
    back = load_episodes(root)
    for s, ep in zip(src, back, strict=True):
        np.testing.assert_array_equal(ep.actions, s["action"])
        np.testing.assert_array_equal(ep.states, s["state"])
        assert ep.init_state.size == 0

    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/x", root=root, video_backend="pyav")
    assert ds.meta.features[IMAGE_KEY]["shape"] == (32, 32, 3)
    img = np.round(ds[0][IMAGE_KEY].numpy().transpose(1, 2, 0) * 255).astype(np.uint8)
    np.testing.assert_array_equal(img, fit_images(src[0]["image"][:1], 32, flip=False)[0])
    assert img[:2, :4].min() == 255  # already upright: not flipped, only resized 48 -> 32


def test_lerobot_key_map_and_unknown_tasks(tmp_path, object_task):
    features = {
        "observation.images.front": LIBERO_FEATURES["observation.images.image"],
        "observation.state": LIBERO_FEATURES["observation.state"],
        "action": LIBERO_FEATURES["action"],
    }
    _make_lerobot(
        tmp_path / "src", [object_task.language, "juggle three oranges"], features=features
    )
    spec = DatasetSpec(image_size=32)
    with pytest.raises(
        DatasetImportError, match=r"lacks feature\(s\).*observation.images.front.*key_map"
    ):
        import_lerobot_dataset(tmp_path / "src", tmp_path / "out", spec)
    key_map = {"image": "observation.images.front"}
    with pytest.raises(DatasetImportError, match="'juggle three oranges' \\(matches no task\\)"):
        import_lerobot_dataset(tmp_path / "src", tmp_path / "out", spec, key_map=key_map)
    assert not (tmp_path / "out").exists()

    root = import_lerobot_dataset(
        tmp_path / "src",
        tmp_path / "out",
        spec,
        key_map=key_map,
        allow_unknown_tasks=True,
        max_episodes=2,
    )
    meta = read_episode_meta(root)
    assert meta[["suite", "task_index"]].values.tolist() == [["libero_object", 0], ["unknown", -1]]
    assert meta.language.tolist()[1] == "juggle three oranges"


def test_lerobot_video_source_with_wrist_camera(tmp_path, object_task):
    src = _make_lerobot(tmp_path / "src", [object_task.language], T=4, videos=True)
    spec = DatasetSpec(image_size=32, wrist_image=True)
    root = import_lerobot_dataset(tmp_path / "src", tmp_path / "out", spec, flip_images=True)
    (ep,) = load_episodes(root)
    np.testing.assert_array_equal(ep.actions, src[0]["action"])
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    item = LeRobotDataset("local/x", root=root, video_backend="pyav")[0]
    for key in (IMAGE_KEY, WRIST_IMAGE_KEY):
        img = item[key].numpy().transpose(1, 2, 0)
        assert img[-2:, -4:].min() > 0.9  # lossy video, flipped: the bright corner is bottom-right


def test_lerobot_reimport_keeps_our_metadata(tmp_path, object_task):
    path = tmp_path / f"{object_task.name}_demo.hdf5"
    demos = _write_hdf5(path, object_task, n_demos=1, T=5)
    spec = DatasetSpec(image_size=32)
    first = import_libero_hdf5([path], tmp_path / "first", spec)
    root = import_lerobot_dataset(first, tmp_path / "again", spec)
    (ep,) = load_episodes(root)
    np.testing.assert_array_equal(ep.init_state, demos[0]["states"][0])
    assert (ep.suite, ep.task_index, ep.settle_steps) == ("libero_object", 0, 0)


def test_lerobot_missing_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a LeRobot dataset"):
        import_lerobot_dataset(tmp_path / "nothing", tmp_path / "out", DatasetSpec(image_size=32))


def test_language_lookup_prefers_evaluation_suites():
    assert [t.key for t in tasks_by_language("turn on the stove.")] == ["libero_goal/7"]
    assert len(tasks_by_language("turn on the stove", suite="libero_90")) == 2
