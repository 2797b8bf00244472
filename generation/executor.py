"""Where the pipeline's independent jobs run: in this process (``local``, the default) or as
Ray tasks on a cluster (``ray``, ``pip install -e .[ray]``).

The pipeline is written once as jobs submitted to an executor; a job's arguments may be
handles of earlier jobs, which makes it wait for them. :class:`LocalExecutor` runs each job
at once, in submission order, exactly as a plain loop would. :class:`RayExecutor` submits it
as a Ray task that asks for the CPUs (and GPUs) the job uses; Ray resolves the handles, so
independent jobs run at the same time on any node. Every job writes into the run folder
(shared storage on a cluster) through the same idempotent steps, so resume and skip work the
same on both, and a job whose worker dies is retried by Ray (``max_retries``) and redoes only
its own unfinished step.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

log = logging.getLogger(__name__)

INSTALL_HINT = "install the ray extra: pip install -e '.[ray]'"


class ClusterConfig(BaseModel):
    """The ``cluster`` section of a recipe: where jobs run. Results do not depend on it (no
    step's config hash includes it), so a run may switch backends and resume."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["local", "ray"] = Field(
        "local", description="local: this machine's process pools; ray: Ray tasks"
    )
    address: str | None = Field(
        None,
        description="Ray cluster to join: 'auto' (the one this node belongs to), 'host:6379' "
        "or 'ray://host:10001'; None: start a one-machine Ray for this run",
    )
    num_cpus: int | None = Field(
        None, ge=1, description="CPUs of the one-machine Ray started when address is None"
    )
    max_retries: int = Field(3, ge=0, description="reruns of a job whose worker or node died")
    eval_gpus: float = Field(
        0.0, ge=0, description="GPUs per closed-loop evaluation job (fractions share a GPU)"
    )

    @field_validator("backend")
    @classmethod
    def _ray_installed(cls, v: str) -> str:
        import importlib.util

        if v == "ray" and importlib.util.find_spec("ray") is None:
            raise ValueError(f"ray is not installed: {INSTALL_HINT}")
        return v


def ray_module():
    """``ray``, or one line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ImportError(f"cluster.backend: ray needs the ray package: {INSTALL_HINT}") from None
    return ray


@dataclass(frozen=True)
class Done:
    """The handle of a job the local executor already ran."""

    value: Any


class LocalExecutor:
    """Runs every job at once in this process (which may start its own worker processes)."""

    name = "local"

    def submit(
        self, fn: Callable, *args: Any, num_cpus: float = 1, num_gpus: float = 0, label: str = ""
    ) -> Done:
        return Done(fn(*[a.value if isinstance(a, Done) else a for a in args]))

    def get(self, handles: Sequence[Done]) -> list:
        return [h.value for h in handles]


def _remote_call(fn: Callable, *args: Any) -> Any:
    """A job inside a Ray worker: one torch thread (the CPUs it asked for go to its env
    worker processes, as in the local pool) and headless rendering."""
    import torch

    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    torch.set_num_threads(1)
    return fn(*args)


class RayExecutor:
    """Submits jobs as Ray tasks to the cluster this process is connected to."""

    name = "ray"

    def __init__(self, max_retries: int = 3):
        ray = ray_module()
        if not ray.is_initialized():
            raise RuntimeError("RayExecutor needs a connected Ray: use executor_session()")
        self.ray = ray
        self.max_retries = max_retries
        self._call = ray.remote(_remote_call)

    def largest_node_cpus(self) -> float:
        return max(
            (n["Resources"].get("CPU", 0) for n in self.ray.nodes() if n["Alive"]), default=0
        )

    def check_fits(self, num_cpus: float, what: str) -> None:
        """A job no node can hold would wait forever: fail at once, naming the setting."""
        largest = self.largest_node_cpus()
        if num_cpus > largest:
            raise ValueError(
                f"{what} asks for {num_cpus:g} CPUs per job but the largest Ray node has "
                f"{largest:g}: lower it or start nodes with more CPUs (ray start --num-cpus)"
            )

    def submit(
        self, fn: Callable, *args: Any, num_cpus: float = 1, num_gpus: float = 0, label: str = ""
    ):
        options = {"num_cpus": num_cpus, "num_gpus": num_gpus, "max_retries": self.max_retries}
        if label:
            options["name"] = label
        return self._call.options(**options).remote(fn, *args)

    def get(self, handles: Sequence) -> list:
        return self.ray.get(list(handles))


Executor = LocalExecutor | RayExecutor


@contextmanager
def executor_session(cluster: ClusterConfig | None) -> Iterator[Executor]:
    """The executor for ``cluster``; with Ray, connect (or start a one-machine Ray) for the
    block and disconnect after (a Ray this process was already connected to is kept)."""
    cluster = cluster or ClusterConfig()
    if cluster.backend == "local":
        yield LocalExecutor()
        return
    ray = ray_module()
    connect = not ray.is_initialized()
    if connect:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        kwargs: dict[str, Any] = {"include_dashboard": False}
        if cluster.address is None:  # a one-machine Ray of our own
            if cluster.num_cpus is not None:
                kwargs["num_cpus"] = cluster.num_cpus
            # Ray runs its workers at nice 15; the local backend's processes run at 0, and on
            # a shared host the niced workers (and their env workers) lose the CPU to others
            kwargs["_system_config"] = {"worker_niceness": 0}
        ray.init(address=cluster.address, **kwargs)
        log.info("Ray: %s", ray.cluster_resources())
    try:
        yield RayExecutor(cluster.max_retries)
    finally:
        if connect:
            ray.shutdown()


def make_executor(cluster: ClusterConfig | None) -> Executor:
    """The executor of an open :func:`executor_session` (Ray must be connected)."""
    if cluster is None or cluster.backend == "local":
        return LocalExecutor()
    return RayExecutor(cluster.max_retries)


__all__ = [
    "ClusterConfig", "Executor", "LocalExecutor", "RayExecutor", "executor_session",
    "make_executor",
]  # fmt: skip
