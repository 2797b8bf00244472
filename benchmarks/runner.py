"""Run a recipe's stages in order. Each stage reads the previous stage's artifact from disk,
writes its own with a manifest, and is skipped when complete for the same config."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from benchmarks.config import Recipe, load_recipe, section
from generation.manifest import is_complete, stage, write_json_atomic

log = logging.getLogger(__name__)


def run_demos(recipe: Recipe, run_dir: Path, force: bool = False) -> Path:
    from generation.data.schema import DatasetSpec
    from generation.demos import collect_demos
    from generation.envs.suites import parse_tasks

    cfg = recipe.demos
    out = run_dir / "demos" / cfg.suite
    stage_cfg = {"demos": cfg.model_dump(mode="json"), "seed": recipe.seed}
    if not force and is_complete(out, stage_cfg):
        log.info("demos: complete for this config, skipped (%s)", out)
        return out
    tasks = parse_tasks(cfg.suite, cfg.tasks)
    spec = DatasetSpec(
        image_size=cfg.image_size, wrist_image=cfg.wrist_image, use_videos=cfg.use_videos
    )
    summary = collect_demos(
        tasks, cfg.episodes_per_task, out, spec=spec, num_workers=cfg.num_workers, seed=recipe.seed,
        render_mode=cfg.render_mode, keep_failures=cfg.keep_failures,
    )  # fmt: skip
    # the dataset was renamed into place: the manifest goes in afterwards
    with stage(out, stage_cfg, "demos", seed=recipe.seed) as results:
        results.update(summary)
    return out


def run_generation(recipe: Recipe, run_dir: Path, force: bool = False) -> Path:
    from generation.dlr.pipeline import run_generation as _run

    cfg = section(recipe, "generation")
    _run(cfg, run_dir)
    return run_dir / "datasets"


STAGES: dict[str, Callable[[Recipe, Path, bool], Path]] = {
    "demos": run_demos,
    "generation": run_generation,
}


def run_recipe(
    path: str | Path,
    overrides: dict | None = None,
    only: list[str] | None = None,
    force: bool = False,
) -> dict[str, Path]:
    recipe = load_recipe(path, overrides)
    run_dir = recipe.resolved_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = recipe.model_dump(mode="json")
    tmp = run_dir / ".recipe.yaml.tmp"
    tmp.write_text(yaml.safe_dump(resolved, sort_keys=False))
    tmp.replace(run_dir / "recipe.yaml")
    outputs: dict[str, Path] = {}
    timings = {}
    for name in recipe.stages:
        if only and name not in only:
            continue
        if name not in STAGES:
            raise ValueError(f"stage {name!r} is not implemented yet; implemented: {list(STAGES)}")
        log.info("== stage %s ==", name)
        t0 = time.time()
        outputs[name] = STAGES[name](recipe, run_dir, force)
        timings[name] = round(time.time() - t0, 1)
        log.info("stage %s done in %.1fs -> %s", name, timings[name], outputs[name])
    write_json_atomic(run_dir / "timings.json", timings)
    return outputs
