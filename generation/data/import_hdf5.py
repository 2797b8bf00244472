"""Import LIBERO's official hdf5 demo files into our dataset schema (ARCHITECTURE.md).

The files follow robomimic's layout, written by LIBERO's ``scripts/create_dataset.py``:
``data/demo_<i>/{actions, states, obs/...}`` with the task in ``data.attrs["bddl_file_name"]``
/ ``problem_info``. Episodes are written with ``source="imported"`` and carry their own images,
so the writer never renders them.

Replay: episodes store ``init_state = states[0]`` (the flattened MuJoCo state before the first
action) with ``settle_steps=0``. LIBERO's ``create_dataset.py`` records each observation
*after* its action, so ``states[t]`` (proprio) lags our convention (before ``actions[t]``) by
one step; we keep the stored values, as lerobot's LIBERO conversions do. Object poses
(``env_state``) are zeros unless ``object_states=True``, which sets every stored sim state in a
state-only LIBERO env and reads the poses (about 1-2 ms per step plus env construction).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from generation.data.episode import Episode
from generation.data.import_common import (
    DatasetImportError,
    check_suite,
    describe_tasks,
    fit_images,
    task_by_name,
    tasks_by_language,
)
from generation.data.schema import ACTION_DIM, STATE_DIM, DatasetSpec
from generation.data.writer import write_episodes
from generation.envs.suites import SUITES, TaskSpec

log = logging.getLogger(__name__)

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
                f"{path}: instruction {language!r} matches several tasks ({describe_tasks(matches)}); "
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

    check_suite(suite)
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
