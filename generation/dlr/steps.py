"""Resumable pipeline steps: each step's folder holds a ``manifest.json`` (resolved config,
config hash, status, wall time, result) written atomically; a step whose manifest is
``complete`` for the same hash is skipped and its recorded result returned."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def write_json_atomic(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def read_manifest(step_dir: Path) -> dict | None:
    path = Path(step_dir) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


def run_step(step_dir: Path, config: dict, fn: Callable[[Path], dict]) -> dict:
    """Run ``fn(step_dir) -> result`` unless ``step_dir`` is complete for this config."""
    step_dir = Path(step_dir)
    h = config_hash(config)
    done = read_manifest(step_dir)
    if done and done.get("status") == "complete" and done.get("config_hash") == h:
        log.info("skip %s (complete, hash %s)", step_dir, h)
        return done["result"]
    step_dir.mkdir(parents=True, exist_ok=True)
    manifest = {"config": config, "config_hash": h, "status": "running", "started": time.time()}
    write_json_atomic(manifest, step_dir / MANIFEST)
    t0 = time.time()
    try:
        result = fn(step_dir)
    except BaseException as e:
        manifest |= {"status": "failed", "error": repr(e), "wall_time_s": time.time() - t0}
        write_json_atomic(manifest, step_dir / MANIFEST)
        raise
    manifest |= {"status": "complete", "wall_time_s": time.time() - t0, "result": result}
    write_json_atomic(manifest, step_dir / MANIFEST)
    log.info("done %s in %.1fs", step_dir, manifest["wall_time_s"])
    return result
