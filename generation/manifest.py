"""Stage manifests: every stage writes ``manifest.json`` beside its artifact (ARCHITECTURE.md).

A stage whose manifest says ``complete`` for the same config hash is skipped; anything else
reruns (and resumes from whatever the stage itself cached). Writes are atomic.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def config_hash(config: Any) -> str:
    """Stable short hash of a JSON-able config (pydantic models and dataclasses accepted)."""
    if hasattr(config, "model_dump"):
        config = config.model_dump(mode="json")
    elif hasattr(config, "__dataclass_fields__"):
        import dataclasses

        config = dataclasses.asdict(config)
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def code_version() -> str:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(
            ["git", "-C", str(here), "describe", "--always", "--dirty"],
            capture_output=True, text=True, timeout=5, check=False,
        )  # fmt: skip
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)$")


def temp_path(path: str | Path) -> Path:
    """``.<name>.tmp-<pid>`` beside ``path``: the PID tells a live writer from a killed one."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temp file path to write; on success it replaces ``path`` in one rename, on an
    error it is removed (readers never see a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    _remove(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        _remove(tmp)


def atomic_pickle(obj: Any, path: str | Path) -> None:
    """Pickle ``obj`` to ``path`` through :func:`atomic_write`."""
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        pickle.dump(obj, f)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temp folder to fill; on success it replaces the folder ``path`` (the old
    one is removed first), on an error it is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    _remove(tmp)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            _remove(path)
        os.replace(tmp, path)
    finally:
        _remove(tmp)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(root: str | Path) -> list[Path]:
    """Remove the ``.<name>.tmp-<pid>`` files and folders under ``root`` whose writer is dead."""
    removed = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            m = TEMP_NAME.match(name)
            if m and int(m["pid"]) != os.getpid() and not _pid_alive(int(m["pid"])):
                _remove(Path(dirpath) / name)
                removed.append(Path(dirpath) / name)
        dirnames[:] = [d for d in dirnames if not TEMP_NAME.match(d)]
    return removed


def write_json_atomic(path: str | Path, data: Any) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))


def read_manifest(stage_dir: str | Path) -> dict | None:
    path = Path(stage_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def is_complete(stage_dir: str | Path, config: Any) -> bool:
    m = read_manifest(stage_dir)
    return bool(m and m.get("status") == "complete" and m.get("config_hash") == config_hash(config))


_STEPS_RUN = [0]


def steps_run() -> int:
    """How many steps this process has started (not skipped): did a stage do any work?"""
    return _STEPS_RUN[0]


@contextmanager
def stage(
    stage_dir: str | Path,
    config: Any,
    name: str,
    seed: int | None = None,
    started_at: float | None = None,
) -> Iterator[dict]:
    """Mark a stage ``running`` on entry and ``complete`` (with wall time) on normal exit.
    ``started_at`` (a ``time.time()``): the work began before the block (a folder renamed into
    place, which must not hold the manifest yet).

    The yielded dict may be filled with results; they are saved under ``result``. On an
    exception the manifest says ``failed`` with the error, and the exception propagates.
    """
    stage_dir = Path(stage_dir)
    cfg = config.model_dump(mode="json") if hasattr(config, "model_dump") else config
    base = {
        "stage": name,
        "config": cfg,
        "config_hash": config_hash(config),
        "code_version": code_version(),
        "seed": seed,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json_atomic(stage_dir / MANIFEST, {**base, "status": "running"})
    _STEPS_RUN[0] += 1
    results: dict = {}
    t0 = time.time() if started_at is None else started_at
    try:
        yield results
    except BaseException as e:
        write_json_atomic(
            stage_dir / MANIFEST,
            {**base, "status": "failed", "error": repr(e), "wall_time_s": time.time() - t0},
        )
        raise
    write_json_atomic(
        stage_dir / MANIFEST,
        {
            **base,
            "status": "complete",
            "wall_time_s": round(time.time() - t0, 2),
            "result": results,
        },
    )


def update_manifest(stage_dir: str | Path, **fields: Any) -> dict:
    """Merge ``fields`` (status, steps done, wall time, ...) into the manifest, atomically."""
    stage_dir = Path(stage_dir)
    manifest = read_manifest(stage_dir) or {"code_version": code_version()}
    manifest.update(fields)
    manifest["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    write_json_atomic(stage_dir / MANIFEST, manifest)
    return manifest


def publish_dir(tmp_dir: str | Path, out_dir: str | Path) -> None:
    """Move every entry of ``tmp_dir`` into ``out_dir`` by rename, replacing older ones."""
    import shutil

    tmp_dir, out_dir = Path(tmp_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for entry in tmp_dir.iterdir():
        target = out_dir / entry.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(entry, target)
    tmp_dir.rmdir()


def upstream_hashes(upstream: dict[str, str | Path]) -> dict[str, str | None]:
    """The config hash recorded by each upstream step's manifest (None: not built)."""
    return {k: (read_manifest(p) or {}).get("config_hash") for k, p in upstream.items()}


def keyed(config: Any, upstream: dict[str, str | Path] | None) -> Any:
    """What a step's hash covers: its config and, chained, its upstream steps' hashes."""
    return {"config": config, "upstream": upstream_hashes(upstream)} if upstream else config


def prepare_step(
    step_dir: str | Path, key_hash: str, force: bool = False, clear_unrecorded: bool = False
) -> bool:
    """True when ``step_dir`` is complete for ``key_hash``: skip it. Otherwise a folder made for
    another key (or any, with ``force``; or one without a manifest, with ``clear_unrecorded``)
    is removed, so that only partial work of this very key resumes."""
    step_dir = Path(step_dir)
    done = read_manifest(step_dir)
    same = done is not None and done.get("config_hash") == key_hash
    if same and not force and done.get("status") == "complete":
        log.info("skip %s (complete for this config and upstream)", step_dir)
        return True
    if step_dir.exists() and (
        force or (done is not None and not same) or (done is None and clear_unrecorded)
    ):
        log.warning("%s: %s, cleared", step_dir, "--force" if force else "made from other inputs")
        shutil.rmtree(step_dir)
    step_dir.mkdir(parents=True, exist_ok=True)
    _STEPS_RUN[0] += 1
    return False


def run_step(
    step_dir: str | Path,
    config: Any,
    fn: Callable[[Path], dict],
    name: str | None = None,
    upstream: dict[str, str | Path] | None = None,
    force: bool = False,
) -> dict:
    """Run ``fn(step_dir) -> result`` unless ``step_dir`` is complete for this config and these
    ``upstream`` step folders' hashes; then return the recorded result instead."""
    step_dir = Path(step_dir)
    key = keyed(config, upstream)
    if prepare_step(step_dir, config_hash(key), force):
        return read_manifest(step_dir)["result"]
    with stage(step_dir, key, name or step_dir.name) as result:
        result.update(fn(step_dir))
    log.info("done %s", step_dir)
    return result
