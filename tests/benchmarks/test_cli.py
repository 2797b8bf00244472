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


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["demos", "--suite", "libero_object", "--tasks", "12", "--out", "x"], "valid indices are 0..9"),
        (["demos", "--suite", "nope", "--out", "x"], "valid suites"),
        (["run", "missing.yaml"], "bundled recipes"),
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
def test_run_tiny_recipe_end_to_end_and_skip_when_complete(tmp_path, capsys):
    from generation.data.reader import read_episode_meta
    from generation.manifest import read_manifest

    recipe = {
        "name": "tiny",
        "run_dir": str(tmp_path / "run"),
        "stages": ["demos"],
        "demos": {"suites": ["libero_object"], "tasks": [0], "episodes_per_task": 3, "image_size": 32, "num_workers": 1},
    }
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(recipe))
    assert main(["run", str(p)]) == 0
    demos = tmp_path / "run" / "demos" / "libero_object"
    meta = read_episode_meta(demos)
    assert len(meta) == 3 and meta.success.all()
    assert sorted(meta.strategy_id) == [0, 1, 2]
    assert read_manifest(demos)["status"] == "complete"
    assert (tmp_path / "run" / "recipe.yaml").is_file()
    before = (demos / "meta" / "info.json").stat().st_mtime_ns
    assert main(["run", str(p)]) == 0  # complete for the same config: skipped
    assert (demos / "meta" / "info.json").stat().st_mtime_ns == before
