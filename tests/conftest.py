import os
import tempfile

import pytest

# Keep caches and logs out of the user's home: datasets, lerobot and HF hub write there.
_SESSION_HOME = tempfile.mkdtemp(prefix="dlr-tests-home-")
os.environ["HF_HOME"] = os.path.join(_SESSION_HOME, "hf")
os.environ["HF_DATASETS_CACHE"] = os.path.join(_SESSION_HOME, "hf", "datasets")
os.environ["HF_LEROBOT_HOME"] = os.path.join(_SESSION_HOME, "lerobot")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture(scope="session")
def object_env():
    """One state-only LIBERO-Object env shared by the tests that only step physics."""
    from generation.envs.libero_env import LiberoEnv

    env = LiberoEnv(("libero_object", 0))
    yield env
    env.close()
