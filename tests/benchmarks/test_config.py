from pathlib import Path

import pytest
import yaml

from benchmarks.config import RecipeError, load_recipe, validate_recipe

RECIPES = sorted((Path(__file__).parents[2] / "benchmarks" / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_bundled_recipes_validate(path):
    recipe = load_recipe(path)
    assert recipe.name == path.stem


def _minimal(**kw):
    return {"name": "t", **kw}


@pytest.mark.parametrize(
    "data, expected",
    [
        (_minimal(demoz={}), "demoz: unknown key; allowed keys here: name, description"),
        (
            _minimal(demos={"episodes": 3}),
            "demos.episodes: unknown key; allowed keys here: suites, tasks, episodes_per_task",
        ),
        (
            _minimal(demos={"episodes_per_task": 0}),
            "demos.episodes_per_task: Input should be greater than 0",
        ),
        (
            _minimal(demos={"suites": ["libero_100"]}),
            "demos.suites.0: Input should be 'libero_spatial', 'libero_object'",
        ),
        (
            _minimal(demos={"tasks": [3, 42]}),
            "demos.tasks: task index 42 out of range for libero_spatial",
        ),
        (_minimal(pretraining={"archs": ["rt2"]}), "pretraining.archs: "),
        (
            _minimal(adaptation={"method": "qlora"}),
            "adaptation.method: Input should be 'full' or 'lora'",
        ),
        (_minimal(stages=["demos", "train"]), "stages.1: Input should be 'demos', 'generation'"),
        ({"demos": {}}, "name: Field required"),
    ],
)
def test_validation_errors_name_the_path_and_the_allowed(data, expected):
    with pytest.raises(RecipeError) as e:
        validate_recipe(data, "r.yaml")
    assert expected in str(e.value)


def test_missing_recipe_lists_bundled(tmp_path):
    with pytest.raises(RecipeError, match="smoke.yaml"):
        load_recipe(tmp_path / "nope.yaml")


def test_overrides_apply_by_dotted_path(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump({"name": "r", "demos": {"episodes_per_task": 3}}))
    r = load_recipe(p, {"demos.episodes_per_task": 5, "seed": 4})
    assert r.demos.episodes_per_task == 5 and r.seed == 4


def test_yaml_that_is_not_a_mapping(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(RecipeError, match="must be a mapping"):
        load_recipe(p)
