"""Import real LIBERO demonstrations into our dataset schema (ARCHITECTURE.md), ``source="imported"``.

Two input formats:

- LIBERO's official hdf5 demo files (robomimic layout, written by LIBERO's
  ``scripts/create_dataset.py``): ``data/demo_<i>/{actions, states, obs/...}`` with the
  task in ``data.attrs["bddl_file_name"]`` / ``problem_info``. See :func:`import_libero_hdf5`.
- LeRobot-format LIBERO datasets on local disk (lerobot's LIBERO layout, e.g. the
  ``HuggingFaceVLA/libero`` family). See :func:`import_lerobot_dataset`.

Both resolve every episode to one of our tasks (by bddl/task name, else by language) *before*
writing anything, so a bad input fails fast with an error that names the problem and the fix.
Episodes carry their own images, so the writer never renders them.

What is and is not replayable:
- hdf5 episodes store ``init_state = states[0]`` (the flattened MuJoCo state before the first
  action) with ``settle_steps=0``. LIBERO's ``create_dataset.py`` records each observation
  *after* its action, so ``states[t]`` (proprio) lags our convention (before ``actions[t]``)
  by one step; we keep the stored values, as lerobot's LIBERO conversions do. Object poses
  (``env_state``) are zeros unless ``object_states=True``, which sets every stored sim state in
  a state-only LIBERO env and reads the poses (about 1-2 ms per step plus env construction).
- LeRobot episodes have no simulator state: ``init_state`` is empty and they cannot be
  replayed, unless the source is one of our own datasets (its sidecar metadata is kept).
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from generation.data.episode import Episode
from generation.data.schema import (
    ACTION_DIM,
    ACTION_KEY,
    ENV_STATE_KEY,
    EPISODE_META_FILE,
    IMAGE_KEY,
    STATE_DIM,
    STATE_KEY,
    WRIST_IMAGE_KEY,
    DatasetSpec,
)
from generation.data.writer import write_episodes
from generation.envs.suites import SUITES, TaskSpec, list_tasks

log = logging.getLogger(__name__)

# lerobot's LIBERO datasets cover the four evaluation suites; a language shared with libero_90
# (e.g. "turn on the stove") is taken to mean the evaluation suite's task.
_EVAL_SUITES = ("libero_spatial", "libero_object", "libero_goal", "libero_10")
UNKNOWN_SUITE = "unknown"


class DatasetImportError(ValueError):
    """An input that cannot be imported: wrong layout, unknown task, bad shapes."""


# --------------------------------------------------------------------------- task lookup
@functools.cache
def _tasks(suite: str | None) -> tuple[TaskSpec, ...]:
    suites = SUITES if suite is None else (suite,)
    return tuple(t for s in suites for t in list_tasks(s))


def normalise_language(text: str) -> str:
    text = re.sub(r"\s+", " ", str(text).replace("_", " ")).strip().strip("\"'").strip()
    return text.rstrip(".").lower()


def task_by_name(name: str, suite: str | None = None) -> TaskSpec | None:
    """A task by its LIBERO name (the bddl file's stem), unique across suites."""
    matches = [t for t in _tasks(suite) if t.name == name]
    return matches[0] if len(matches) == 1 else None


def tasks_by_language(language: str, suite: str | None = None) -> list[TaskSpec]:
    """Tasks whose instruction is ``language``; evaluation suites win over libero_90 ties."""
    key = normalise_language(language)
    matches = [t for t in _tasks(suite) if normalise_language(t.language) == key]
    preferred = [t for t in matches if t.suite in _EVAL_SUITES]
    return preferred if suite is None and preferred else matches


def _describe(tasks: list[TaskSpec]) -> str:
    return ", ".join(t.key for t in tasks)


# --------------------------------------------------------------------------- images
def fit_images(frames: np.ndarray, size: int, flip: bool) -> np.ndarray:
    """(T, H, W, 3) uint8 frames, rotated 180 degrees if ``flip``, resized to ``size``²."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise DatasetImportError(f"expected images of shape (T, H, W, 3), got {frames.shape}")
    if frames.dtype != np.uint8:
        frames = np.clip(np.round(frames * 255.0 if frames.max() <= 1.0 else frames), 0, 255)
        frames = frames.astype(np.uint8)
    if flip:
        frames = frames[:, ::-1, ::-1]
    if frames.shape[1:3] != (size, size):
        from PIL import Image

        frames = np.stack(
            [
                np.asarray(Image.fromarray(f).resize((size, size), Image.Resampling.BILINEAR))
                for f in frames
            ]
        )
    return np.ascontiguousarray(frames)


# --------------------------------------------------------------------------- LIBERO hdf5
_HDF5_FIX = (
    "expected LIBERO's dataset layout data/demo_<i>/{actions, states, obs/agentview_rgb, "
    "obs/eye_in_hand_rgb, obs/ee_pos, obs/ee_ori, obs/gripper_states}; raw teleoperation files "
    "(demo.hdf5 without obs/) must first go through LIBERO's scripts/create_dataset.py --use-camera-obs"
)


def _hdf5_task(f, path: Path, suite: str | None) -> TaskSpec:
    """Resolve a demo file's task: bddl file name, then file name, then language."""
    attrs = f["data"].attrs
    tried = []
    bddl = attrs.get("bddl_file_name")
    if bddl is not None:
        bddl = Path(bddl.decode() if isinstance(bddl, bytes) else str(bddl))
        folder_suite = bddl.parent.name if bddl.parent.name in SUITES else None
        if suite is None or folder_suite in (None, suite):
            task = task_by_name(bddl.stem, suite or folder_suite)
            if task is not None:
                return task
        tried.append(f"bddl file {bddl.name!r}")
    stem = re.sub(r"_demo$", "", path.stem)
    task = task_by_name(stem, suite)
    if task is not None:
        return task
    tried.append(f"file name {stem!r}")
    if "problem_info" in attrs:
        language = json.loads(attrs["problem_info"]).get("language_instruction", "")
        language = " ".join(language) if isinstance(language, list) else str(language)
        matches = tasks_by_language(language, suite)
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise DatasetImportError(
                f"{path}: instruction {language!r} matches several tasks ({_describe(matches)}); "
                "pass suite=... or keep LIBERO's original file name"
            )
        tried.append(f"instruction {language!r}")
    where = f"suite {suite}" if suite else f"any suite ({', '.join(SUITES)})"
    raise DatasetImportError(
        f"{path}: no task of {where} matches its {', '.join(tried)}; "
        "check the suite argument or run `dlr info --suite <suite>` to list the task names"
    )


def _demo_names(f, path: Path) -> list[str]:
    if "data" not in f:
        raise DatasetImportError(f"{path}: no 'data' group; {_HDF5_FIX}")
    names = [k for k in f["data"].keys() if re.fullmatch(r"demo_\d+", k)]
    if not names:
        raise DatasetImportError(f"{path}: 'data' holds no demo_<i> groups; {_HDF5_FIX}")
    return sorted(names, key=lambda k: int(k.split("_")[1]))


def _check_demo(f, path: Path, name: str, wrist: bool) -> None:
    demo = f["data"][name]
    required = ["actions", "states", "obs/agentview_rgb", "obs/gripper_states"]
    required += ["obs/eye_in_hand_rgb"] if wrist else []
    missing = [k for k in required if k not in demo]
    if not ("obs/ee_pos" in demo and "obs/ee_ori" in demo) and "obs/ee_states" not in demo:
        missing.append("obs/ee_pos + obs/ee_ori (or obs/ee_states)")
    if missing:
        found = sorted(demo.keys()) + [f"obs/{k}" for k in demo.get("obs", {}).keys()]
        raise DatasetImportError(
            f"{path}: data/{name} lacks {missing} (found {found}); {_HDF5_FIX}"
        )


def _demo_episode(f, path: Path, name: str, task: TaskSpec, spec: DatasetSpec, env) -> Episode:
    demo = f["data"][name]
    obs = demo["obs"]
    actions = np.asarray(demo["actions"], dtype=np.float32)
    if actions.ndim != 2 or actions.shape[1] != ACTION_DIM:
        raise DatasetImportError(
            f"{path}: data/{name}/actions has shape {actions.shape}, expected (T, 7)"
        )
    if "ee_pos" in obs and "ee_ori" in obs:
        eef = np.concatenate([obs["ee_pos"][()], obs["ee_ori"][()]], axis=1)
    else:
        eef = obs["ee_states"][()]
    states = np.concatenate([eef, obs["gripper_states"][()]], axis=1).astype(np.float32)
    if states.shape != (len(actions), STATE_DIM):
        raise DatasetImportError(
            f"{path}: data/{name} proprio has shape {states.shape}, expected ({len(actions)}, {STATE_DIM}) "
            "from ee_pos (3) + ee_ori (3) + gripper_states (2)"
        )
    sim_states = np.asarray(demo["states"], dtype=np.float64)
    images = {"image": fit_images(obs["agentview_rgb"][()], spec.image_size, flip=True)}
    if spec.wrist_image:
        images["wrist_image"] = fit_images(obs["eye_in_hand_rgb"][()], spec.image_size, flip=True)
    success = bool(demo["dones"][-1]) if "dones" in demo else True
    if env is not None:
        env_states, success = _object_states(env, sim_states, path, name)
    else:
        env_states = np.zeros((len(actions), spec.env_state_dim), np.float32)
    return Episode(
        suite=task.suite,
        task_index=task.index,
        task_name=task.name,
        language=task.language,
        init_state=sim_states[0],
        actions=actions,
        states=states,
        env_states=env_states,
        success=success,
        source="imported",
        settle_steps=0,
        images=images,
    )


def _object_states(env, sim_states: np.ndarray, path: Path, name: str) -> tuple[np.ndarray, bool]:
    """Object poses at every stored sim state, and LIBERO's success predicate at the last one."""
    expected = env.raw.get_sim_state().size
    if sim_states.shape[1] != expected:
        raise DatasetImportError(
            f"{path}: data/{name}/states holds {sim_states.shape[1]} values per step but "
            f"{env.task.key} has a {expected}-value sim state: the file is from another task or LIBERO version"
        )
    out = []
    for state in sim_states:
        env.raw.set_init_state(state)
        out.append(env.object_state())
    return np.stack(out), bool(env.raw.check_success())


def import_libero_hdf5(
    paths: list[Path],
    out_root: Path,
    spec: DatasetSpec,
    suite: str | None = None,
    max_episodes: int | None = None,
    object_states: bool = False,
    repo_id: str = "local/libero_hdf5",
    overwrite: bool = False,
) -> Path:
    """Import LIBERO hdf5 demo files (or folders of them) into a dataset at ``out_root``.

    suite: restrict task lookup to one suite; by default the suite comes from the file's bddl
        path or the first suite with a task of that name.
    object_states: compute ``observation.environment_state`` by setting each stored sim state
        in a LIBERO env (slow); zeros otherwise.
    """
    import h5py

    if suite is not None and suite not in SUITES:
        raise DatasetImportError(f"unknown suite {suite!r}; valid suites: {', '.join(SUITES)}")
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob("*.hdf5"))
            if not found:
                raise FileNotFoundError(f"{p} holds no *.hdf5 files; point to LIBERO's demo files")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(
                f"{p} does not exist; download LIBERO's demos (LIBERO's benchmark_scripts/download_libero_datasets.py) "
                "and pass their *_demo.hdf5 files or folder"
            )
    if not files:
        raise FileNotFoundError("no hdf5 files given")

    plan: list[tuple[Path, TaskSpec, list[str]]] = []  # validated up front: fail before writing
    left = max_episodes  # None: all
    for path in files:
        if left is not None and left <= 0:
            break
        try:
            f = h5py.File(path, "r")
        except OSError as e:
            raise DatasetImportError(f"{path} is not a readable hdf5 file ({e})") from e
        with f:
            names = _demo_names(f, path)[:left]
            task = _hdf5_task(f, path, suite)
            for name in names:
                _check_demo(f, path, name, spec.wrist_image)
        plan.append((path, task, names))
        left = None if left is None else left - len(names)
        log.info("%s: %d demos of %s", path.name, len(names), task.key)

    def episodes() -> Iterator[Episode]:
        from generation.envs.libero_env import EnvConfig, LiberoEnv

        for path, task, names in plan:
            env = None
            if object_states:
                env = LiberoEnv(task, EnvConfig(settle_steps=0, env_state_dim=spec.env_state_dim))
                env.raw.reset()
            try:
                with h5py.File(path, "r") as f:
                    for name in names:
                        yield _demo_episode(f, path, name, task, spec, env)
            finally:
                if env is not None:
                    env.close()

    return write_episodes(episodes(), out_root, repo_id=repo_id, spec=spec, overwrite=overwrite)


# --------------------------------------------------------------------------- LeRobot datasets
DEFAULT_KEY_MAP = {
    "image": IMAGE_KEY,
    "wrist_image": WRIST_IMAGE_KEY,
    "state": STATE_KEY,
    "action": ACTION_KEY,
    "env_state": ENV_STATE_KEY,  # optional: zeros where the source has none
}


def _episode_tasks(meta) -> dict[int, str]:
    """episode_index -> its (first) language instruction, from the source's metadata."""
    eps = meta.episodes
    return {
        int(i): (t[0] if len(t) else "")
        for i, t in zip(eps["episode_index"], eps["tasks"], strict=True)
    }


def _resolve_languages(
    languages: dict[int, str], suite: str | None, allow_unknown_tasks: bool, src_root: Path
) -> dict[int, TaskSpec | None]:
    resolved: dict[int, TaskSpec | None] = {}
    unknown: dict[str, str] = {}
    for ep, language in languages.items():
        matches = tasks_by_language(language, suite)
        if len(matches) == 1:
            resolved[ep] = matches[0]
            continue
        resolved[ep] = None
        why = f"matches {_describe(matches)}" if matches else "matches no task"
        unknown.setdefault(language, why)
    if unknown and not allow_unknown_tasks:
        lines = "\n  ".join(f"{lang!r} ({why})" for lang, why in sorted(unknown.items()))
        where = f"suite {suite}" if suite else "our suites"
        raise DatasetImportError(
            f"{src_root}: {len(unknown)} instruction(s) do not resolve to one task of {where}:\n  {lines}\n"
            "pass suite=... to disambiguate, or allow_unknown_tasks=True to import them with task_index=-1"
        )
    return resolved


def _to_hwc_uint8(frame) -> np.ndarray:
    """One image as lerobot returns it (PIL, CHW float tensor, or uint8) to HWC uint8."""
    arr = frame.numpy() if hasattr(frame, "numpy") else np.asarray(frame)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    if arr.dtype != np.uint8:
        arr = np.clip(np.round(arr.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    return arr


def import_lerobot_dataset(
    src_root: Path,
    out_root: Path,
    spec: DatasetSpec,
    repo_id: str = "local/src",
    key_map: dict | None = None,
    max_episodes: int | None = None,
    suite: str | None = None,
    allow_unknown_tasks: bool = False,
    flip_images: bool = False,
    overwrite: bool = False,
) -> Path:
    """Import a LeRobot-format LIBERO dataset at ``src_root`` into a dataset at ``out_root``.

    repo_id: the source's repo id (lerobot needs one; nothing is downloaded).
    key_map: our role -> the source's feature key, over :data:`DEFAULT_KEY_MAP` (roles
        ``image``, ``wrist_image``, ``state``, ``action``, ``env_state``).
    suite: restrict language lookup to one suite.
    allow_unknown_tasks: import episodes whose instruction matches no single task with
        ``suite="unknown"``, ``task_index=-1`` instead of failing.
    flip_images: rotate images 180 degrees (lerobot's LIBERO datasets are already upright).
    Episodes are taken as successful (LIBERO demos are), unless the source is one of our own
    datasets, whose sidecar metadata is kept.
    """
    import pandas as pd
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    src_root = Path(src_root)
    if not (src_root / "meta" / "info.json").is_file():
        raise FileNotFoundError(
            f"{src_root} is not a LeRobot dataset (no meta/info.json); download it first "
            "(e.g. `hf download <repo> --repo-type dataset --local-dir <dir>`) and pass that folder"
        )
    if suite is not None and suite not in SUITES:
        raise DatasetImportError(f"unknown suite {suite!r}; valid suites: {', '.join(SUITES)}")
    keys = {**DEFAULT_KEY_MAP, **(key_map or {})}
    unknown_roles = set(keys) - set(DEFAULT_KEY_MAP)
    if unknown_roles:
        raise DatasetImportError(
            f"key_map has unknown roles {sorted(unknown_roles)}; valid: {list(DEFAULT_KEY_MAP)}"
        )

    ds = LeRobotDataset(repo_id, root=src_root, video_backend="pyav", return_uint8=True)
    features = ds.meta.features
    required = ["image", "state", "action"] + (["wrist_image"] if spec.wrist_image else [])
    missing = {role: keys[role] for role in required if keys[role] not in features}
    if missing:
        raise DatasetImportError(
            f"{src_root} lacks feature(s) {missing}; its features are {sorted(features)}. "
            "Pass key_map={role: source_key} to name them"
        )
    for role, dim in (("state", STATE_DIM), ("action", ACTION_DIM)):
        shape = tuple(features[keys[role]]["shape"])
        if shape != (dim,):
            raise DatasetImportError(
                f"{src_root}: {keys[role]!r} has shape {shape}, our {role} needs ({dim},)"
            )
    env_key = keys["env_state"] if keys["env_state"] in features else None

    n_eps = (
        ds.meta.total_episodes
        if max_episodes is None
        else min(max_episodes, ds.meta.total_episodes)
    )
    sidecar_path = src_root / EPISODE_META_FILE
    sidecar = (
        pd.read_parquet(sidecar_path).set_index("episode_index") if sidecar_path.is_file() else None
    )
    languages = _episode_tasks(ds.meta)
    todo = {ep: languages[ep] for ep in range(n_eps) if sidecar is None or ep not in sidecar.index}
    resolved = _resolve_languages(todo, suite, allow_unknown_tasks, src_root)
    image_keys = {"image": keys["image"]} | (
        {"wrist_image": keys["wrist_image"]} if spec.wrist_image else {}
    )

    def episodes() -> Iterator[Episode]:
        for ep in range(n_eps):
            row = ds.meta.episodes[ep]
            lo, hi = int(row["dataset_from_index"]), int(row["dataset_to_index"])
            cols = [keys["state"], keys["action"], "timestamp"] + ([env_key] if env_key else [])
            frames = ds.hf_dataset.select_columns(cols)[lo:hi]
            states = _stack(frames[keys["state"]], np.float32)
            actions = _stack(frames[keys["action"]], np.float32)
            if env_key:
                env_states = _stack(frames[env_key], np.float32)
            else:
                env_states = np.zeros((hi - lo, spec.env_state_dim), np.float32)
            images = {}
            for role, key in image_keys.items():
                if key in ds.meta.video_keys:
                    ts = [float(t) for t in frames["timestamp"]]
                    # lerobot's reader decodes an episode's frames in one pass (private API)
                    raw = list(ds.reader._query_videos({key: ts}, ep)[key])
                else:
                    raw = ds.hf_dataset.select_columns([key])[lo:hi][key]
                hwc = np.stack([_to_hwc_uint8(x) for x in raw])
                images[role] = fit_images(hwc, spec.image_size, flip=flip_images)
            yield _lerobot_episode(
                ep, languages[ep], resolved.get(ep), sidecar, actions, states, env_states, images
            )

    return write_episodes(
        episodes(), out_root, repo_id="local/imported", spec=spec, overwrite=overwrite
    )


def _stack(values, dtype) -> np.ndarray:
    return np.stack([np.asarray(v, dtype=dtype) for v in values])


def _lerobot_episode(ep, language, task, sidecar, actions, states, env_states, images) -> Episode:
    common = dict(
        actions=actions, states=states, env_states=env_states, images=images, source="imported"
    )
    if sidecar is not None and ep in sidecar.index:
        m = sidecar.loc[ep]
        return Episode(
            suite=m["suite"],
            task_index=int(m["task_index"]),
            task_name=m["task_name"],
            language=m["language"],
            init_state=np.asarray(m["init_state"], dtype=np.float64),
            success=bool(m["success"]),
            init_state_index=int(m["init_state_index"]),
            seed=int(m["seed"]),
            strategy_id=int(m["strategy_id"]),
            pattern_id=int(m["pattern_id"]),
            settle_steps=int(m["settle_steps"]),
            **common,
        )
    return Episode(
        suite=task.suite if task else UNKNOWN_SUITE,
        task_index=task.index if task else -1,
        task_name=task.name if task else language,
        language=task.language if task else language,
        init_state=np.zeros(0, np.float64),
        success=True,
        **common,
    )
