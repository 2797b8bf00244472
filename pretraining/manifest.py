"""Stage manifest and atomic file helpers (ARCHITECTURE.md: write to a temp path, then rename)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


def config_hash(payload: dict[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def code_version() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def read_manifest(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / MANIFEST
    if not path.exists():
        return None
    return json.loads(path.read_text())


def write_manifest(out_dir: Path, **fields: Any) -> dict[str, Any]:
    """Update the manifest with ``fields`` (status, wall time, ...), atomically."""
    manifest = read_manifest(out_dir) or {"stage": "pretraining", "code_version": code_version()}
    manifest.update(fields)
    manifest["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json_atomic(out_dir / MANIFEST, manifest)
    return manifest


def publish_dir(tmp_dir: Path, out_dir: Path) -> None:
    """Move every entry of ``tmp_dir`` into ``out_dir`` by rename, replacing older ones."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for entry in tmp_dir.iterdir():
        target = out_dir / entry.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(entry, target)
    tmp_dir.rmdir()
