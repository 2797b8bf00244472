import json

import pytest
import yaml

from benchmarks.cli import main


def test_info_lists_tasks_and_demonstrator_coverage(capsys, tmp_path):
    assert main(["info", "--suite", "libero_object", "--json", str(tmp_path / "t.json")]) == 0
    out = capsys.readouterr().out
    assert "libero_object: 10 tasks" in out
    assert "pick up the alphabet soup and place it in the basket" in out
    rows = json.loads((tmp_path / "t.json").read_text())
    assert len(rows) == 10 and all(r["demonstrator"] for r in rows)


def test_info_lists_perturbation_families_with_what_they_change(capsys, tmp_path):
    argv = ["info", "--perturbations", "--suite", "libero_object", "--json", str(tmp_path / "p")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "libero_object: 6 perturbation families to evaluate" in out
    swap = next(line for line in out.splitlines() if line.strip().startswith("swap "))
    assert "10/10 tasks" in swap and "swaps the start regions of objects" in swap
    assert "not runnable here:" in out
    rows = {r["perturbation"]: r for r in json.loads((tmp_path / "p").read_text())}
    assert rows["with_mug"]["usable"] and rows["with_mug"]["package_suite"] == (
        "libero_object_with_mug"
    )
    assert not rows["object_ood"]["usable"] and "BDDL" in rows["object_ood"]["problem"]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (
            ["demos", "--suite", "libero_object", "--tasks", "12", "--out", "x"],
            "valid indices are 0..9",
        ),
        (["demos", "--suite", "nope", "--out", "x"], "valid suites"),
        (["run", "missing.yaml"], "bundled recipes"),
        (
            ["demo-trace", "--suite", "libero_object", "--task", "0", "--strategy", "zigzag"],
            "use one of ['direct', 'high_arc', 'side_swing']",
        ),
    ],
)
def test_bad_input_is_a_clear_error_with_exit_code_2(argv, expected, capsys):
    assert main(argv) == 2
    assert expected in capsys.readouterr().err


def test_bad_recipe_key_names_the_path(tmp_path, capsys):
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump({"name": "r", "demos": {"episodes_per_tsk": 2}}))
    assert main(["run", str(p)]) == 2
    assert "demos.episodes_per_tsk: unknown key" in capsys.readouterr().err


@pytest.mark.slow
def test_run_whole_pipeline_on_a_tiny_recipe_then_skip_when_complete(tiny_pipeline, monkeypatch):
    import pandas as pd

    from generation.data.reader import read_episode_meta
    from generation.manifest import read_manifest

    run = tiny_pipeline.run  # dlr run of the tiny recipe (tests/conftest.py), every stage
    demos = run / "demos" / "libero_spatial"
    meta = read_episode_meta(demos)
    assert len(meta) == 3 and meta.success.all() and sorted(meta.strategy_id) == [0, 1, 2]
    assert read_manifest(demos)["status"] == "complete"
    assert (run / "recipe.yaml").is_file()
    for source in ("dlr", "o2o", "o2o_kl", "mi"):
        assert len(read_episode_meta(run / "datasets" / source / "full")) == 2
    for source in ("dlr", "o2o"):
        assert (
            read_manifest(run / "pretraining" / "openvla" / source / "n1")["status"] == "complete"
        )
    assert not (run / "pretraining" / "openvla" / "mi").exists()  # not in pretraining.sources
    results = pd.read_parquet(run / "evaluation" / "results.parquet")
    assert (
        set(results.source) == {"none", "dlr", "o2o"} and len(results) == 5
    )  # none + 2 sources x 2 sizes
    assert set(results["size"]) == {0, 1, 2} and (results.episodes == 1).all()
    assert (run / "report" / "report.md").is_file() and (run / "report" / "success.md").is_file()
    # held-out demos (episodes after the adaptation demos' 3) score every adapted policy offline
    heldout = read_episode_meta(run / "evaluation" / "heldout" / "libero_spatial")
    assert len(heldout) == 1 and heldout.init_state_index.tolist() == [3]
    offline = pd.read_parquet(run / "evaluation" / "offline.parquet")
    assert len(offline) == 5 and (offline.episodes == 1).all() and (offline.action_mse > 0).all()
    assert (run / "report" / "offline.md").is_file()
    # every adapted policy also ran on the swapped copy of task 0, reported against task 0
    perturbed = pd.read_parquet(run / "evaluation" / "robustness.parquet")
    assert len(perturbed) == 5 and set(perturbed["suite"]) == {"libero_spatial_swap"}
    assert set(perturbed["base_task"]) == set(results["task"])
    assert "swap" in (run / "report" / "robustness.md").read_text()
    before = (demos / "meta" / "info.json").stat().st_mtime_ns
    monkeypatch.setenv("HOME", str(tiny_pipeline.home))
    assert main(["run", str(tiny_pipeline.path)]) == 0  # complete: every stage skipped
    assert (demos / "meta" / "info.json").stat().st_mtime_ns == before
    assert len(pd.read_parquet(run / "evaluation" / "results.parquet")) == 5
    assert pd.read_parquet(run / "evaluation" / "offline.parquet").equals(offline)
    assert pd.read_parquet(run / "evaluation" / "robustness.parquet").equals(perturbed)


@pytest.mark.parametrize(
    "argv, module, function, expected",
    [
        (
            ["import", "hdf5", "a.hdf5", "--out", "o", "--suite", "libero_object", "--object-states"],
            "generation.data.import_hdf5",
            "import_libero_hdf5",
            {"suite": "libero_object", "object_states": True},
        ),
        (
            ["import", "lerobot", "src", "--out", "o", "--suite", "libero_goal",
             "--allow-unknown-tasks", "--flip-images", "--max-episodes", "3"],
            "generation.data.import_lerobot",
            "import_lerobot_dataset",
            {"suite": "libero_goal", "allow_unknown_tasks": True, "flip_images": True, "max_episodes": 3},
        ),
    ],
)  # fmt: skip
def test_import_options_reach_the_importer(argv, module, function, expected, monkeypatch, capsys):
    import importlib

    seen = {}
    monkeypatch.setattr(
        importlib.import_module(module), function, lambda *a, **kw: seen.update(kw) or "o"
    )
    assert main(argv) == 0
    assert expected.items() <= seen.items(), seen
    assert "imported -> o" in capsys.readouterr().out
