#!/usr/bin/env bash
# README command 1: install everything, then run the main job on the small default recipe.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export MUJOCO_GL="${MUJOCO_GL:-egl}" PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-egl}"
exec .venv/bin/dlr run benchmarks/recipes/smoke.yaml "$@"
