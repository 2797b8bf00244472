import os
import tempfile
from pathlib import Path
from types import SimpleNamespace

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


# the tests' tiny recipe: every stage, LIBERO-Object task 0 (K=2, DLR, O2O, O2O+KL, MI, two PPO
# iterations each), one env worker per job (the test Ray cluster's nodes have one CPU each)
TINY_RECIPE = {
    "name": "tiny",
    "stages": ["demos", "generation", "pretraining", "adaptation", "evaluation", "report"],
    "demos": {"suites": ["libero_spatial"], "tasks": [0], "episodes_per_task": 3, "image_size": 32,
              "num_workers": 1},
    "generation": {
        "suite": "libero_object", "tasks": [0], "num_patterns": 2, "demos_per_strategy": 1,
        "horizon": 20, "num_envs": 1, "env_steps_per_pattern": 20,
        "vae": {"epochs": 3, "restarts": 1}, "bc": {"epochs": 3, "hidden": 32},
        "ppo": {"num_steps": 10, "update_epochs": 1, "num_minibatches": 1, "critic_hidden": 16,
                "snapshot_every": 2},
        "eval_episodes": 0, "episodes_per_task": 2, "subset_sizes": [1], "max_attempts_per_kept": 1,
        "keep_failures": True, "image_size": 32, "sources": ["dlr", "o2o", "o2o_kl", "mi"],
    },
    "pretraining": {"archs": ["openvla"], "sources": ["dlr", "o2o"], "sizes": ["n1", "full"],
                    "steps": 2, "batch_size": 2, "warmup_steps": 1},
    "adaptation": {"suites": ["libero_spatial"], "steps": 2, "batch_size": 2, "warmup_steps": 1},
    "evaluation": {"episodes_per_task": 1, "num_workers": 1, "horizon": 5,
                   "offline_episodes_per_task": 1,
                   "robustness": [{"suite": "libero_spatial", "perturbations": ["swap"]}]},
}  # fmt: skip


def write_recipe(path: Path, run_dir: Path) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({**TINY_RECIPE, "run_dir": str(run_dir)}))
    return path


def files_but_manifests(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` but manifests (they hold wall times), by relative path."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    """``dlr run`` of the tiny recipe, every stage, run once for the session's slow tests: the
    CLI test checks it, the generation tests read and resume from it, the Ray test compares
    against it. Tests must not change it. (recipe dict, recipe file, run folder, HOME,
    ``write_recipe(path, run_dir)`` for the same recipe into another run folder, and
    ``files(root)``: a folder's files but manifests, to compare runs byte for byte)"""
    from benchmarks.cli import main

    tmp = tmp_path_factory.mktemp("tiny")
    home = tmp / "home"
    recipe = write_recipe(tmp / "tiny.yaml", tmp / "run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))  # robosuite and datasets write under ~
        assert main(["run", str(recipe)]) == 0
    return SimpleNamespace(
        recipe=TINY_RECIPE, path=recipe, run=tmp / "run", home=home, write_recipe=write_recipe,
        files=files_but_manifests,
    )  # fmt: skip


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
