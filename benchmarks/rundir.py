"""The run folder's own records: one ``dlr run`` at a time (a lock naming its holder), the
resolved recipe with the versions that ran it, and stage times merged over invocations."""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import yaml
from filelock import FileLock, Timeout

from generation.manifest import atomic_write, code_version, remove_stale_temps, write_json_atomic

log = logging.getLogger(__name__)

LOCK = ".dlr.lock"
HOLDER = ".dlr.lock.holder"  # the lock file itself may be truncated by a waiting process
PACKAGES = ("torch", "lerobot", "accelerate", "transformers", "peft", "mujoco", "robosuite",
            "numpy", "pandas", "pyarrow", "pydantic", "datasets")  # fmt: skip


class RunFolderBusy(RuntimeError):
    pass


@contextmanager
def run_lock(run_dir: Path, wait: bool = False) -> Iterator[None]:
    """Hold the run folder for this process; another holder makes this fail (or wait)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(run_dir / LOCK)
    try:
        lock.acquire(timeout=-1 if wait else 0)
    except Timeout:
        holder = run_dir / HOLDER
        who = json.loads(holder.read_text()) if holder.is_file() else {}
        raise RunFolderBusy(
            f"run folder {run_dir} is in use by dlr run PID {who.get('pid', '?')} "
            f"(since {who.get('started', '?')}): wait for it, or pass --wait to queue behind it"
        ) from None
    try:
        write_json_atomic(
            run_dir / HOLDER, {"pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        )
        for path in remove_stale_temps(run_dir):
            log.info("removed %s (left by a killed run)", path)
        yield
    finally:
        (run_dir / HOLDER).unlink(missing_ok=True)
        lock.release()


def versions() -> dict[str, str]:
    """Python, the key packages, the code's git commit and the stepping path of this process."""
    from generation.envs.libero_env import lean_default

    out = {"python": platform.python_version(), "code_version": code_version()}
    out["lean_stepping"] = "on" if lean_default() else "off (DLR_LEAN=0)"
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def write_resolved(run_dir: Path, resolved: dict) -> None:
    """``recipe.yaml``: every value that runs (it loads back as a recipe); ``versions.json``:
    the packages and commit that ran it."""
    with atomic_write(run_dir / "recipe.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(resolved, sort_keys=False))
    write_json_atomic(run_dir / "versions.json", versions())


def record_timing(run_dir: Path, stage: str, seconds: float) -> None:
    """Merge one stage's wall time into ``timings.json`` (other stages' times are kept)."""
    path = run_dir / "timings.json"
    try:
        timings = json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        timings = {}
    timings[stage] = round(seconds, 1)
    write_json_atomic(path, timings)
