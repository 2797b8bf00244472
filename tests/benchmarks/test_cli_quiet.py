"""``dlr`` without ``-v`` drops LIBERO's ``[info]`` lines, also those its worker processes print."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHILD = "print('[info] child noise'); print('child keep')"
PARENT = f"""
import subprocess, sys
from benchmarks.cli import StdoutFilter
quiet = StdoutFilter((b"[info] ",))
print("[info] parent noise")
print("parent keep", flush=True)
subprocess.run([sys.executable, "-c", {CHILD!r}], check=True)
quiet.close()
print("[info] after close")
"""


def test_stdout_filter_drops_prefixed_lines_of_children_too() -> None:
    root = Path(__file__).parents[2]
    out = subprocess.run([sys.executable, "-c", PARENT], capture_output=True, text=True,
                         cwd=root, check=True, timeout=60)  # fmt: skip
    assert out.stdout.splitlines() == ["parent keep", "child keep", "[info] after close"]
