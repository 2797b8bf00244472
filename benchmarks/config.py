"""Recipes: YAML validated into typed models. An unknown key or a bad value fails at load with
its path in the recipe, the problem, and the allowed keys or values."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from adaptation.adapt import AdaptConfig
from evaluation.perturbations import RobustnessConfig
from generation.dlr.pipeline import PIPELINE_SET, GenerationConfig
from generation.envs.suites import SUITES, parse_tasks
from generation.executor import ClusterConfig


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
    seed: int = Field(default=0, description="default: the recipe's seed")

    @field_validator("tasks")
    @classmethod
    def _tasks_exist(cls, v, info):
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
    batch_size: int = Field(
        default=8, ge=1, description="global: split over the processes of a launcher (dlr train)"
    )
    lr: float = Field(default=3e-4, gt=0)
    warmup_steps: int = Field(default=20, ge=0)
    grad_accum: int = Field(default=1, ge=1)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    image_size: int | None = None
    num_workers: int = Field(default=0, ge=0)
    save_every: int = Field(default=500, ge=1)
    policy_overrides: dict[str, Any] = {}
    wandb: dict[str, Any] | None = Field(
        default=None, description="optional Weights & Biases logging, e.g. {project: dlr-bench}"
    )
    seed: int = Field(default=0, description="default: the recipe's seed")

    @field_validator("archs")
    @classmethod
    def _known_archs(cls, v):
        from pretraining.factory import canonical_arch

        return [canonical_arch(a) for a in v]  # raises listing the valid architectures

    @model_validator(mode="after")
    def _policy_configs_build(self):
        from pretraining.factory import make_config

        for arch in self.archs:  # unknown preset or policy_overrides key fails here, not later
            make_config(arch, self.preset, device="cpu", **self.policy_overrides)
        return self

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


STAGES = ("demos", "generation", "pretraining", "adaptation", "evaluation", "report")
# the sections each stage reads: they get their defaults when the recipe leaves them out
NEEDS: dict[str, tuple[str, ...]] = {
    "demos": ("demos",),
    "generation": ("generation",),
    "pretraining": ("pretraining",),
    "adaptation": ("pretraining", "adaptation"),
    "evaluation": ("pretraining", "adaptation", "evaluation"),
    "report": (),
}
SEEDED = ("demos", "generation", "pretraining", "adaptation")


class Recipe(Strict):
    """One benchmark run: ``dlr run <recipe.yaml>`` executes its stages in order. Every
    section's ``seed`` is the recipe's ``seed`` unless the section sets its own."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    run_dir: str | None = Field(default=None, description="default: runs/<name>")
    seed: int = 0
    stages: list[
        Literal["demos", "generation", "pretraining", "adaptation", "evaluation", "report"]
    ] = ["demos"]
    demos: DemosConfig = DemosConfig()
    generation: GenerationConfig | None = None
    pretraining: PretrainStageConfig | None = None
    adaptation: AdaptConfig | None = None
    evaluation: EvalStageConfig | None = None
    cluster: ClusterConfig = Field(
        default=ClusterConfig(),
        description="where demos, generation and evaluation jobs run: {backend: local} or "
        "{backend: ray, address: auto}; no result depends on it",
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_sections_and_seeds(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        stages = data.get("stages", ["demos"])
        needed = {s for stage in stages if isinstance(stage, str) for s in NEEDS.get(stage, ())}
        for name in needed | {"demos"}:
            if data.get(name) is None:
                data[name] = {}
        for name in SEEDED:
            if isinstance(data.get(name), dict) and "seed" not in data[name]:
                data[name] = {**data[name], "seed": data.get("seed", 0)}
        return data

    @model_validator(mode="after")
    def _evaluation_tasks_exist(self):
        if self.evaluation is not None and self.evaluation.tasks is not None:
            for suite in (self.adaptation or AdaptConfig()).suites:
                try:
                    parse_tasks(suite, self.evaluation.tasks)
                except ValueError as e:
                    raise ValueError(f"evaluation.tasks: {e}") from None
        return self

    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir or f"runs/{self.name}")

    def resolved(self) -> dict:
        """Every value that runs, as a recipe that loads back to the same config."""
        return self.model_dump(mode="json")


class RecipeError(ValueError):
    pass


def _config_class(annotation: Any) -> type | None:
    """The pydantic model or dataclass in ``annotation`` (``X | None`` unwrapped)."""
    for cand in (annotation, *typing.get_args(annotation)):
        if isinstance(cand, type) and (
            issubclass(cand, BaseModel) or dataclasses.is_dataclass(cand)
        ):
            return cand
    return None


def _allowed_keys(model: type, loc: tuple) -> list[str]:
    """The keys a recipe may write at the location ``loc[:-1]`` (models and dataclasses)."""
    parent = None
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        hints = typing.get_type_hints(model) if dataclasses.is_dataclass(model) else None
        ann = (
            hints.get(part) if hints else getattr(model.model_fields.get(part), "annotation", None)
        )
        nxt = _config_class(ann)
        if nxt is None:
            return []
        parent, model = (model, part), nxt
    if dataclasses.is_dataclass(model):
        keys = [f.name for f in dataclasses.fields(model)]
    else:
        keys = list(model.model_fields)
    if parent and parent[0] is GenerationConfig:  # computed fields are no recipe keys
        keys = [k for k in keys if k not in PIPELINE_SET.get(parent[1], {})]
    return keys


def format_validation_error(err: ValidationError, source: str, model: type[BaseModel]) -> str:
    lines = [f"invalid recipe {source}:"]
    for e in err.errors():
        loc = tuple(e["loc"])
        path = ".".join(str(p) for p in loc)
        if e["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            allowed = _allowed_keys(model, loc)
            lines.append(f"  {path}: unknown key; allowed keys here: {', '.join(allowed)}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            got = "" if isinstance(e.get("input"), dict) or not path else f" (got {e['input']!r})"
            lines.append(f"  {path + ': ' if path else ''}{msg}{got}")
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
            if node.get(p) is None:
                node[p] = {}
            node = node[p]
            if not isinstance(node, dict):
                raise RecipeError(f"--set {dotted}: {p} is a value, not a section of keys")
        node[leaf] = value
    return validate_recipe(data, str(path))


def validate_recipe(data: dict, source: str = "<recipe>") -> Recipe:
    """The typed recipe, validated once (every section, suite, task, arch) with defaults filled."""
    try:
        return Recipe.model_validate(data)
    except ValidationError as e:
        raise RecipeError(format_validation_error(e, source, Recipe)) from None


__all__ = ["Recipe", "DemosConfig", "RecipeError", "load_recipe", "validate_recipe", "SUITES"]
