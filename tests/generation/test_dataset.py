import numpy as np
import pytest
import torch

from generation.data.episode import Episode, load_episode_npz, save_episode_npz
from generation.data.reader import load_episodes, read_episode_meta
from generation.data.schema import ACTION_KEY, IMAGE_KEY, PATTERN_KEY, STATE_KEY, DatasetSpec
from generation.data.writer import ReplayMismatchError, render_by_replay, write_episodes
from generation.envs.libero_env import EnvConfig, LiberoEnv


def _random_episode(env, init_state_index, n=12, seed=0, **kw) -> Episode:
    rng = np.random.default_rng(seed)
    obs, info = env.reset(init_state_index=init_state_index)
    S, E, A = [], [], []
    for _ in range(n):
        a = rng.uniform(-1, 1, 7).astype(np.float32)
        S.append(obs["state"])
        E.append(obs["env_state"])
        A.append(a)
        obs, *_ = env.step(a)
    t = env.task
    return Episode(t.suite, t.index, t.name, t.language, info["init_state"], A, S, E, False,
                   init_state_index=init_state_index, **kw)  # fmt: skip


@pytest.fixture(scope="module")
def episodes(object_env):
    return [
        _random_episode(object_env, 0, seed=0, strategy_id=0, pattern_id=2),
        _random_episode(object_env, 1, n=9, seed=1, strategy_id=1, pattern_id=0),
    ]


def test_round_trip_through_lerobot(tmp_path, episodes):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = write_episodes(
        episodes, tmp_path / "ds", spec=DatasetSpec(image_size=32), progress=False
    )
    ds = LeRobotDataset("local/dlr", root=root, video_backend="pyav")
    assert ds.meta.total_episodes == 2 and len(ds) == 21
    item = ds[12]  # first frame of episode 1
    assert item["episode_index"] == 1 and item["frame_index"] == 0
    assert item[IMAGE_KEY].shape == (3, 32, 32)
    torch.testing.assert_close(item[ACTION_KEY], torch.from_numpy(episodes[1].actions[0]))
    torch.testing.assert_close(item[STATE_KEY], torch.from_numpy(episodes[1].states[0]))
    assert int(item[PATTERN_KEY]) == 0 and item["task"] == episodes[1].language
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4, shuffle=True, num_workers=0)))
    assert batch[IMAGE_KEY].shape == (4, 3, 32, 32)

    meta = read_episode_meta(root)
    assert meta[["strategy_id", "pattern_id", "init_state_index", "length"]].values.tolist() == [
        [0, 2, 0, 12],
        [1, 0, 1, 9],
    ]
    assert set(meta.source) == {"demo"}
    back = load_episodes(root)
    for a, b in zip(episodes, back, strict=True):
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.states, b.states)
        np.testing.assert_array_equal(a.init_state, b.init_state)


def test_stored_episodes_replay_in_a_fresh_env(tmp_path, episodes):
    root = write_episodes(
        episodes[:1], tmp_path / "ds", spec=DatasetSpec(image_size=32), progress=False
    )
    ep = load_episodes(root)[0]
    fresh = LiberoEnv((ep.suite, ep.task_index))
    try:
        obs, _ = fresh.reset(init_state=ep.init_state)
        for t, a in enumerate(ep.actions):
            np.testing.assert_array_equal(obs["state"], ep.states[t])
            np.testing.assert_array_equal(obs["env_state"], ep.env_states[t])
            obs, *_ = fresh.step(a)
    finally:
        fresh.close()


def test_replay_mismatch_is_detected(episodes):
    bad = Episode(**{**episodes[0].__dict__, "images": {}})
    bad.states = bad.states.copy()
    bad.states[3, 0] += 0.01
    env = LiberoEnv(("libero_object", 0), EnvConfig(cameras=("agentview",), image_size=16))
    try:
        with pytest.raises(ReplayMismatchError, match="step 3"):
            render_by_replay(bad, env)
    finally:
        env.close()


def test_failed_write_leaves_nothing(tmp_path, episodes):
    def broken():
        yield Episode(
            **{**episodes[0].__dict__, "images": {"image": np.zeros((12, 32, 32, 3), np.uint8)}}
        )
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_episodes(broken(), tmp_path / "ds", spec=DatasetSpec(image_size=32), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_existing_dataset_is_not_overwritten_by_default(tmp_path, episodes):
    (tmp_path / "ds").mkdir()
    with pytest.raises(FileExistsError, match="overwrite"):
        write_episodes(episodes, tmp_path / "ds", spec=DatasetSpec(image_size=32))


def test_episode_cache_round_trip(tmp_path, episodes):
    save_episode_npz(episodes[1], tmp_path / "e.npz")
    back = load_episode_npz(tmp_path / "e.npz")
    np.testing.assert_array_equal(back.actions, episodes[1].actions)
    assert (back.strategy_id, back.pattern_id, back.task_name) == (1, 0, episodes[1].task_name)


def test_episode_validates_lengths(episodes):
    with pytest.raises(ValueError, match="disagree in length"):
        Episode(**{**episodes[0].__dict__, "states": episodes[0].states[:-1]})


def test_parallel_rendering_matches_sequential(tmp_path, episodes):
    from generation.data.reader import read_frames

    seq = write_episodes(
        episodes, tmp_path / "seq", spec=DatasetSpec(image_size=24), progress=False
    )
    par = write_episodes(
        episodes,
        tmp_path / "par",
        spec=DatasetSpec(image_size=24),
        progress=False,
        render_workers=2,
    )
    a = read_frames(seq, columns=["index", IMAGE_KEY])
    b = read_frames(par, columns=["index", IMAGE_KEY])
    assert len(a) == 21 and [x["bytes"] for x in a[IMAGE_KEY]] == [x["bytes"] for x in b[IMAGE_KEY]]
