"""Write episodes as a LeRobot v3.0 dataset in the schema of ARCHITECTURE.md.

Episodes usually arrive state-only (demonstrators and RL rollouts run without cameras, which
is ~5-15x faster); their images are rendered here by replaying init state + actions in a
rendering env. Replay is checked against the stored states, so every written episode is
proven replayable. The dataset is built in a temporary folder and renamed into place: a
crash never leaves a half-written dataset at ``root``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from generation.data.episode import Episode
from generation.data.episode_meta import write_episode_table
from generation.data.schema import (
    ACTION_KEY,
    ENV_STATE_KEY,
    EPISODE_META_FILE,
    FPS,
    IMAGE_KEY,
    PATTERN_KEY,
    STATE_KEY,
    WRIST_IMAGE_KEY,
    DatasetSpec,
    dataset_features,
)
from generation.envs.cache import EnvCache
from generation.manifest import atomic_write, temp_path

log = logging.getLogger(__name__)

REPLAY_TOLERANCE = 1e-4
_IMAGE_KEYS = {"image": IMAGE_KEY, "wrist_image": WRIST_IMAGE_KEY}


class ReplayMismatchError(RuntimeError):
    pass


def render_by_replay(episode: Episode, env) -> dict[str, np.ndarray]:
    """Replay ``episode`` in ``env`` (a LiberoEnv with cameras) and return its frames.

    Raises ReplayMismatchError if the replayed proprio state departs from the stored one.
    """
    if env.config.settle_steps != episode.settle_steps:
        raise ValueError(
            f"episode was recorded with settle_steps={episode.settle_steps}, env uses {env.config.settle_steps}"
        )
    obs, _ = env.reset(init_state=episode.init_state)
    keys = [k for k in obs if k in _IMAGE_KEYS]
    frames: dict[str, list] = {k: [] for k in keys}
    for t, action in enumerate(episode.actions):
        err = float(np.abs(obs["state"] - episode.states[t]).max())
        if err > REPLAY_TOLERANCE:
            raise ReplayMismatchError(
                f"episode of {episode.task_name} diverged on replay at step {t} (|Δstate|={err:.2e}); "
                "it was not recorded from the stored init state with settle_steps="
                f"{episode.settle_steps}"
            )
        for k in keys:
            frames[k].append(obs[k])
        if t < len(episode.actions) - 1:
            obs, *_ = env.step(action)
    return {k: np.stack(v) for k, v in frames.items()}


_WORKER_ENVS = EnvCache(2)  # episodes come ordered by task


def _render_in_worker(args) -> Episode:
    """Pool worker: render one episode by replay with a per-process env cache."""
    from generation.envs.libero_env import EnvConfig, LiberoEnv

    ep, env_config = args
    cfg = EnvConfig(**{**env_config.__dict__, "settle_steps": ep.settle_steps})
    key = (ep.suite, ep.task_index, cfg.cameras, cfg.image_size, cfg.render_mode, cfg.settle_steps)
    env = _WORKER_ENVS.get(key, lambda: LiberoEnv((ep.suite, ep.task_index), cfg))
    ep.images = render_by_replay(ep, env)
    return ep


def render_parallel(episodes: Iterable[Episode], env_config, workers: int):
    """Yield ``episodes`` with images rendered by replay in ``workers`` processes, in order."""
    import multiprocessing as mp

    with mp.get_context("forkserver").Pool(workers) as pool:
        yield from pool.imap(_render_in_worker, ((ep, env_config) for ep in episodes))


def episode_meta_row(episode_index: int, ep: Episode) -> dict:
    return {
        "episode_index": episode_index,
        "source": ep.source,
        "suite": ep.suite,
        "task_index": ep.task_index,
        "task_name": ep.task_name,
        "language": ep.language,
        "init_state_index": ep.init_state_index,
        "seed": ep.seed,
        "success": bool(ep.success),
        "strategy_id": ep.strategy_id,
        "pattern_id": ep.pattern_id,
        "length": len(ep),
        "settle_steps": ep.settle_steps,
        "init_state": np.asarray(ep.init_state, dtype=np.float64).tolist(),
    }


def write_episodes(
    episodes: Iterable[Episode],
    root: str | Path,
    repo_id: str = "local/dlr",
    spec: DatasetSpec | None = None,
    env_config=None,
    overwrite: bool = False,
    image_writer_threads: int = 4,
    progress: bool = True,
    render_workers: int = 1,
) -> Path:
    """Write ``episodes`` to a LeRobot dataset at ``root`` and return ``root``.

    ``env_config`` (an EnvConfig) sets how missing images are rendered; by default the
    fast renderer with the agentview camera (and the wrist camera if ``spec.wrist_image``).
    ``render_workers`` > 1 renders episodes that need images in that many processes.
    """
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from generation.envs.libero_env import EnvConfig, LiberoEnv

    spec = spec or DatasetSpec()
    root = Path(root)
    if root.exists():
        if not overwrite:
            raise FileExistsError(f"{root} already exists; pass overwrite=True or remove it")
    tmp = temp_path(root)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    cameras = ("agentview", "robot0_eye_in_hand") if spec.wrist_image else ("agentview",)
    env_config = env_config or EnvConfig(cameras=cameras, image_size=spec.image_size)
    if render_workers > 1:
        episodes = render_parallel(episodes, env_config, render_workers)
    ds = LeRobotDataset.create(
        repo_id=repo_id,
        fps=FPS,
        features=dataset_features(spec),
        root=tmp,
        robot_type="panda",
        use_videos=spec.use_videos,
        image_writer_threads=image_writer_threads,
    )
    envs = EnvCache(2)
    rows = []
    try:
        for ep in tqdm(episodes, desc=f"writing {root.name}", disable=not progress, unit="ep"):
            images = dict(ep.images)
            needed = ["image"] + (["wrist_image"] if spec.wrist_image else [])
            if any(k not in images for k in needed):
                cfg = EnvConfig(**{**env_config.__dict__, "settle_steps": ep.settle_steps})
                key = (ep.suite, ep.task_index, ep.settle_steps)
                env = envs.get(
                    key, lambda cfg=cfg, ep=ep: LiberoEnv((ep.suite, ep.task_index), cfg)
                )
                images.update(render_by_replay(ep, env))
            _check_env_state_dim(ep, spec)
            for t in range(len(ep)):
                frame = {
                    STATE_KEY: ep.states[t],
                    ENV_STATE_KEY: ep.env_states[t],
                    ACTION_KEY: ep.actions[t],
                    PATTERN_KEY: np.array([ep.pattern_id], dtype=np.int64),
                    "task": ep.language,
                }
                for k in needed:
                    frame[_IMAGE_KEYS[k]] = images[k][t]
                ds.add_frame(frame)
            ds.save_episode()
            rows.append(episode_meta_row(len(rows), ep))
        ds.finalize()
    except BaseException:
        envs.close()
        try:  # stop lerobot's writers first, or they recreate files after the cleanup
            ds.finalize()
        except Exception:  # noqa: BLE001
            pass
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    envs.close()
    if not rows:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ValueError(f"no episodes to write to {root}")
    _drop_fingerprints(tmp)
    sort_stats(tmp)
    meta = pd.DataFrame(rows)
    write_episode_table(tmp, meta)  # where lerobot's edit tools keep it
    meta.to_parquet(tmp / EPISODE_META_FILE)  # a flat copy for pandas users
    if root.exists():
        shutil.rmtree(root)
    os.replace(tmp, root)
    log.info("wrote %d episodes to %s", len(rows), root)
    return root


def sort_stats(root: Path) -> None:
    """Rewrite ``meta/stats.json`` with sorted keys: lerobot aggregates over a set of feature
    names, whose order changes with each process's hash seed (same numbers, other bytes)."""
    path = root / "meta" / "stats.json"
    stats = json.loads(path.read_text())
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(stats, indent=4, ensure_ascii=False, sort_keys=True))


def _drop_fingerprints(root: Path) -> None:
    """Remove the ``datasets`` cache fingerprint from the data files' schema metadata.

    It hashes the temp folder's image paths (with the writer's PID), so the same episodes
    would give different bytes on every write; nothing reads it back. Row groups (one per
    episode) and compression stay lerobot's.
    """
    import pyarrow.parquet as pq

    for path in sorted((root / "data").rglob("*.parquet")):
        source = pq.ParquetFile(path)
        meta = dict(source.schema_arrow.metadata or {})
        info = json.loads(meta.get(b"huggingface", b"{}"))
        if info.pop("fingerprint", None) is None:
            continue
        meta[b"huggingface"] = json.dumps(info).encode()
        schema = source.schema_arrow.with_metadata(meta)
        with (
            atomic_write(path) as tmp,
            pq.ParquetWriter(tmp, schema, compression="snappy", use_dictionary=True) as out,
        ):
            for i in range(source.num_row_groups):
                out.write_table(source.read_row_group(i).cast(schema))
        source.close()


def _check_env_state_dim(ep: Episode, spec: DatasetSpec) -> None:
    if ep.env_states.shape[1] != spec.env_state_dim:
        if ep.env_states.shape[1] < spec.env_state_dim:
            pad = np.zeros((len(ep), spec.env_state_dim - ep.env_states.shape[1]), np.float32)
            ep.env_states = np.concatenate([ep.env_states, pad], axis=1)
        else:
            raise ValueError(
                f"episode env_state has {ep.env_states.shape[1]} values, dataset holds {spec.env_state_dim}"
            )
