"""Import LeRobot-format LIBERO datasets on local disk into our dataset schema (ARCHITECTURE.md).

The source follows lerobot's LIBERO layout (e.g. the ``HuggingFaceVLA/libero`` family). Episodes
are written with ``source="imported"`` and carry their own images, so the writer never renders
them.

Replay: LeRobot episodes have no simulator state, so ``init_state`` is empty and they cannot be
replayed, unless the source is one of our own datasets (its episode metadata is kept).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from generation.data.episode import Episode
from generation.data.episode_meta import read_episode_table
from generation.data.import_common import (
    UNKNOWN_SUITE,
    DatasetImportError,
    check_suite,
    describe_tasks,
    fit_images,
    tasks_by_language,
)
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
from generation.envs.suites import TaskSpec

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
        why = f"matches {describe_tasks(matches)}" if matches else "matches no task"
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
    datasets, whose episode metadata is kept.
    """
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    src_root = Path(src_root)
    if not (src_root / "meta" / "info.json").is_file():
        raise FileNotFoundError(
            f"{src_root} is not a LeRobot dataset (no meta/info.json); download it first "
            "(e.g. `hf download <repo> --repo-type dataset --local-dir <dir>`) and pass that folder"
        )
    check_suite(suite)
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
    sidecar = _our_metadata(src_root)
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


def _our_metadata(src_root: Path):
    """Our per-episode metadata when the source is one of our datasets (``None`` otherwise)."""
    import pandas as pd

    table = read_episode_table(src_root, skip_foreign=True)
    if table is None and (src_root / EPISODE_META_FILE).is_file():
        table = pd.read_parquet(
            src_root / EPISODE_META_FILE
        )  # written before meta/episodes held it
    return None if table is None else table.set_index("episode_index")


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
