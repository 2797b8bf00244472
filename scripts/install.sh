#!/usr/bin/env bash
# Idempotent install: apt libraries for headless rendering, a Python 3.12 venv in .venv, the package.
# Safe to rerun: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS="libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6"
missing=""
for p in $APT_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
if [ -n "$missing" ]; then
  echo "[install] apt:$missing"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi
# headless Chromium for the HTML report's browser test (Debian's package; elsewhere the test skips)
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  echo "[install] apt: chromium (the HTML report's browser test)"
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium; } \
    || echo "[install] warning: no chromium package here; tests/evaluation/test_html_report.py will skip its browser check"
fi

PY="${DLR_PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in "$(pyenv root 2>/dev/null)/versions/3.12.1/bin/python" python3.12 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 12))' 2>/dev/null; then
      PY="$cand"; break
    fi
  done
fi
[ -n "$PY" ] || { echo "[install] error: Python >= 3.12 not found; set DLR_PYTHON=/path/to/python3.12" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "[install] creating .venv with $PY"
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi

stamp=".venv/.dlr-installed"
want="$(cat pyproject.toml plugins/lerobot_policy_dlr/pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[install] pip install -e .[dev,ray] (first time: ~3 minutes, ~7.9 GB)"
  .venv/bin/python -m pip install -q -e ".[dev,ray]"
  # lerobot's CLIs (lerobot-train, lerobot-eval) discover our policies through this plugin
  .venv/bin/python -m pip install -q -e plugins/lerobot_policy_dlr --no-deps
  echo "$want" > "$stamp"
fi
# robosuite warns at every import until it has a private macro file: give it its defaults
.venv/bin/python - <<'PY'
import importlib.util, pathlib, shutil
spec = importlib.util.find_spec("robosuite")
if spec and spec.origin:
    root = pathlib.Path(spec.origin).parent
    if not (root / "macros_private.py").exists():
        shutil.copy(root / "macros.py", root / "macros_private.py")
PY
echo "[install] ok: $(.venv/bin/python --version), package dlr-bench in .venv"
