"""Closed-loop evaluation on Ray: the episode groups of :mod:`evaluation.closed_loop` as Ray
tasks spread over a cluster's workers instead of this machine's worker processes.

A Ray worker keeps its last policy and envs between groups as a pool worker does. Every
finished episode is appended to its group's cache on shared storage, so a group whose worker
dies is rerun by Ray (``max_retries``) from its first unfinished episode: none is lost and
none is counted twice.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path

from evaluation import closed_loop
from evaluation.closed_loop import EpisodeGroup, EvalPool, PolicyFn
from generation.executor import ray_module


def _run_group_on_worker(
    group: EpisodeGroup, spec: str | Path | PolicyFn | None, device: str | None
) -> int:
    """A Ray task: set this worker up once (one torch thread, the pool's policy), then run."""
    if closed_loop._RUNNERS is None or closed_loop._RUNNERS.spec is not spec:
        closed_loop._init_worker(spec, device, 1)
    return closed_loop.run_group(group)


def _absolute(group: EpisodeGroup) -> EpisodeGroup:
    """Paths that mean the same on every node (a worker's working folder is not ours)."""

    def absolute(path: str | None) -> str | None:
        return None if path is None else str(Path(path).resolve())

    policy = group.policy
    if policy is not None and Path(policy).exists():
        policy = absolute(policy)
    return replace(
        group,
        cache_file=absolute(group.cache_file),
        video_dir=absolute(group.video_dir),
        policy=policy,
    )


class _RaySubmitter:
    """The one method of an executor that :func:`closed_loop._run_groups` calls."""

    def __init__(self, pool: RayEvalPool):
        self.pool = pool

    def submit(self, fn, group: EpisodeGroup) -> Future:
        p = self.pool
        group = _absolute(group)
        return (
            p.remote.options(num_cpus=1, num_gpus=p.num_gpus, max_retries=p.max_retries)
            .remote(group, p.spec, p.device)
            .future()
        )


class RayEvalPool(EvalPool):
    """An :class:`EvalPool` whose groups run as Ray tasks (one CPU, ``num_gpus`` each) on the
    cluster this process is connected to."""

    def __init__(
        self,
        spec: str | Path | PolicyFn | None = None,
        device: str | None = None,
        num_gpus: float = 0.0,
        max_retries: int = 3,
    ):
        ray = ray_module()
        if not ray.is_initialized():
            raise RuntimeError("RayEvalPool needs a connected Ray: use executor_session()")
        super().__init__(int(ray.cluster_resources().get("CPU", 1)), spec, device)
        self.num_gpus, self.max_retries = num_gpus, max_retries
        self.remote = ray.remote(_run_group_on_worker)

    @property
    def in_process(self) -> bool:
        return False

    def executor(self) -> _RaySubmitter:
        return _RaySubmitter(self)

    def discard(self) -> None:
        """Nothing to drop: Ray replaces dead workers itself."""

    def close(self) -> None:
        """Ray's workers belong to the cluster: nothing to shut down here."""
