"""Closed-loop evaluation: roll a policy out in LIBERO from the suite's fixed init states.

Protocol: for every task and seed, episodes start from init states ``0..episodes_per_task-1``
(50 at paper scale). The seed seeds the policy's sampling (e.g. flow-matching noise), not the
layout, so seeds measure policy stochasticity on the same scenes.

Work is split into groups (one task, one seed, some init states). Each worker process loads the
policy from its checkpoint once and builds its own env per group. Every finished episode is
appended to a jsonl cache (``out_dir/episodes/<arch>/<source>/n<size>/<suite>/``), so an
interrupted evaluation resumes without redoing finished episodes; a group that crashes (an
exception or a dead worker) is retried ``max_retries`` times and logged to ``errors.log``.
Result rows (ARCHITECTURE.md's schema, Wilson 95% CI) are merged into ``results.parquet``.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import traceback
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evaluation.policy_runner import PolicyFn, PolicyRunner, policy_image_size
from evaluation.results import merge_results
from evaluation.stats import RESULT_COLUMNS, with_rates
from evaluation.video import write_video

__all__ = [
    "EpisodeGroup", "PolicyFn", "PolicyRunner", "close_env", "evaluate", "merge_results",
    "policy_image_size", "read_cache", "run_group",
]  # fmt: skip

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpisodeGroup:
    """One unit of work: episodes of one task and seed, from the listed init states."""

    suite: str
    task_index: int
    seed: int
    init_state_indices: tuple[int, ...]
    cache_file: str
    image_size: int
    horizon: int | None = None
    video_dir: str | None = None
    video_episodes: int = 0  # init states below this index are recorded as mp4


# --------------------------------------------------------------------------- the worker side
_RUNNER: PolicyRunner | None = None


def _init_worker(spec: str | Path | PolicyFn, device: str | None, torch_threads: int) -> None:
    global _RUNNER
    import torch

    torch.set_num_threads(torch_threads)
    logging.basicConfig(level=logging.INFO, format="%(processName)s %(name)s: %(message)s")
    _RUNNER = PolicyRunner(spec, device)


def read_cache(path: str | Path) -> list[dict]:
    """Finished episodes of one cache file; a torn last line (a crash mid-write) is ignored."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("ignoring a torn line in %s", path)
    return rows


def _append_cache(path: str | Path, row: dict) -> None:
    with open(path, "a") as f:  # one small write per line: O_APPEND keeps lines whole
        f.write(json.dumps(row) + "\n")
        f.flush()


def episode_seed(seed: int, task_index: int, init_state_index: int) -> int:
    """A fixed seed per episode, so a resumed evaluation samples exactly as an uninterrupted one."""
    return (seed * 1_000_003 + task_index * 1_009 + init_state_index) % (2**31)


_ENV: tuple[tuple, Any] | None = None  # this process's last env, reused by the next group


def _env_for(group: EpisodeGroup):
    """A LiberoEnv for the group's task; building one takes seconds, so reuse the last one."""
    global _ENV
    from generation.envs.libero_env import EnvConfig, LiberoEnv
    from generation.envs.suites import DEFAULT_HORIZON

    key = (group.suite, group.task_index, group.image_size)
    if _ENV is None or _ENV[0] != key:
        close_env()
        config = EnvConfig(cameras=("agentview",), image_size=group.image_size, render_mode="fast")
        _ENV = (key, LiberoEnv((group.suite, group.task_index), config))
        atexit.unregister(close_env)  # registered after robosuite's EGL teardown: runs first
        atexit.register(close_env)
    env = _ENV[1]
    env.horizon = group.horizon or DEFAULT_HORIZON[group.suite]
    return env


def close_env() -> None:
    """Close this process's cached env (also done at exit)."""
    global _ENV
    if _ENV is not None:
        _ENV[1].close()
        _ENV = None


def run_group(group: EpisodeGroup, runner: PolicyRunner | None = None) -> int:
    """Run the group's episodes not yet in its cache; return how many were run."""
    import torch

    runner = runner or _RUNNER
    if runner is None:
        raise RuntimeError("run_group needs a PolicyRunner (the worker was not initialised)")
    done = {r["init_state_index"] for r in read_cache(group.cache_file)}
    todo = [i for i in group.init_state_indices if i not in done]
    if not todo:
        return 0
    env = _env_for(group)  # kept for the next group; every episode fully resets it
    for index in todo:
        ep_seed = episode_seed(group.seed, group.task_index, index)
        np.random.seed(ep_seed)
        torch.manual_seed(ep_seed)
        runner.reset()
        obs, _ = env.reset(init_state_index=index)
        record = group.video_dir is not None and index < group.video_episodes
        frames = [obs["image"]] if record else []
        success, length = False, 0
        while True:
            obs, _, terminated, truncated, _ = env.step(runner.act(obs, env.language))
            length += 1
            if record:
                frames.append(obs["image"])
            if terminated or truncated:
                success = bool(terminated)
                break
        if record:
            name = f"task{group.task_index}_seed{group.seed}_init{index}.mp4"
            write_video(Path(group.video_dir) / name, frames)
        _append_cache(
            group.cache_file,
            {
                "suite": group.suite, "task_index": group.task_index, "task": env.task.name,
                "seed": group.seed, "init_state_index": index, "success": success,
                "length": length,
            },
        )  # fmt: skip
    return len(todo)


# --------------------------------------------------------------------------- orchestration
def _resolve_tasks(suite: str, tasks: Iterable[int | str] | None):
    from generation.envs.suites import get_task, list_tasks

    if tasks is None:
        return list_tasks(suite)
    return [get_task(suite, t) for t in tasks]


def _split(indices: Sequence[int], parts: int) -> list[tuple[int, ...]]:
    size = max(1, math.ceil(len(indices) / max(parts, 1)))
    return [tuple(indices[i : i + size]) for i in range(0, len(indices), size)]


def _run_groups(
    groups: list[EpisodeGroup],
    spec: str | Path | PolicyFn,
    num_workers: int,
    max_retries: int,
    device: str | None,
    error_log: Path,
) -> list[EpisodeGroup]:
    """Run every group, retrying crashed ones; return the groups that kept failing."""
    attempts = {g: 0 for g in groups}
    failed: list[EpisodeGroup] = []

    def crashed(group: EpisodeGroup, err: BaseException) -> bool:
        attempts[group] += 1
        trace = "".join(traceback.format_exception(err))
        with open(error_log, "a") as f:
            f.write(f"--- {group.suite} task {group.task_index} seed {group.seed} "
                    f"attempt {attempts[group]}\n{trace}\n")  # fmt: skip
        retry = attempts[group] <= max_retries
        log.warning(
            "episodes of %s task %d seed %d crashed (attempt %d, %s): %r",
            group.suite, group.task_index, group.seed, attempts[group],
            "retrying" if retry else "giving up", err,
        )  # fmt: skip
        if not retry:
            failed.append(group)
        return retry

    pending = list(groups)
    if num_workers <= 1:
        runner = PolicyRunner(spec, device)
        while pending:
            group = pending.pop(0)
            try:
                run_group(group, runner)
            except Exception as err:  # noqa: BLE001 - any crash is retried, then reported
                if crashed(group, err):
                    pending.append(group)
        return failed

    ctx = get_context("spawn")  # EGL and torch threads do not survive fork reliably
    while pending:
        with ProcessPoolExecutor(
            max_workers=min(num_workers, len(pending)), mp_context=ctx,
            initializer=_init_worker, initargs=(spec, device, 1),
        ) as pool:  # fmt: skip
            futures = {pool.submit(run_group, g): g for g in pending}
            pending = []
            while futures:
                finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in finished:
                    group = futures.pop(future)
                    err = future.exception()
                    if err is not None and crashed(group, err):
                        pending.append(group)  # a dead worker breaks the pool: a new one runs it
    return failed


def evaluate(
    policy_path_or_fn: str | Path | PolicyFn,
    *,
    arch: str,
    source: str,
    size: int,
    suite: str,
    tasks: Iterable[int | str] | None = None,
    episodes_per_task: int = 50,
    seeds: Sequence[int] = (0,),
    num_workers: int = 1,
    out_dir: str | Path,
    image_size: int | None = None,
    video_episodes: int = 0,
    horizon: int | None = None,
    max_retries: int = 2,
    device: str | None = None,
) -> pd.DataFrame:
    """Evaluate one policy on ``suite`` and merge its rows into ``out_dir/results.parquet``.

    ``tasks`` are indices or names (``None``: every task of the suite). ``image_size``
    defaults to the checkpoint's image feature (128 for a callable). ``video_episodes`` records
    the first that many init states of every task and seed under ``out_dir/videos/``.
    ``horizon`` overrides the suite's step budget (tests). Returns this policy's rows.
    """
    out_dir = Path(out_dir)
    if image_size is None:
        image_size = 128 if callable(policy_path_or_fn) else policy_image_size(policy_path_or_fn)
    run_folder = f"{arch}/{source}/n{size}/{suite}"
    cache_dir = out_dir / "episodes" / run_folder
    cache_dir.mkdir(parents=True, exist_ok=True)
    video_dir = out_dir / "videos" / run_folder if video_episodes > 0 else None
    specs = _resolve_tasks(suite, tasks)
    indices = list(range(episodes_per_task))
    for spec in specs:
        if episodes_per_task > spec.n_init_states:
            raise ValueError(
                f"{spec.key} has {spec.n_init_states} init states, asked {episodes_per_task}"
            )

    groups, cache_files = [], {}
    pieces = max(1, math.ceil(2 * num_workers / max(len(specs) * len(seeds), 1)))
    for spec in specs:
        for seed in seeds:
            horizon_tag = f"_h{horizon}" if horizon else ""  # a shorter budget: other episodes
            cache = cache_dir / f"task{spec.index}_seed{seed}{horizon_tag}.jsonl"
            cache_files[(spec.index, seed)] = (spec, int(seed), cache)
            done = {r["init_state_index"] for r in read_cache(cache)}
            todo = [i for i in indices if i not in done]
            base = EpisodeGroup(
                suite=suite, task_index=spec.index, seed=int(seed), init_state_indices=(),
                cache_file=str(cache), image_size=image_size, horizon=horizon,
                video_dir=str(video_dir) if video_dir else None, video_episodes=video_episodes,
            )  # fmt: skip
            groups += [replace(base, init_state_indices=part) for part in _split(todo, pieces)]
    total = sum(len(g.init_state_indices) for g in groups)
    log.info("evaluating %s on %s: %d episodes to run (%d cached), %d worker(s)",
             run_folder, suite, total, len(indices) * len(cache_files) - total, num_workers)  # fmt: skip
    failed = []
    if groups:
        failed = _run_groups(groups, policy_path_or_fn, num_workers, max_retries, device,
                             cache_dir / "errors.log")  # fmt: skip

    rows = []
    for spec, seed, cache in cache_files.values():
        seed_rows = {r["init_state_index"]: r for r in read_cache(cache)}
        eps = [seed_rows[i] for i in indices if i in seed_rows]
        rows.append({
            "arch": arch, "source": source, "size": int(size), "suite": suite, "task": spec.name,
            "seed": seed, "episodes": len(eps),
            "successes": sum(bool(e["success"]) for e in eps),
            "mean_length": float(np.mean([e["length"] for e in eps])) if eps else float("nan"),
        })  # fmt: skip
    df = with_rates(pd.DataFrame(rows))[[*RESULT_COLUMNS, "mean_length"]]
    complete = df[df["episodes"] == episodes_per_task]
    if len(complete):
        merge_results(out_dir / "results.parquet", complete)
    if failed:
        raise RuntimeError(
            f"{len(failed)} episode group(s) of {run_folder} kept crashing after {max_retries} "
            f"retries (see {cache_dir / 'errors.log'}); finished episodes are cached, rerun to resume"
        )
    return df
