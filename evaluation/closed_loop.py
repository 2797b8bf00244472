"""Closed-loop evaluation: roll a policy out in LIBERO from the suite's fixed init states.

Protocol: for every task and seed, episodes start from init states ``0..episodes_per_task-1``
(50 at paper scale). The seed seeds the policy's sampling (e.g. flow-matching noise), not the
layout, so seeds measure policy stochasticity on the same scenes.

Work is split into groups (one policy, task and seed, some init states) and run by an
:class:`EvalPool` of spawned worker processes. A pool can serve many policies in turn (the
benchmark runner keeps one for its whole evaluation stage): each worker imports torch, lerobot
and LIBERO once, keeps the last policy it loaded and its last few envs, so switching policy
costs one checkpoint load, not a new process, imports and env builds. Every finished episode is
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
import os
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
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
from generation.envs.cache import EnvCache

__all__ = [
    "EpisodeGroup", "EvalPool", "PolicyFn", "PolicyRunner", "close_env", "evaluate", "merge_results",
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
    policy: str | None = None  # checkpoint path; None: the policy the pool was created with


# --------------------------------------------------------------------------- the worker side
class _RunnerCache:
    """The last :class:`PolicyRunner` loaded, reloaded when a group names another policy;
    a group that names none uses ``spec`` (the pool's own policy)."""

    def __init__(self, spec: str | Path | PolicyFn | None, device: str | None):
        self.spec, self.device = spec, device
        self._last: tuple[Any, PolicyRunner] | None = None

    def get(self, policy: str | None) -> PolicyRunner:
        key = policy if policy is not None else self.spec
        if key is None:
            raise RuntimeError("the episode group names no policy and the pool was given none")
        if self._last is None or self._last[0] != key:
            self._last = None  # free the previous policy before loading the next
            self._last = (key, PolicyRunner(key, self.device))
        return self._last[1]


_RUNNERS: _RunnerCache | None = None  # this worker process's


def _init_worker(
    spec: str | Path | PolicyFn | None, device: str | None, torch_threads: int
) -> None:
    global _RUNNERS
    import torch

    torch.set_num_threads(torch_threads)
    logging.basicConfig(level=logging.INFO, format="%(processName)s %(name)s: %(message)s")
    _RUNNERS = _RunnerCache(spec, device)


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


PROGRESS_POLL_S = 2.0  # how often the progress bar re-reads the workers' episode caches
MAX_CACHED_ENVS = 2  # building an env takes seconds; each holds a MuJoCo model and a GL context
_ENVS = EnvCache(MAX_CACHED_ENVS)  # this process's envs by (suite, task, image size)


def _env_for(group: EpisodeGroup):
    """A LiberoEnv for the group's task, reused across groups and policies (every episode
    fully resets it); the least recently used one is closed beyond ``MAX_CACHED_ENVS``."""
    from generation.envs.libero_env import EnvConfig, LiberoEnv
    from generation.envs.suites import DEFAULT_HORIZON

    def make():
        config = EnvConfig(cameras=("agentview",), image_size=group.image_size, render_mode="fast")
        env = LiberoEnv((group.suite, group.task_index), config)
        atexit.unregister(close_env)  # registered after robosuite's EGL teardown: runs first
        atexit.register(close_env)
        return env

    env = _ENVS.get((group.suite, group.task_index, group.image_size), make)
    env.horizon = group.horizon or DEFAULT_HORIZON[group.suite]
    return env


def close_env() -> None:
    """Close this process's cached envs (also done at exit)."""
    _ENVS.close()


def run_group(
    group: EpisodeGroup,
    runner: PolicyRunner | None = None,
    on_episode: Callable[[dict], None] | None = None,
) -> int:
    """Run the group's episodes not yet in its cache; return how many were run.
    ``on_episode`` gets each finished episode's cache row (the in-process progress bar)."""
    import torch

    if runner is None:
        if _RUNNERS is None:
            raise RuntimeError("run_group needs a PolicyRunner (the worker was not initialised)")
        runner = _RUNNERS.get(group.policy)
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
        row = {
            "suite": group.suite, "task_index": group.task_index, "task": env.task.name,
            "seed": group.seed, "init_state_index": index, "success": success,
            "length": length, "pid": os.getpid(),
        }  # fmt: skip
        _append_cache(group.cache_file, row)
        if on_episode is not None:
            on_episode(row)
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


class EvalPool:
    """Worker processes that run episode groups, for one policy or many in turn.

    ``num_workers <= 1`` runs groups in this process. ``spec`` is the policy for groups that
    name none (a callable must be given here; checkpoint paths can come with each group). The
    processes start on first use; one that dies is replaced with all the others (a dead worker
    breaks a ``ProcessPoolExecutor``). Use as a context manager, or call :meth:`close`. A worker
    loads a checkpoint path once and keeps it while the groups it gets name the same path: do
    not rewrite a checkpoint in place while a pool that ran it is open.
    """

    def __init__(
        self,
        num_workers: int = 1,
        spec: str | Path | PolicyFn | None = None,
        device: str | None = None,
    ):
        self.num_workers = max(1, int(num_workers))
        self.spec = spec
        self.device = device
        self._executor: ProcessPoolExecutor | None = None
        self._local = _RunnerCache(spec, device)  # for num_workers <= 1

    def executor(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.num_workers,
                mp_context=get_context("spawn"),  # EGL and torch threads do not survive fork
                initializer=_init_worker,
                initargs=(self.spec, self.device, 1),
            )
        return self._executor

    @property
    def in_process(self) -> bool:
        """Groups run in this process (one worker)."""
        return self.num_workers <= 1

    def local_runner(self, policy: str | None) -> PolicyRunner:
        """The in-process runner (``num_workers <= 1``), reloaded when the policy changes."""
        return self._local.get(policy)

    def discard(self) -> None:
        """Drop broken worker processes; the next use starts fresh ones."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._local = _RunnerCache(self.spec, self.device)

    def __enter__(self) -> EvalPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Progress:
    """A tqdm bar of episodes done out of the total, with successes and ETA; worker processes
    report through their cache files, which :meth:`poll` re-reads."""

    def __init__(self, groups: list[EpisodeGroup], desc: str):
        from tqdm.auto import tqdm

        self.todo: dict[str, set[int]] = {}
        for g in groups:
            self.todo.setdefault(g.cache_file, set()).update(g.init_state_indices)
        total = sum(len(v) for v in self.todo.values())
        self.bar = tqdm(total=total, desc=desc, unit="episode", dynamic_ncols=True, leave=False)
        self.successes = 0

    def episode(self, row: dict) -> None:
        self.successes += bool(row["success"])
        self.bar.set_postfix(successes=self.successes, refresh=False)
        self.bar.update(1)

    def poll(self) -> None:
        rows = [r for f, todo in self.todo.items() for r in read_cache(f)
                if r["init_state_index"] in todo]  # fmt: skip
        self.successes = sum(bool(r["success"]) for r in rows)
        self.bar.set_postfix(successes=self.successes, refresh=False)
        self.bar.update(len(rows) - self.bar.n)


def _run_groups(
    groups: list[EpisodeGroup], pool: EvalPool, max_retries: int, error_log: Path, desc: str = ""
) -> list[EpisodeGroup]:
    """Run every group, retrying crashed ones; return the groups that kept failing."""
    attempts = {g: 0 for g in groups}
    failed: list[EpisodeGroup] = []
    progress = _Progress(groups, desc)

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
    try:
        if pool.in_process:
            while pending:
                group = pending.pop(0)
                try:
                    run_group(group, pool.local_runner(group.policy), progress.episode)
                except Exception as err:  # noqa: BLE001 - any crash is retried, then reported
                    if crashed(group, err):
                        pending.append(group)
            return failed

        while pending:
            executor = pool.executor()
            futures = {executor.submit(run_group, g): g for g in pending}
            pending, broken = [], False
            while futures:
                finished, _ = wait(futures, timeout=PROGRESS_POLL_S, return_when=FIRST_COMPLETED)
                progress.poll()
                for future in finished:
                    group = futures.pop(future)
                    err = future.exception()
                    broken = broken or isinstance(err, BrokenProcessPool)
                    if err is not None and crashed(group, err):
                        pending.append(group)
            if broken:  # a dead worker broke the pool: fresh processes run the retries
                pool.discard()
        return failed
    finally:
        progress.bar.close()


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
    pool: EvalPool | None = None,
    results_file: str | None = "results.parquet",
) -> pd.DataFrame:
    """Evaluate one policy on ``suite`` and merge its rows into ``out_dir/results.parquet``
    (``results_file``; None: merge nowhere, the caller stores the rows).

    ``tasks`` are indices or names (``None``: every task of the suite). ``image_size``
    defaults to the checkpoint's image feature (128 for a callable). ``video_episodes`` records
    the first that many init states of every task and seed under ``out_dir/videos/``.
    ``horizon`` overrides the suite's step budget (tests). ``pool``: an :class:`EvalPool` to
    run on (its workers and device; ``num_workers`` and ``device`` are then unused), so that
    many policies share worker processes; by default one is made for this call. Returns this
    policy's rows.
    """
    is_fn = callable(policy_path_or_fn)
    if is_fn and pool is not None and pool.spec is not policy_path_or_fn:
        raise ValueError("a callable policy must be the pool's own: EvalPool(spec=policy)")
    out_dir = Path(out_dir)
    if image_size is None:
        image_size = 128 if is_fn else policy_image_size(policy_path_or_fn)
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
                policy=None if is_fn else str(policy_path_or_fn),
            )  # fmt: skip
            groups += [replace(base, init_state_indices=part) for part in _split(todo, pieces)]
    total = sum(len(g.init_state_indices) for g in groups)
    log.info("evaluating %s on %s: %d episodes to run (%d cached), %d worker(s)",
             run_folder, suite, total, len(indices) * len(cache_files) - total, num_workers)  # fmt: skip
    failed = []
    if groups:
        own = pool is None
        if own:
            pool = EvalPool(num_workers, policy_path_or_fn if is_fn else None, device)
        try:
            failed = _run_groups(groups, pool, max_retries, cache_dir / "errors.log", run_folder)
        finally:
            if own:
                pool.close()

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
    if len(complete) and results_file is not None:
        merge_results(out_dir / results_file, complete)
    if failed:
        raise RuntimeError(
            f"{len(failed)} episode group(s) of {run_folder} kept crashing after {max_retries} "
            f"retries (see {cache_dir / 'errors.log'}); finished episodes are cached, rerun to resume"
        )
    return df
