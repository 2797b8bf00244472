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


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """A two-node Ray cluster on this machine (a head and one worker node process, one CPU
    each, small object stores), connected for the session's Ray tests and torn down after."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    from ray.cluster_utils import Cluster

    root = tmp_path_factory.mktemp("ray")
    (root / "ray").mkdir()
    saved = {k: os.environ.get(k) for k in ("RAY_TMPDIR", "RAY_USAGE_STATS_ENABLED")}
    os.environ.update(RAY_TMPDIR=str(root), RAY_USAGE_STATS_ENABLED="0")  # nothing in /tmp/ray
    node = {"num_cpus": 1, "object_store_memory": 100 * 1024**2}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={**node, "include_dashboard": False, "temp_dir": str(root / "ray")},
    )
    try:
        cluster.add_node(**node)
        ray.init(address=cluster.address, log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
