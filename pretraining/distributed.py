"""Training under a launcher (``torchrun``, ``accelerate launch``): which process group to
join, a check that it holds every process the launcher started, and main-process-only work
that the other processes wait for.

Accelerate 1.16 joins a CPU (gloo) process group only when asked for the CPU: on a host
without an accelerator, a plain ``Accelerator()`` under ``torchrun --nproc_per_node 2`` gives
each process a world of one, so both train alone and write the same files. ``use_cpu`` asks
for the CPU group whenever a launcher started several processes and there is no accelerator.

``accelerate launch --cpu --num_processes N`` starts one process unless it runs through
``mpirun`` (``--mpirun_hostfile``); :func:`check_launcher` refuses that case before any work.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import timedelta

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

# what torchrun and the MPI flavours set (accelerate reads the same variables)
WORLD_SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
# other processes wait this long for main-process-only work such as a generation stage
MAIN_ONLY_TIMEOUT = timedelta(days=7)

_wait_group: list = []  # the gloo group for the waits, made once, by every process together


def launcher_world_size() -> int:
    """How many processes the launcher started (1 without a launcher)."""
    for var in WORLD_SIZE_VARS:
        if os.environ.get(var):
            return int(os.environ[var])
    return 1


def _flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes", "y", "on")


def check_launcher() -> None:
    """Refuse ``accelerate launch --cpu --num_processes N>1`` without ``mpirun``: accelerate
    started one process (and set MASTER_ADDR for the N it was asked for)."""
    asked_cpu = _flag("ACCELERATE_USE_CPU")
    if asked_cpu and os.environ.get("MASTER_ADDR") and launcher_world_size() == 1:
        raise RuntimeError(
            "`accelerate launch --cpu --num_processes N` started one process (accelerate runs "
            "several CPU processes only through mpirun); on one machine use `accelerate launch "
            "--multi_gpu --num_processes N ...` (CPU-only hosts train on CPU with gloo) or "
            "`torchrun --nproc_per_node N ...` (docs/distributed.md)"
        )


def use_cpu() -> bool:
    """Train on the CPU: asked for (``accelerate launch --cpu``), or several processes on a
    host without an accelerator (Accelerate then joins them with gloo)."""
    if _flag("ACCELERATE_USE_CPU"):
        return True
    return launcher_world_size() > 1 and not torch.accelerator.is_available()


def check_world_size(num_processes: int) -> None:
    """The training process group must hold every process the launcher started."""
    expected = launcher_world_size()
    if num_processes != expected:
        raise RuntimeError(
            f"the launcher started {expected} processes but Accelerate joined {num_processes}: "
            "each would train alone and write the same files; launch with torchrun or "
            "`accelerate launch --multi_gpu` (docs/distributed.md)"
        )


def init_processes() -> None:
    """Join the launcher's process group now (before any main-process-only work)."""
    check_launcher()
    if launcher_world_size() == 1:
        return
    from accelerate import PartialState

    state = PartialState(cpu=use_cpu())
    check_world_size(state.num_processes)
    logger.info(
        "process %d of %d (%s, %s)",
        state.process_index,
        state.num_processes,
        state.distributed_type,
        state.device,
    )


def end_processes() -> None:
    """Leave the process group at the end of a launched command (a no-op without one)."""
    if is_distributed():
        dist.destroy_process_group()
        _wait_group.clear()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main_process() -> bool:
    return not is_distributed() or dist.get_rank() == 0


def on_main[T](fn: Callable[[], T]) -> T:
    """``fn()`` on the main process only; the others wait for it and return its result. An
    error on the main process is raised on every process (no process is left waiting)."""
    if not is_distributed():
        return fn()
    if not _wait_group:  # gloo even beside NCCL: waiting for hours must not hold a GPU kernel
        _wait_group.append(dist.new_group(backend="gloo", timeout=MAIN_ONLY_TIMEOUT))
    box: list = [None]
    error: BaseException | None = None
    if dist.get_rank() == 0:
        try:
            box[0] = (True, fn())
        except BaseException as err:  # noqa: BLE001 - re-raised below after the others know
            error = err
            box[0] = (False, f"{type(err).__name__}: {err}")
    dist.broadcast_object_list(box, src=0, group=_wait_group[0])
    ok, value = box[0]
    if error is not None:
        raise error
    if not ok:
        raise RuntimeError(f"the main process failed: {value}")
    return value
