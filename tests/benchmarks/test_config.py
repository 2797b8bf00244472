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


@pytest.mark.parametrize("path", [p for p in RECIPES if p.stem != "smoke"], ids=lambda p: p.name)
def test_shipped_recipes_give_ppo_at_least_30_updates_per_run(path):
    recipe = load_recipe(path)
    if "generation" not in recipe.stages:
        pytest.skip("no generation stage")
    cfg = recipe.generation
    for source in cfg.sources:
        assert cfg.source_ppo(source).num_iterations >= 30, (path.name, source)
    assert cfg.budget_warnings() == []


def test_per_source_ppo_settings():
    from generation.dlr.pipeline import GenerationConfig

    cfg = GenerationConfig.model_validate(
        {
            "env_steps_per_pattern": 100,
            "ppo": {"kl_coef": 0.3, "num_steps": 50},
            "o2o_kl": {"ppo": {"actor_lr": 1e-5}},
            "sources": ["dlr", "o2o", "o2o_kl"],
        }  # fmt: skip
    )
    dlr, o2o, o2o_kl = (cfg.source_ppo(s) for s in ("dlr", "o2o", "o2o_kl"))
    assert dlr.kl_coef == o2o_kl.kl_coef == 0.3 and o2o.kl_coef == 0.0  # O2O: ordinary PPO
    assert o2o_kl.actor_lr == 1e-5 and dlr.actor_lr == o2o.actor_lr == cfg.ppo.actor_lr
    assert dlr.total_env_steps == 100 and o2o.total_env_steps == o2o_kl.total_env_steps == 300
    assert dlr.num_iterations == 1
    warnings = cfg.budget_warnings()
    assert len(warnings) == 3 and "dlr gets 1 PPO update(s) per pattern (< 10)" in warnings[0]


@pytest.mark.parametrize(
    "ppo, expected",
    [
        ({"kl_coeff": 0.1}, "unknown PPO key 'kl_coeff'; allowed: actor_lr"),
        ({"total_env_steps": 5}, "ppo.total_env_steps is set by the pipeline from generation.env_"),
        ({"kl_coef": "lots"}, "kl_coef"),
    ],
)
def test_per_source_ppo_keys_are_checked(ppo, expected):
    with pytest.raises(RecipeError) as e:
        validate_recipe(_minimal(stages=["generation"], generation={"o2o": {"ppo": ppo}}), "r.yaml")
    assert expected in str(e.value) and "generation.o2o.ppo" in str(e.value)


@pytest.mark.parametrize(
    "section, expected",
    [
        (
            {"ppo": {"kl_coeff": 0.1}},
            "generation.ppo.kl_coeff: unknown key; allowed keys here: num_steps, gamma",
        ),
        ({"vae": {"epoch": 3}}, "generation.vae.epoch: unknown key; allowed keys here: window"),
        ({"mi": {"betta": 1}}, "generation.mi.betta: unknown key; allowed keys here: beta"),
        ({"ppo": {"total_env_steps": 5}}, "total_env_steps is set by the pipeline from generation.env_steps_per_pattern"),
        ({"ppo": {"num_envs": 4}}, "num_envs is set by the pipeline from generation.num_envs"),
        ({"ppo": {"seed": 1}}, "seed is set by the pipeline from generation.seed"),
        ({"vae": {"num_patterns": 4}}, "num_patterns is set by the pipeline from generation.num_patterns"),
        ({"vae": {"seed": 4}}, "generation.vae: seed is set by the pipeline from generation.seed"),
        ({"bc": {"seed": 4}}, "generation.bc: seed is set by the pipeline from generation.seed"),
        ({"tasks": [99]}, "generation.tasks: task index 99 out of range for libero_object"),
        ({"suite": "libero_100"}, "generation.suite: unknown suite 'libero_100'; valid suites"),
    ],
)  # fmt: skip
def test_generation_keys_are_honoured_or_rejected_at_load(section, expected):
    with pytest.raises(RecipeError) as e:
        validate_recipe(_minimal(stages=["generation"], generation=section), "r.yaml")
    assert expected in str(e.value)


def test_allowed_keys_leave_out_what_the_pipeline_sets():
    with pytest.raises(RecipeError) as e:
        validate_recipe(_minimal(generation={"ppo": {"x": 1}}), "r.yaml")
    allowed = str(e.value).split("allowed keys here: ")[1].split(", ")
    assert "kl_coef" in allowed and not {"total_env_steps", "num_envs", "seed"} & set(allowed)


@pytest.mark.parametrize(
    "data, expected",
    [
        (
            _minimal(stages=["evaluation"], evaluation={"tasks": [99]}),
            "evaluation.tasks: task index 99 out of range for libero_spatial",
        ),
        (_minimal(stages=["pretraining"], pretraining={"preset": "huge"}), "Unknown preset 'huge'"),
        (
            _minimal(stages=["pretraining"], pretraining={"policy_overrides": {"hiden": 3}}),
            "Unknown config field(s) ['hiden']",
        ),
    ],
)
def test_later_stages_are_checked_at_load(data, expected):
    with pytest.raises(RecipeError) as e:
        validate_recipe(data, "r.yaml")
    assert expected in str(e.value)


def test_every_section_seed_derives_from_the_recipe_seed_unless_set():
    r = validate_recipe(
        _minimal(seed=7, stages=["demos", "generation", "evaluation"], adaptation={"seed": 1})
    )
    assert r.demos.seed == r.generation.seed == r.pretraining.seed == 7
    assert r.adaptation.seed == 1  # set explicitly: kept
    assert r.generation.source_ppo("dlr").seed == 7


def test_sections_are_typed_with_defaults_filled():
    from adaptation.adapt import AdaptConfig
    from generation.dlr.pipeline import GenerationConfig

    r = validate_recipe(_minimal(stages=["generation", "adaptation"]))
    assert isinstance(r.generation, GenerationConfig) and isinstance(r.adaptation, AdaptConfig)
    assert r.pretraining is not None  # adaptation reads the pretraining section
    assert r.evaluation is None


def test_resolved_recipe_round_trips_to_the_same_config_hashes():
    from generation.manifest import config_hash

    r = validate_recipe(
        _minimal(seed=3, stages=["demos", "generation", "evaluation"],
                 generation={"ppo": {"kl_coef": 0.2}, "o2o": {"ppo": {"actor_lr": 1e-5}}})
    )  # fmt: skip
    again = validate_recipe(yaml.safe_load(yaml.safe_dump(r.resolved())))
    assert again == r
    for s in ("dlr", "o2o"):
        assert config_hash(again.generation.source_ppo(s)) == config_hash(
            r.generation.source_ppo(s)
        )
    assert (
        again.generation.ppo.kl_coef == 0.2
        and "total_env_steps" not in r.resolved()["generation"]["ppo"]
    )


def test_pretraining_wandb_is_a_recipe_key():
    recipe = validate_recipe(_minimal(pretraining={"wandb": {"project": "dlr-bench"}}), "r.yaml")
    assert recipe.pretraining.wandb == {"project": "dlr-bench"}


def _cpu_sections(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_robustness_recipe_reuses_cpu_checkpoints_and_plans_its_families():
    """robustness.yaml runs in cpu.yaml's folder on its checkpoints: every section it shares
    must be cpu.yaml's, or the evaluation would look for checkpoints cpu.yaml never made."""
    from benchmarks.runner import adaptation_runs, robustness_plan

    recipes = Path(__file__).parents[2] / "benchmarks" / "recipes"
    robust, cpu = _cpu_sections(recipes / "robustness.yaml"), _cpu_sections(recipes / "cpu.yaml")
    assert robust["run_dir"] == "runs/cpu" and robust["stages"] == ["evaluation", "report"]
    assert robust["demos"] == cpu["demos"] and robust["adaptation"] == cpu["adaptation"]
    assert {k: v for k, v in robust["pretraining"].items() if k != "sizes"} == {
        k: v for k, v in cpu["pretraining"].items() if k != "sizes"
    }
    assert set(robust["pretraining"]["sizes"]) <= set(cpu["pretraining"]["sizes"])
    assert {k: v for k, v in robust["evaluation"].items() if k != "robustness"} == cpu["evaluation"]

    recipe = load_recipe(recipes / "robustness.yaml")
    plan = robustness_plan(recipe)
    assert [p.key for p in plan["libero_spatial"]] == [
        "libero_spatial_swap", "libero_spatial_object", "libero_spatial_lan",
        "libero_spatial_with_mug",
    ]  # fmt: skip
    runs = adaptation_runs(recipe, Path("runs/cpu"))
    assert len(runs) == 8  # 2 archs x (none + 3 sources at full size)
    assert {str(r["out"].parent.parent) for r in runs if r["source"] == "dlr"} == {
        "runs/cpu/adaptation/openvla/dlr",
        "runs/cpu/adaptation/pi0/dlr",
    }
    from benchmarks.plan import plan as planned_work

    lines = planned_work(recipe, ["evaluation"])
    # 8 checkpoints x 2 tasks x 3 episodes nominal, and that again under each of 4 families
    assert "48 closed-loop episodes in all (+ 192 under 4 perturbation families)" in lines[0]
    paper = robustness_plan(load_recipe(recipes / "paper.yaml"))
    assert sorted(paper) == ["libero_10", "libero_goal", "libero_object", "libero_spatial"]


@pytest.mark.parametrize(
    "robustness, evaluation, expected",
    [
        ([{"suite": "libero_spatial", "perturbations": ["object_ood"]}], {},
         "evaluation.robustness.0.perturbations: 'object_ood' cannot run here"),
        ([{"suite": "libero_spatial", "perturbations": ["swap"], "families": 1}], {},
         "evaluation.robustness.0.families: unknown key; allowed keys here: suite, perturbations"),
        ([{"suite": "libero_90", "perturbations": ["swap"]}], {},
         "'swap' is not a perturbation of libero_90"),
        ([{"suite": "libero_object", "perturbations": ["swap"]}], {},
         "evaluation.robustness.0.suite: libero_object is not adapted to"),
        ([{"suite": "libero_spatial", "perturbations": ["with_milk"]}], {"episodes_per_task": 20},
         "libero_spatial_with_milk has 10 init states per task, fewer than "
         "evaluation.episodes_per_task=20"),
    ],
)  # fmt: skip
def test_bad_robustness_sections_fail_before_any_work(robustness, evaluation, expected, tmp_path):
    from benchmarks.runner import robustness_plan

    data = {"name": "t", "run_dir": str(tmp_path), "stages": ["evaluation"],
            "adaptation": {"suites": ["libero_spatial"]},
            "evaluation": {"robustness": robustness, **evaluation}}  # fmt: skip
    with pytest.raises(RecipeError) as err:
        robustness_plan(validate_recipe(data, "r.yaml"))
    assert expected in str(err.value)
    assert not any(tmp_path.iterdir())
