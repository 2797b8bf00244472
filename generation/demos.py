"""Collect scripted multi-strategy demonstrations into a LeRobot dataset (``runs/<x>/demos/<suite>``).

Work is split in two phases so that an interruption loses little:
1. state-only demos (fast, ~100 steps/s), each cached as ``.cache/<task>/<i>.npz`` on finish;
2. rendering by replay in worker processes, then one atomic dataset write.
Strategies are assigned round-robin and init states cycled, so every task gets every strategy.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from generation.data.episode import Episode, load_episode_npz, save_episode_npz
from generation.data.schema import DatasetSpec
from generation.envs.cache import EnvCache
from generation.envs.libero_env import EnvConfig
from generation.envs.suites import TaskSpec
from generation.executor import Executor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoJob:
    task: TaskSpec
    episode: int  # index within the task
    strategy_id: int
    init_state_index: int
    seed: int
    cache_path: str


def plan_jobs(
    tasks: list[TaskSpec],
    episodes_per_task: int,
    cache_dir: Path,
    seed: int,
    first_episode: int = 0,
) -> list[DemoJob]:
    """Episodes ``first_episode ..`` of each task: episode i takes strategy i mod S, init state
    i mod N and its own seed, so a later range (held-out demos) never repeats an earlier one's
    init state (while N allows) or noise."""
    from generation.demonstrators import demonstrator_for

    jobs = []
    for task in tasks:
        demo = demonstrator_for(task)  # raises a clear error for tasks without one
        for i in range(first_episode, first_episode + episodes_per_task):
            jobs.append(
                DemoJob(
                    task=task,
                    episode=i,
                    strategy_id=i % demo.n_strategies,
                    init_state_index=i % task.n_init_states,
                    seed=seed * 100_003 + task.index * 1009 + i,
                    cache_path=str(cache_dir / f"task{task.index:02d}" / f"ep{i:04d}.npz"),
                )
            )
    return jobs


_ENVS = EnvCache(2)  # jobs come ordered by task


def _env(task: TaskSpec, config: EnvConfig):
    from generation.envs.libero_env import LiberoEnv

    key = (task.suite, task.index, config.cameras, config.image_size)
    return _ENVS.get(key, lambda: LiberoEnv(task, config))


def _collect(job: DemoJob, max_attempts: int = 3) -> dict:
    """Worker: one demo, retried with new noise seeds if it fails; cached to disk."""
    from generation.demonstrators import collect_episode, demonstrator_for

    env = _env(job.task, EnvConfig())
    demo = demonstrator_for(job.task)
    ep = None
    for attempt in range(max_attempts):
        rng = np.random.default_rng(job.seed + 7919 * attempt)
        ep = collect_episode(
            env,
            demo,
            job.strategy_id,
            init_state_index=job.init_state_index,
            seed=job.seed,
            rng=rng,
        )
        if ep.success:
            break
    Path(job.cache_path).parent.mkdir(parents=True, exist_ok=True)
    save_episode_npz(ep, job.cache_path)
    return {"success": bool(ep.success), "attempts": attempt + 1, "steps": len(ep)}


def _missing(jobs: list[DemoJob]) -> list[DemoJob]:
    """The jobs whose episode is not cached yet."""
    return [j for j in jobs if not Path(j.cache_path).is_file()]


def _collect_chunk(jobs: list[DemoJob]) -> int:
    """A cluster job: one (task, strategy) chunk's demos not yet cached; returns how many ran
    (a rerun after a crash collects only the missing ones)."""
    todo = _missing(jobs)
    for job in todo:
        _collect(job)
    return len(todo)


def _chunks(jobs: list[DemoJob]) -> list[list[DemoJob]]:
    by_key: dict[tuple, list[DemoJob]] = {}
    for job in jobs:
        by_key.setdefault((job.task.suite, job.task.index, job.strategy_id), []).append(job)
    return list(by_key.values())


def _pool(num_workers: int):
    return mp.get_context("forkserver").Pool(num_workers, maxtasksperchild=None)


def collect_state_only(
    tasks: list[TaskSpec],
    episodes_per_task: int,
    cache_dir: str | Path,
    num_workers: int = 2,
    seed: int = 0,
    first_episode: int = 0,
    executor: Executor | None = None,
) -> tuple[list[DemoJob], list[Episode]]:
    """State-only scripted demos (strategies round-robin, init states cycled), each cached in
    ``cache_dir`` as it finishes so that a rerun collects only what is missing. ``executor``:
    a cluster runs one job per (task, strategy) chunk; by default a local process pool."""
    jobs = plan_jobs(tasks, episodes_per_task, Path(cache_dir), seed, first_episode)
    todo = _missing(jobs)
    if len(todo) < len(jobs):
        log.info(
            "resuming: %d of %d demos already cached in %s",
            len(jobs) - len(todo),
            len(jobs),
            cache_dir,
        )
    if todo and executor is not None and executor.name != "local":
        executor.get([executor.submit(_collect_chunk, c, label="demos") for c in _chunks(todo)])
    elif todo:
        with _pool(num_workers) as pool:
            for _ in tqdm(
                pool.imap_unordered(_collect, todo), total=len(todo), desc="demos", unit="ep"
            ):
                pass
    return jobs, [load_episode_npz(j.cache_path) for j in jobs]


def collect_demos(
    tasks: list[TaskSpec],
    episodes_per_task: int,
    out_root: str | Path,
    spec: DatasetSpec | None = None,
    num_workers: int = 2,
    seed: int = 0,
    render_mode: str = "fast",
    keep_failures: bool = False,
    first_episode: int = 0,
    executor: Executor | None = None,
) -> dict:
    """Collect, render and write demos; returns a summary (per-task success, counts, path).
    ``first_episode`` > 0 continues a task's episode numbering (held-out demos). ``executor``:
    where the state-only demos are collected (rendering stays in this process's pool)."""
    from generation.data.writer import write_episodes

    spec = spec or DatasetSpec()
    out_root = Path(out_root)
    cache_dir = out_root.parent / f".{out_root.name}.cache"
    jobs, episodes = collect_state_only(
        tasks, episodes_per_task, cache_dir, num_workers, seed, first_episode, executor
    )
    per_task: dict[str, dict] = {}
    for job, ep in zip(jobs, episodes, strict=True):
        s = per_task.setdefault(job.task.name, {"episodes": 0, "successes": 0})
        s["episodes"] += 1
        s["successes"] += int(ep.success)
    keep = [
        j.cache_path for j, ep in zip(jobs, episodes, strict=True) if ep.success or keep_failures
    ]
    if not keep:
        raise RuntimeError(f"no successful demonstrations for {[t.name for t in tasks]}")
    cameras = ("agentview", "robot0_eye_in_hand") if spec.wrist_image else ("agentview",)
    render_cfg = EnvConfig(cameras=cameras, image_size=spec.image_size, render_mode=render_mode)
    write_episodes(
        (load_episode_npz(p) for p in keep), out_root, spec=spec, env_config=render_cfg, overwrite=True,
        render_workers=num_workers,
    )  # fmt: skip
    return {
        "dataset": str(out_root),
        "episodes": len(keep),
        "frames": int(
            sum(len(e) for e, j in zip(episodes, jobs, strict=True) if j.cache_path in keep)
        ),
        "per_task": per_task,
    }
