"""Stage manifests: every stage writes ``manifest.json`` beside its artifact (ARCHITECTURE.md).

A stage whose manifest says ``complete`` for the same config hash is skipped; anything else
reruns (and resumes from whatever the stage itself cached). Writes are atomic.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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


def write_json_atomic(path: str | Path, data: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


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


@contextmanager
def stage(stage_dir: str | Path, config: Any, name: str, seed: int | None = None) -> Iterator[dict]:
    """Mark a stage ``running`` on entry and ``complete`` (with wall time) on normal exit.

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
        "host": platform.node(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json_atomic(stage_dir / MANIFEST, {**base, "status": "running"})
    results: dict = {}
    t0 = time.time()
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


def run_step(
    step_dir: str | Path, config: Any, fn: Callable[[Path], dict], name: str | None = None
) -> dict:
    """Run ``fn(step_dir) -> result`` unless ``step_dir`` is complete for this config; then
    return the recorded result instead."""
    import logging

    step_dir = Path(step_dir)
    done = read_manifest(step_dir)
    if done and done.get("config_hash") == config_hash(config):
        if done.get("status") == "complete":
            logging.getLogger(__name__).info("skip %s (complete for this config)", step_dir)
            return done["result"]
    elif done and step_dir.is_dir():
        # made for another config: its partial work (e.g. PPO checkpoints) must not be resumed
        logging.getLogger(__name__).warning("%s was made for another config: cleared", step_dir)
        shutil.rmtree(step_dir)
    step_dir.mkdir(parents=True, exist_ok=True)
    with stage(step_dir, config, name or step_dir.name) as result:
        result.update(fn(step_dir))
    logging.getLogger(__name__).info("done %s", step_dir)
    return result
