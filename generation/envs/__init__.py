"""LIBERO environments: suite and task lookup, the gym-style env, worker-process vector envs."""

import os

# MuJoCo picks its GL backend when first imported (lean.py imports it at module level)
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

# Bumped whenever the images rendered for one stored episode change (scene or renderer), so the
# stages that render (demos, datasets, held-out demos) rerun instead of keeping old images.
# 1: LIBERO's scene; 2: fixtures pinned; 3: fast mode's simplified meshes, each env its own GL
# context (before, the older of two envs in one process rendered the newer one's meshes).
SCENE_VERSION = 3
