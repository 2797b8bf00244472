"""Recipes: YAML validated into typed models. An unknown key or a bad value fails at load with
its path in the recipe, the problem, and the allowed keys or values."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from evaluation.perturbations import RobustnessConfig
from generation.envs.suites import SUITES


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class DemosConfig(Strict):
    """Scripted multi-strategy demonstrations (the stand-in for human teleoperation)."""

    suites: list[
        Literal["libero_spatial", "libero_object", "libero_goal", "libero_10", "libero_90"]
    ] = Field(
        default=["libero_spatial"],
        min_length=1,
        description="held-out suites that adaptation trains on",
    )
    tasks: list[int | str] | str = Field(
        default="all", description="'all', '0-3', '0,2' or a list (per suite)"
    )
    episodes_per_task: int = Field(default=12, gt=0)
    image_size: int = Field(default=128, ge=16, le=512)
    wrist_image: bool = False
    use_videos: bool = False
    render_mode: Literal["fast", "faithful"] = "fast"
    num_workers: int = Field(default=2, ge=1, le=64)
    keep_failures: bool = False

    @field_validator("tasks")
    @classmethod
    def _tasks_exist(cls, v, info):
        from generation.envs.suites import parse_tasks

        for suite in info.data.get("suites") or []:
            parse_tasks(suite, v)  # raises ValueError listing valid tasks
        return v


class PretrainStageConfig(Strict):
    """VLA pretraining on the generated datasets: every arch x source x size, one budget."""

    archs: list[str] = ["openvla"]
    preset: str = "tiny"
    sources: list[Literal["dlr", "o2o", "o2o_kl", "mi"]] = ["dlr", "o2o"]
    sizes: list[str] = Field(
        default=["full"], description="dataset folders under datasets/<source>/, e.g. n6, full"
    )
    steps: int = Field(default=200, ge=1)
    batch_size: int = Field(default=8, ge=1)
    lr: float = Field(default=3e-4, gt=0)
    warmup_steps: int = Field(default=20, ge=0)
    grad_accum: int = Field(default=1, ge=1)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    image_size: int | None = None
    num_workers: int = Field(default=0, ge=0)
    save_every: int = Field(default=500, ge=1)
    policy_overrides: dict[str, Any] = {}

    @field_validator("archs")
    @classmethod
    def _known_archs(cls, v):
        from pretraining.factory import canonical_arch

        return [canonical_arch(a) for a in v]  # raises listing the valid architectures

    @field_validator("sizes")
    @classmethod
    def _size_names(cls, v):
        for name in v:
            if name != "full" and not (name.startswith("n") and name[1:].isdigit()):
                raise ValueError(
                    f"size {name!r} must be 'full' or 'n<episodes>' (a datasets/<source>/ folder)"
                )
        return v


class EvalStageConfig(Strict):
    """Closed-loop evaluation of every adapted policy on its held-out suite."""

    tasks: list[int | str] | str | None = Field(
        default=None, description="None: the tasks adapted on (demos.tasks)"
    )
    episodes_per_task: int = Field(default=10, ge=1, le=50)
    seeds: list[int] = [0]
    num_workers: int = Field(default=2, ge=1)
    horizon: int | None = Field(default=None, ge=1, description="None: the suite's standard budget")
    video_episodes: int = Field(default=0, ge=0)
    offline_episodes_per_task: int = Field(
        default=0,
        ge=0,
        description="held-out scripted demos per task on which every adapted policy's action "
        "error is measured (evaluation/offline.parquet); 0: none",
    )
    robustness: list[RobustnessConfig] = Field(
        default=[],
        description="LIBERO-PRO perturbation families per adapted suite, evaluated like the "
        "nominal suite (evaluation/robustness.parquet; `dlr info --perturbations`)",
    )


class Recipe(Strict):
    """One benchmark run: ``dlr run <recipe.yaml>`` executes its stages in order."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    run_dir: str | None = Field(default=None, description="default: runs/<name>")
    seed: int = 0
    stages: list[
        Literal["demos", "generation", "pretraining", "adaptation", "evaluation", "report"]
    ] = ["demos"]
    demos: DemosConfig = DemosConfig()
    # Later stages' sections are validated by their own packages' models (see _STAGE_MODELS).
    generation: dict[str, Any] | None = None
    pretraining: dict[str, Any] | None = None
    adaptation: dict[str, Any] | None = None
    evaluation: dict[str, Any] | None = None

    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir or f"runs/{self.name}")


class RecipeError(ValueError):
    pass


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the model that owns the location ``loc[:-1]``."""
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        ann = getattr(field, "annotation", None)
        # a list of models (``evaluation.robustness``) leads into its model
        models = [
            a for a in (ann, *get_args(ann)) if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if not models:
            return []
        model = models[0]
    return list(model.model_fields)


def format_validation_error(err: ValidationError, source: str, model: type[BaseModel]) -> str:
    lines = [f"invalid recipe {source}:"]
    for e in err.errors():
        loc = tuple(e["loc"])
        path = ".".join(str(p) for p in loc) or "<root>"
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, loc)
            lines.append(f"  {path}: unknown key; allowed keys here: {', '.join(allowed)}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"  {path}: {msg} (got {e.get('input')!r})")
    return "\n".join(lines)


def load_recipe(path: str | Path, overrides: dict | None = None) -> Recipe:
    path = Path(path)
    if not path.is_file():
        bundled = Path(__file__).parent / "recipes"
        names = sorted(p.name for p in bundled.glob("*.yaml"))
        raise RecipeError(
            f"recipe {path} not found; bundled recipes in {bundled}: {', '.join(names)}"
        )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise RecipeError(f"recipe {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise RecipeError(f"recipe {path} must be a mapping of keys, got {type(data).__name__}")
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return validate_recipe(data, str(path))


def validate_recipe(data: dict, source: str = "<recipe>") -> Recipe:
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as e:
        raise RecipeError(format_validation_error(e, source, Recipe)) from None
    for section, model in stage_models().items():
        raw = getattr(recipe, section)
        if raw is None and section in recipe.stages:
            raw = {}
        if raw is not None:
            try:
                model.model_validate(raw)
            except ValidationError as e:
                err = format_validation_error(e, source, model)
                raise RecipeError(err.replace("\n  ", f"\n  {section}.")) from None
    missing = [
        s
        for s in recipe.stages
        if s in ("generation", "pretraining", "adaptation", "evaluation")
        and s not in stage_models()
    ]
    if missing:
        raise RecipeError(
            f"recipe {source} asks for stage(s) {missing}, which this version does not implement"
        )
    return recipe


def stage_models() -> dict[str, type[BaseModel]]:
    """Config models of the stages that exist, by recipe section."""
    from adaptation.adapt import AdaptConfig

    models: dict[str, type[BaseModel]] = {
        "pretraining": PretrainStageConfig,
        "adaptation": AdaptConfig,
        "evaluation": EvalStageConfig,
    }
    try:
        from generation.dlr.pipeline import GenerationConfig

        models["generation"] = GenerationConfig
    except ImportError:
        pass
    return models


def section(recipe: Recipe, name: str) -> BaseModel:
    return stage_models()[name].model_validate(getattr(recipe, name) or {})


__all__ = ["Recipe", "DemosConfig", "RecipeError", "load_recipe", "validate_recipe", "SUITES"]
