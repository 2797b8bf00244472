"""Run a recipe's stages in order. Each stage reads the previous stage's artifact from disk,
writes its own with a manifest, and is skipped when complete for the same config."""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import yaml

from benchmarks.config import Recipe, load_recipe
from generation.envs import SCENE_VERSION
from generation.integrity import check_safetensors
from generation.manifest import (
    atomic_write,
    config_hash,
    is_complete,
    keyed,
    prepare_step,
    run_step,
    stage,
    steps_run,
    update_manifest,
    upstream_hashes,
)
from pretraining.distributed import end_processes, init_processes, on_main

log = logging.getLogger(__name__)


def _demo_spec(cfg):
    """The dataset schema of the recipe's demonstrations (adaptation and held-out ones)."""
    from generation.data.schema import DatasetSpec

    return DatasetSpec(
        image_size=cfg.image_size, wrist_image=cfg.wrist_image, use_videos=cfg.use_videos
    )


def run_demos(recipe: Recipe, run_dir: Path, force: bool = False) -> Path:
    from generation.demos import collect_demos
    from generation.envs.suites import parse_tasks
    from generation.executor import make_executor

    cfg = recipe.demos
    spec = _demo_spec(cfg)
    for suite in cfg.suites:
        out = run_dir / "demos" / suite
        stage_cfg = {
            "demos": cfg.model_dump(mode="json", exclude={"suites"}),
            "suite": suite,
            "scene": SCENE_VERSION,
        }
        if not force and is_complete(out, stage_cfg):
            log.info("demos: %s complete for this config, skipped (%s)", suite, out)
            continue
        t0 = time.time()
        summary = collect_demos(
            parse_tasks(suite, cfg.tasks), cfg.episodes_per_task, out, spec=spec, num_workers=cfg.num_workers,
            seed=cfg.seed, render_mode=cfg.render_mode, keep_failures=cfg.keep_failures,
            executor=make_executor(recipe.cluster),
        )  # fmt: skip
        # the dataset was renamed into place: the manifest goes in afterwards
        with stage(out, stage_cfg, "demos", seed=cfg.seed, started_at=t0) as results:
            results.update(summary)
    return run_dir / "demos"


def run_generation(recipe: Recipe, run_dir: Path, force: bool = False) -> Path:
    from generation.dlr.pipeline import run_generation as _run
    from generation.executor import make_executor

    _run(recipe.generation, run_dir, force=force, executor=make_executor(recipe.cluster))
    # ARCHITECTURE.md: diversity metrics live with the evaluation results
    table = run_dir / "datasets" / "diversity.parquet"
    if table.is_file():
        (run_dir / "evaluation").mkdir(parents=True, exist_ok=True)
        with atomic_write(run_dir / "evaluation" / "diversity.parquet") as tmp:
            shutil.copyfile(table, tmp)
    return run_dir / "datasets"


# stages that train on every process of a launcher; the others run on the main process only
TRAINING_STAGES = ("pretraining", "adaptation")
STAGES: dict[str, Callable[[Recipe, Path, bool], Path]] = {
    "demos": run_demos,
    "generation": run_generation,
}


def check_only(only: list[str] | None, recipe: Recipe | None = None) -> None:
    """``--only`` names stages that exist (and that the recipe runs)."""
    from benchmarks.config import STAGES as ALL

    for name in only or []:
        if name not in ALL:
            raise ValueError(f"--only {name}: unknown stage; valid stages: {', '.join(ALL)}")
        if recipe is not None and name not in recipe.stages:
            raise ValueError(
                f"--only {name}: not a stage of recipe {recipe.name} "
                f"(its stages: {', '.join(recipe.stages)})"
            )


def run_recipe(
    path: str | Path,
    overrides: dict | None = None,
    only: list[str] | None = None,
    force: bool = False,
    dry_run: bool = False,
    wait: bool = False,
) -> dict[str, Path]:
    """Run the recipe's stages (``only``: a subset) in one locked run folder. ``dry_run``
    prints the resolved recipe and the planned work and runs nothing."""
    from benchmarks.plan import plan
    from benchmarks.rundir import run_lock, write_resolved
    from generation.executor import executor_session

    check_only(only)
    recipe = load_recipe(path, overrides)
    check_only(only, recipe)
    stages = [s for s in recipe.stages if not only or s in only]
    if "generation" in stages:
        for warning in recipe.generation.budget_warnings():
            log.warning(warning)
    if "evaluation" in recipe.stages:
        robustness_plan(recipe)  # a bad perturbation fails now, not after hours of training
    run_dir = recipe.resolved_run_dir()
    if recipe.cluster.backend != "local":  # a worker's working folder is not ours
        run_dir = run_dir.resolve()
    if dry_run:
        print(yaml.safe_dump(recipe.resolved(), sort_keys=False))
        print(f"planned work in {run_dir} (nothing was run):")
        print("\n".join(plan(recipe, stages)))
        return {}
    init_processes()  # under a launcher: training stages on every process, the rest on main
    outputs: dict[str, Path] = {}
    with contextlib.ExitStack() as held:
        held.callback(end_processes)
        on_main(lambda: held.enter_context(run_lock(run_dir, wait)))
        # the Ray connection (if any) serves the non-training stages, which run on main only
        on_main(lambda: held.enter_context(executor_session(recipe.cluster)))
        on_main(lambda: write_resolved(run_dir, recipe.resolved()))
        for name in stages:
            log.info("== stage %s ==", name)
            t0, before = time.time(), steps_run()
            if name in TRAINING_STAGES:
                outputs[name] = STAGES[name](recipe, run_dir, force)
            else:
                outputs[name] = on_main(lambda name=name: STAGES[name](recipe, run_dir, force))
            on_main(lambda name=name, t0=t0, before=before: _time_stage(run_dir, name, t0, before))
            log.info("stage %s done in %.1fs -> %s", name, time.time() - t0, outputs[name])
    return outputs


def run_training(
    path: str | Path,
    stage: str,
    overrides: dict | None = None,
    force: bool = False,
    wait: bool = False,
) -> Path:
    """One training stage of a recipe on every process of a launcher (``dlr train``): the
    main process holds the run folder and writes the resolved recipe, logs and checkpoints."""
    from benchmarks.rundir import run_lock, write_resolved

    if stage not in TRAINING_STAGES:
        raise ValueError(
            f"--stage {stage}: not a training stage; valid: {', '.join(TRAINING_STAGES)}"
        )
    init_processes()
    recipe = load_recipe(path, overrides)
    if stage not in recipe.stages:
        raise ValueError(
            f"--stage {stage}: not a stage of recipe {recipe.name} (its stages: "
            f"{', '.join(recipe.stages)}); add it to the recipe's stages"
        )
    run_dir = recipe.resolved_run_dir()
    with contextlib.ExitStack() as held:
        held.callback(end_processes)
        on_main(lambda: held.enter_context(run_lock(run_dir, wait)))
        on_main(lambda: write_resolved(run_dir, recipe.resolved()))
        t0, before = time.time(), steps_run()
        out = STAGES[stage](recipe, run_dir, force)
        on_main(lambda: _time_stage(run_dir, stage, t0, before))
    return out


def _time_stage(run_dir: Path, name: str, t0: float, steps_before: int) -> None:
    """Record a stage's wall time; a skipped stage keeps its last time (main process only:
    only it counts the steps it started)."""
    from benchmarks.rundir import record_timing

    if steps_run() > steps_before or name == "report":
        record_timing(run_dir, name, time.time() - t0)


def _dataset_size(root: Path) -> int:
    import json

    return int(json.loads((root / "meta" / "info.json").read_text())["total_episodes"])


def pretraining_runs(recipe: Recipe, run_dir: Path) -> list[dict]:
    """Every (arch, source, size) pretraining run of the recipe, with its dataset and output."""
    cfg = recipe.pretraining
    runs = []
    for arch in cfg.archs:
        for source in cfg.sources:
            for size in cfg.sizes:
                data = run_dir / "datasets" / source / size
                runs.append({"arch": arch, "source": source, "size_name": size, "dataset": data,
                             "out": run_dir / "pretraining" / arch / source / size})  # fmt: skip
    return runs


def run_pretraining(recipe: Recipe, run_dir: Path, force: bool = False) -> Path:
    from pretraining.train import PretrainConfig, train

    cfg = recipe.pretraining
    runs = pretraining_runs(recipe, run_dir)
    for r in runs:  # every dataset before any training: a missing one fails at once
        if not (r["dataset"] / "meta" / "info.json").is_file():
            full = r["dataset"].parent / "full"
            why = (
                f"generation matched only {_dataset_size(full)} episodes over all tasks in {full}, "
                f"too few for subset {r['size_name']!r}: raise generation budgets "
                "(env_steps_per_pattern, max_attempts_per_kept, demos_per_strategy)"
                if (full / "meta" / "info.json").is_file()
                else "run the generation stage first"
            )
            raise FileNotFoundError(
                f"pretraining needs the dataset {r['dataset']}: {why} "
                f"(or remove {r['source']!r}/{r['size_name']!r} from pretraining.sources/sizes)"
            )
    for r in runs:
        run = PretrainConfig(
            arch=r["arch"], preset=cfg.preset, dataset_roots=[str(r["dataset"])], output_dir=str(r["out"]),
            steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, warmup_steps=cfg.warmup_steps,
            grad_accum=cfg.grad_accum, mixed_precision=cfg.mixed_precision, seed=cfg.seed,
            image_size=cfg.image_size or recipe.demos.image_size, save_every=cfg.save_every,
            num_workers=cfg.num_workers, policy_overrides=dict(cfg.policy_overrides),
            wandb=cfg.wandb, upstream=upstream_hashes({"datasets": run_dir / "datasets"}),
        )  # fmt: skip
        if on_main(lambda: prepare_step(r["out"], run.hash(), force)):  # noqa: B023 - runs now
            continue
        log.info("pretraining %s on %s/%s", r["arch"], r["source"], r["size_name"])
        train(run)
    return run_dir / "pretraining"


def adaptation_runs(recipe: Recipe, run_dir: Path) -> list[dict]:
    """Every adaptation run: each pretrained checkpoint and a non-pretrained one (source none)."""
    pre = recipe.pretraining
    ada = recipe.adaptation
    runs = []
    for arch in pre.archs:
        bases = [("none", "n0", None, 0)]
        for r in pretraining_runs(recipe, run_dir):
            if r["arch"] == arch:
                size = _dataset_size(r["dataset"]) if (r["dataset"] / "meta").is_dir() else -1
                bases.append((r["source"], r["size_name"], r["out"], size))
        for source, size_name, ckpt, size in bases:
            for suite in ada.suites:
                runs.append({"arch": arch, "source": source, "size_name": size_name, "size": size,
                             "pretrained": ckpt, "suite": suite,
                             "out": run_dir / "adaptation" / arch / source / size_name / suite})  # fmt: skip
    return runs


def run_adaptation(recipe: Recipe, run_dir: Path, force: bool = False) -> Path:
    from adaptation.adapt import adapt_config
    from pretraining.train import train

    pre = recipe.pretraining
    ada = recipe.adaptation
    for r in adaptation_runs(recipe, run_dir):
        demos = run_dir / "demos" / r["suite"]
        if not (demos / "meta" / "info.json").is_file():
            raise FileNotFoundError(
                f"adaptation to {r['suite']} needs demonstrations at {demos}: add it to demos.suites "
                f"{r['suite']} and run the demos stage"
            )
        run = adapt_config(ada, arch=r["arch"], preset=pre.preset, dataset_roots=[demos], out_dir=r["out"],
                           pretrained=r["pretrained"], image_size=pre.image_size or recipe.demos.image_size,
                           policy_overrides=dict(pre.policy_overrides))  # fmt: skip
        upstream = {"demos": demos} | ({"base": r["pretrained"]} if r["pretrained"] else {})
        run = replace(run, upstream=upstream_hashes(upstream))
        if on_main(lambda: prepare_step(r["out"], run.hash(), force)):  # noqa: B023 - runs now
            continue
        log.info(
            "adapting %s/%s/%s to %s (%s)",
            r["arch"],
            r["source"],
            r["size_name"],
            r["suite"],
            ada.method,
        )
        train(run)
    return run_dir / "adaptation"


def run_evaluation(recipe: Recipe, run_dir: Path, force: bool = False) -> Path:
    from evaluation.closed_loop import evaluate

    cfg = recipe.evaluation
    out = run_dir / "evaluation"
    runs = adaptation_runs(recipe, run_dir)
    for r in runs:
        if not (r["out"] / "config.json").is_file():
            raise FileNotFoundError(
                f"no adapted checkpoint at {r['out']}: run the adaptation stage first"
            )
        for weights in r["out"].glob(
            "*.safetensors"
        ):  # a truncated file fails here, not per episode
            check_safetensors(weights)
    plan = robustness_plan(recipe)
    heldout = _heldout_demos(recipe, cfg, run_dir, force) if cfg.offline_episodes_per_task else {}
    with _eval_pool(recipe) as pool:  # one set of workers for every policy
        # on Ray, each policy's episodes are split in groups for every CPU of the cluster
        splits = pool.num_workers if recipe.cluster.backend == "ray" else 1
        for r in runs:
            # cached episodes belong to one adapted checkpoint: drop them when it was rebuilt
            cache = out / "episodes" / r["arch"] / r["source"] / f"n{r['size']}" / r["suite"]
            _episode_cache(cache, r, force)
            if r["suite"] in heldout:
                _offline(r, heldout[r["suite"]], cache, out)
            evaluate(
                str(r["out"]), arch=r["arch"], source=r["source"], size=r["size"],
                suite=r["suite"], tasks=_eval_tasks(recipe, cfg, r["suite"]),
                episodes_per_task=cfg.episodes_per_task, seeds=cfg.seeds, out_dir=out,
                horizon=cfg.horizon, video_episodes=cfg.video_episodes, pool=pool,
                num_workers=splits,
            )  # fmt: skip
            if plan.get(r["suite"]):
                _evaluate_robustness(recipe, r, plan[r["suite"]], out, pool, force)
    return out / "results.parquet"


def _eval_pool(recipe: Recipe):
    """This machine's worker processes, or Ray tasks on the recipe's cluster."""
    from evaluation.closed_loop import EvalPool

    cluster = recipe.cluster
    if cluster.backend == "ray":
        from evaluation.ray_pool import RayEvalPool

        return RayEvalPool(num_gpus=cluster.eval_gpus, max_retries=cluster.max_retries)
    return EvalPool(recipe.evaluation.num_workers)


def _episode_cache(cache: Path, r: dict, force: bool) -> None:
    """Cached episodes belong to one adapted checkpoint: dropped when it was rebuilt."""
    key = keyed("closed-loop episodes", {"checkpoint": r["out"]})
    prepare_step(cache, config_hash(key), force, clear_unrecorded=True)
    update_manifest(cache, stage="evaluation cache", config=key, config_hash=config_hash(key),
                    status="running")  # fmt: skip


def robustness_plan(recipe: Recipe) -> dict[str, list]:
    """``evaluation.robustness`` resolved into perturbation families per adapted suite, and
    checked against the rest of the recipe: the suite is adapted to, the evaluated tasks have
    runnable perturbed copies with enough init states for ``evaluation.episodes_per_task``."""
    from benchmarks.config import RecipeError
    from evaluation.perturbations import resolve

    cfg = recipe.evaluation
    if cfg is None or not cfg.robustness:
        return {}
    adapted = recipe.adaptation.suites
    plan: dict[str, list] = {}
    for i, spec in enumerate(cfg.robustness):
        where = f"evaluation.robustness.{i}"
        if spec.suite not in adapted:
            raise RecipeError(
                f"{where}.suite: {spec.suite} is not adapted to (adaptation.suites: {adapted}); "
                "evaluate one of those or add it there"
            )
        tasks = _eval_tasks(recipe, cfg, spec.suite)
        for family in resolve(spec.suite, spec.perturbations):
            try:
                fewest = min(family.n_init_states[j] for j in family.perturbed_indices(tasks))
            except ValueError as err:
                raise RecipeError(f"{where}.perturbations: {err}") from None
            if cfg.episodes_per_task > fewest:
                raise RecipeError(
                    f"{where}.perturbations: {family.key} has {fewest} init states per task, fewer "
                    f"than evaluation.episodes_per_task={cfg.episodes_per_task}: lower it or drop "
                    f"{family.name!r}"
                )
            if family.name not in [f.name for f in plan.get(spec.suite, [])]:
                plan.setdefault(spec.suite, []).append(family)
    return plan


def _evaluate_robustness(
    recipe: Recipe, r: dict, families: list, out: Path, pool, force: bool
) -> None:
    """One adapted policy on its suite's perturbation families, as on the nominal suite."""
    from evaluation.robustness import evaluate_perturbed, write_descriptions

    cfg = recipe.evaluation
    write_descriptions(out, families)
    for family in families:
        cache = out / "episodes" / r["arch"] / r["source"] / f"n{r['size']}" / family.key
        _episode_cache(cache, r, force)
        evaluate_perturbed(
            str(r["out"]), family, arch=r["arch"], source=r["source"], size=r["size"],
            tasks=_eval_tasks(recipe, cfg, r["suite"]), episodes_per_task=cfg.episodes_per_task,
            seeds=cfg.seeds, out_dir=out, horizon=cfg.horizon, video_episodes=cfg.video_episodes,
            pool=pool,
        )  # fmt: skip


def _heldout_demos(recipe: Recipe, cfg, run_dir: Path, force: bool) -> dict[str, Path]:
    """Scripted demos of the adapted suites' tasks that adaptation never saw (the episodes
    after ``demos.episodes_per_task``: other init states and noise), rendered like the
    adaptation demos; one dataset per suite under ``evaluation/heldout/``."""
    from generation.demos import collect_demos
    from generation.envs.suites import list_tasks
    from generation.executor import make_executor

    demos = recipe.demos
    spec = _demo_spec(demos)
    roots = {}
    for suite in recipe.adaptation.suites:
        out = run_dir / "evaluation" / "heldout" / suite
        indices = _eval_tasks(recipe, cfg, suite)
        tasks = [t for t in list_tasks(suite) if indices is None or t.index in indices]
        stage_cfg = {"episodes_per_task": cfg.offline_episodes_per_task, "suite": suite,
                     "tasks": [t.index for t in tasks], "first_episode": demos.episodes_per_task,
                     "image_size": demos.image_size, "wrist_image": demos.wrist_image,
                     "seed": demos.seed, "scene": SCENE_VERSION}  # fmt: skip
        if force or not is_complete(out, stage_cfg):
            summary = collect_demos(
                tasks, cfg.offline_episodes_per_task, out, spec=spec, num_workers=cfg.num_workers,
                seed=demos.seed, render_mode=demos.render_mode,
                first_episode=demos.episodes_per_task, executor=make_executor(recipe.cluster),
            )  # fmt: skip
            with stage(out, stage_cfg, "heldout demos", seed=demos.seed) as results:
                results.update(summary)
        roots[suite] = out
    return roots


def _offline(r: dict, heldout: Path, cache: Path, out: Path) -> None:
    """Held-out action error of one adapted checkpoint, once per (checkpoint, held-out set)."""
    from evaluation.offline import evaluate_offline

    def offline_step(d: Path) -> dict:
        evaluate_offline(
            r["out"], arch=r["arch"], source=r["source"], size=r["size"], suite=r["suite"],
            dataset_root=heldout, out_dir=out,
        )  # fmt: skip
        return {}

    upstream = {"checkpoint": r["out"], "heldout": heldout}
    run_step(cache / "offline", "held-out action error", offline_step, upstream=upstream)


def _eval_tasks(recipe: Recipe, cfg, suite: str):
    tasks = cfg.tasks
    if tasks is None:  # the tasks adapted on
        tasks = recipe.demos.tasks if suite in recipe.demos.suites else "all"
    if tasks == "all":
        return None
    from generation.envs.suites import parse_tasks

    return [t.index for t in parse_tasks(suite, tasks)]


def run_report(recipe: Recipe, run_dir: Path, force: bool = False) -> Path:
    from evaluation.report import build_report

    outputs = build_report(run_dir)
    log.info("report: %d files in %s", len(outputs), run_dir / "report")
    return run_dir / "report" / "report.md"


STAGES.update(
    pretraining=run_pretraining,
    adaptation=run_adaptation,
    evaluation=run_evaluation,
    report=run_report,
)
