"""The executor seam: a tiny generation run as Ray tasks on a two-node cluster writes the same
run folder as the local executor (every step's config hash and result, the datasets episode
for episode), and the cluster section of a recipe is validated and changes no step's hash."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from generation.manifest import read_manifest

TINY = {
    "suite": "libero_object",
    "tasks": [0],
    "num_patterns": 2,
    "demos_per_strategy": 1,
    "horizon": 20,
    "num_envs": 1,  # one CPU per job: the test cluster's nodes have one each
    "env_steps_per_pattern": 20,
    "vae": {"epochs": 2, "restarts": 1},
    "bc": {"epochs": 2, "hidden": 16},
    "eval_episodes": 0,
    "episodes_per_task": 2,
    "subset_sizes": [1],
    "max_attempts_per_kept": 1,
    "keep_failures": True,
    "image_size": 16,
    "sources": ["dlr", "o2o"],
    "ppo": {"num_steps": 10, "update_epochs": 1, "num_minibatches": 1, "critic_hidden": 8},
}


CLOCK = ("wall_s",)  # PPO's wall-clock seconds: the one result that differs by machine load


def _steps(run) -> dict[str, dict]:
    """Every step folder's manifest (config hash and result, wall clocks left out) by its path."""
    out = {}
    for m in sorted(run.rglob("manifest.json")):
        manifest = read_manifest(m.parent)
        result = {k: v for k, v in manifest.get("result", {}).items() if k not in CLOCK}
        out[str(m.parent.relative_to(run))] = {
            "config_hash": manifest["config_hash"],
            "result": result,
        }
    return out


def _assert_same_frames(root_a, root_b) -> None:
    """Two LeRobot datasets hold the same frames: images, states, actions, indices."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    a, b = (
        LeRobotDataset(f"t/{i}", root=r, video_backend="pyav").hf_dataset.with_format("numpy")[:]
        for i, r in enumerate((root_a, root_b))
    )
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.slow
def test_generation_on_ray_equals_local(tmp_path, monkeypatch, ray_cluster):
    for var, sub in (("HOME", "home"), ("HF_DATASETS_CACHE", "hf"), ("HF_LEROBOT_HOME", "lerobot")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    from generation.data.reader import load_episodes
    from generation.dlr.pipeline import GenerationConfig, run_generation
    from generation.executor import LocalExecutor, RayExecutor

    cfg = GenerationConfig.model_validate(TINY)
    summaries = {
        "local": run_generation(cfg, tmp_path / "local", executor=LocalExecutor()),
        "ray": run_generation(cfg, tmp_path / "ray", executor=RayExecutor()),
    }
    local, ray = _steps(tmp_path / "local"), _steps(tmp_path / "ray")
    assert "generation/libero_object/0/reinforce/dlr/pattern_1" in local
    assert list(local) == list(ray)
    for step in local:
        assert local[step]["config_hash"] == ray[step]["config_hash"], step
        if step != "datasets":  # its result names its own folder
            assert local[step]["result"] == ray[step]["result"], step
    for summary in summaries.values():
        for steps in summary["tasks"].values():
            for result in steps.values():
                result.pop("wall_s", None)
    assert summaries["local"]["tasks"] == summaries["ray"]["tasks"]
    # the datasets, episode for episode and frame for frame
    for source in ("dlr", "o2o"):
        for size in ("full", "n1"):
            roots = {b: tmp_path / b / "datasets" / source / size for b in ("local", "ray")}
            eps = {b: load_episodes(r) for b, r in roots.items()}
            assert len(eps["local"]) == len(eps["ray"]) > 0
            for a, b in zip(eps["local"], eps["ray"], strict=True):
                assert (a.init_state_index, a.pattern_id, a.success) == (
                    b.init_state_index,
                    b.pattern_id,
                    b.success,
                )
                np.testing.assert_array_equal(a.actions, b.actions)
                np.testing.assert_array_equal(a.states, b.states)
            _assert_same_frames(roots["local"], roots["ray"])
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "local/datasets/diversity.parquet"),
        pd.read_parquet(tmp_path / "ray/datasets/diversity.parquet"),
    )
    # rerun on Ray: every step is complete, nothing is redone
    again = run_generation(cfg, tmp_path / "ray", executor=RayExecutor())
    assert _steps(tmp_path / "ray") == ray
    assert again["wall_time_s"]["total"] < summaries["ray"]["wall_time_s"]["total"]


def test_cluster_section_is_validated_and_changes_no_hash(tmp_path):
    from benchmarks.config import RecipeError, validate_recipe

    base = {"name": "t", "stages": ["demos", "generation"], "generation": {"tasks": [0]}}
    local = validate_recipe(base)
    ray = validate_recipe(base | {"cluster": {"backend": "ray", "address": "auto"}})
    assert local.cluster.backend == "local" and ray.cluster.address == "auto"
    assert ray.resolved()["cluster"]["backend"] == "ray"  # written to the run folder
    assert local.generation == ray.generation and local.demos == ray.demos
    from benchmarks.plan import plan

    assert plan(ray, ["demos"])[0].startswith("cluster     Ray (auto)")
    assert not plan(local, ["demos"])[0].startswith("cluster")
    with pytest.raises(RecipeError, match="cluster.backend"):
        validate_recipe(base | {"cluster": {"backend": "slurm"}})
    with pytest.raises(RecipeError, match="cluster.adress: unknown key; allowed keys here"):
        validate_recipe(base | {"cluster": {"adress": "auto"}})


def test_local_executor_runs_in_order_and_resolves_handles():
    from generation.executor import LocalExecutor

    ex, calls = LocalExecutor(), []

    def job(name, *after):
        calls.append((name, after))
        return name

    a = ex.submit(job, "a")
    b = ex.submit(job, "b", a, num_cpus=2)
    assert ex.get([a, b]) == ["a", "b"]
    assert calls == [("a", ()), ("b", ("a",))]  # run at submission, handles passed as values


@pytest.mark.slow
def test_dlr_run_demos_with_ray_address_equals_local(tmp_path, monkeypatch, ray_cluster):
    """``dlr run --ray-address``: the demos stage collects on the cluster (one job per task
    and strategy) and writes the same dataset as a local run."""
    import yaml

    from benchmarks.cli import main
    from generation.data.reader import load_episodes

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    demos = {"suites": ["libero_object"], "tasks": [0], "episodes_per_task": 3, "image_size": 16,
             "num_workers": 1}  # fmt: skip
    runs = {}
    for backend in ("local", "ray"):
        recipe = tmp_path / f"{backend}.yaml"
        run_dir = tmp_path / backend
        recipe.write_text(
            yaml.safe_dump({"name": backend, "run_dir": str(run_dir), "demos": demos})
        )
        argv = ["run", str(recipe)] + (["--ray-address", ray_cluster.address] * (backend == "ray"))
        assert main(argv) == 0
        runs[backend] = load_episodes(run_dir / "demos" / "libero_object")
        assert (
            yaml.safe_load((run_dir / "recipe.yaml").read_text())["cluster"]["backend"] == backend
        )
    assert len(runs["local"]) == len(runs["ray"]) == 3
    assert sorted(e.strategy_id for e in runs["ray"]) == [0, 1, 2]
    for a, b in zip(runs["local"], runs["ray"], strict=True):
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.states, b.states)
    _assert_same_frames(
        tmp_path / "local/demos/libero_object", tmp_path / "ray/demos/libero_object"
    )
