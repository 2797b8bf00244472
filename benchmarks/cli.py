"""``dlr``: the one command of DLR-Bench.

dlr info [--suite S]                 suites, tasks, instructions, demonstrator coverage
dlr info --perturbations             LIBERO-PRO perturbation families and what each changes
dlr demos --suite S --tasks 0,1 ...  scripted multi-strategy demonstrations -> LeRobot dataset
dlr run <recipe.yaml>                every stage of a recipe (skips complete ones, resumes others)
dlr run <recipe.yaml> --ray-address auto    the same, its jobs spread over a Ray cluster
dlr train <recipe.yaml> --stage S    one training stage, for launchers (torchrun, accelerate launch)
dlr import {hdf5,lerobot} ...        real LIBERO data into our schema
dlr push <dataset> --repo-id ID      publish a dataset to the Hugging Face Hub (--dry-run)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from pathlib import Path

log = logging.getLogger("dlr")


NOISY_LOGGERS = ("robosuite", "libero", "datasets", "urllib3", "matplotlib", "PIL", "httpx",
                 "OpenGL", "lerobot.configs.video")  # fmt: skip
NOISY_STDOUT = (b"[info] ",)  # LIBERO prints these whenever any process looks up a suite


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not verbose:
        for noisy in NOISY_LOGGERS:
            logging.getLogger(noisy).setLevel(logging.WARNING)


class StdoutFilter:
    """Drop lines that start with ``prefixes`` from file descriptor 1: print() calls inside
    libraries, in this process and in the worker processes it spawns (they inherit fd 1)."""

    def __init__(self, prefixes: tuple[bytes, ...]):
        self.prefixes = prefixes
        sys.stdout.flush()
        self.real = os.dup(1)
        read, write = os.pipe()
        os.dup2(write, 1)
        os.close(write)
        self.thread = threading.Thread(target=self._pump, args=(read,), daemon=True)
        self.thread.start()

    def _pump(self, read: int) -> None:
        with os.fdopen(read, "rb") as src, os.fdopen(os.dup(self.real), "wb", buffering=0) as dst:
            for line in src:
                if not line.startswith(self.prefixes):
                    dst.write(line)

    def close(self) -> None:
        sys.stdout.flush()
        os.dup2(self.real, 1)  # this process no longer writes into the pipe
        self.thread.join(timeout=5)  # a worker still alive keeps the pipe open: don't wait on it
        os.close(self.real)


def _quiet() -> StdoutFilter:
    """Without ``-v``: no per-call "Map:" bars of `datasets`, no LIBERO ``[info]`` lines."""
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # spawned workers inherit it
    return StdoutFilter(NOISY_STDOUT)


# ----------------------------------------------------------------------------- info
def cmd_info(args) -> int:
    from generation.demonstrators import has_demonstrator
    from generation.envs.suites import SUITES, list_tasks

    if args.perturbations:
        return _info_perturbations(args)
    suites = [args.suite] if args.suite else list(SUITES)
    rows = []
    for suite in suites:
        tasks = list_tasks(suite)
        covered = [t for t in tasks if has_demonstrator(t)]
        print(f"\n{suite}: {len(tasks)} tasks, {len(covered)} with a scripted demonstrator")
        for t in tasks:
            mark = "D" if has_demonstrator(t) else " "
            print(f"  [{mark}] {t.index:2d}  {t.language}")
            rows.append({"suite": suite, "index": t.index, "name": t.name, "language": t.language,
                         "demonstrator": has_demonstrator(t)})  # fmt: skip
    print("\n[D] = has a scripted multi-strategy demonstrator (`dlr demos` can generate its data)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
        print(f"wrote {args.json}")
    return 0


def _info_perturbations(args) -> int:
    """LIBERO-PRO's perturbation families per nominal suite, described from their BDDL files."""
    from evaluation.perturbations import perturbations
    from generation.envs.suites import SUITES

    suites = [args.suite] if args.suite else list(SUITES)
    rows = []
    for suite in suites:
        found = perturbations(suite)
        usable = [p for p in found if p.usable]
        print(f"\n{suite}: {len(usable)} perturbation families to evaluate, "
              f"{len(found) - len(usable)} registered but not runnable")  # fmt: skip
        width = max([len(p.name) for p in found], default=0)
        for p in found:
            if p.usable:
                ready = f"{sum(p.ready)}/{len(p.ready)} tasks"
                print(f"  {p.name:{width}s}  {ready:12s} {p.description}")
            rows.append({"suite": suite, "perturbation": p.name, "package_suite": p.key,
                         "usable": p.usable, "runnable_tasks": sum(p.ready),
                         "tasks": len(p.twins), "problem": p.problem,
                         "description": p.description})  # fmt: skip
        off = [p for p in found if not p.usable]
        if off:
            print("  not runnable here:")
            for p in off:
                print(f"  {p.name:{width}s}  {p.problem}")
    print(
        "\nPut families in a recipe as evaluation.robustness: [{suite: S, perturbations: [...]}];"
        " `dlr info --suite libero_spatial_swap` lists one family's tasks"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
        print(f"wrote {args.json}")
    return 0


# ----------------------------------------------------------------------------- demos
def cmd_demos(args) -> int:
    from generation.data.schema import DatasetSpec
    from generation.demos import collect_demos
    from generation.envs.suites import parse_tasks

    tasks = parse_tasks(args.suite, args.tasks)
    spec = DatasetSpec(image_size=args.image_size, wrist_image=args.wrist, use_videos=args.videos)
    summary = collect_demos(
        tasks, args.episodes_per_task, args.out, spec=spec, num_workers=args.workers, seed=args.seed,
        render_mode=args.render_mode,
    )  # fmt: skip
    for name, s in summary["per_task"].items():
        print(f"  {s['successes']}/{s['episodes']} successful  {name}")
    print(
        f"demonstrations: {summary['episodes']} episodes, {summary['frames']} frames -> {summary['dataset']}"
    )
    return 0


def cmd_demo_quality(args) -> int:
    from generation.demonstrators.evaluate import evaluate_demonstrators

    table = evaluate_demonstrators(
        args.suite, args.tasks, n_init=args.init_states, seed=args.seed, cycle=args.cycle,
        num_workers=args.workers, include_switched_off=args.include_switched_off,
    )  # fmt: skip
    with __import__("pandas").option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)
        print(f"wrote {args.out}")
    return 0


def cmd_demo_trace(args) -> int:
    from generation.demonstrators.registry import demonstrator_for
    from generation.demonstrators.trace import format_trace, frame_grid, trace_episode
    from generation.envs.libero_env import LiberoEnv
    from generation.envs.suites import get_task

    task = get_task(args.suite, int(args.task) if args.task.isdigit() else args.task)
    demo = demonstrator_for(task, include_switched_off=True)
    names = list(demo.strategy_names)
    if args.strategy in names:
        strategy = names.index(args.strategy)
    elif args.strategy.isdigit() and int(args.strategy) < len(names):
        strategy = int(args.strategy)
    else:
        raise ValueError(
            f"unknown strategy {args.strategy!r} for {task.key}: use one of {names} "
            f"or an index 0-{len(names) - 1}"
        )
    env = LiberoEnv(task)
    try:
        episode, records = trace_episode(env, demo, strategy, args.init_state, seed=args.seed)
    finally:
        env.close()
    print(f"{task.key} {task.name}: strategy {names[strategy]}, init state {args.init_state}")
    print(format_trace(episode, records))
    if args.frames:
        Path(args.frames).parent.mkdir(parents=True, exist_ok=True)
        frame_grid(episode, records, args.frames)
        print(f"wrote {args.frames}")
    return 0


# ----------------------------------------------------------------------------- run
def _parse_overrides(pairs: list[str]) -> dict:
    import yaml

    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ValueError(f"--set expects key.path=value, got {pair!r}")
        k, v = pair.split("=", 1)
        out[k] = yaml.safe_load(v)
    return out


def cmd_run(args) -> int:
    from benchmarks.runner import run_recipe
    from generation.envs.libero_env import lean_default

    lean_default()  # a bad DLR_LEAN fails here, before any work

    overrides = _parse_overrides(args.set)
    if args.ray_address:  # the recipe's cluster section, from the command line
        overrides |= {"cluster.backend": "ray", "cluster.address": args.ray_address}
    outputs = run_recipe(
        args.recipe, overrides=overrides, only=args.only, force=args.force,
        dry_run=args.dry_run, wait=args.wait,
    )  # fmt: skip
    if args.dry_run:
        return 0
    print("\noutputs:")
    for stage, path in outputs.items():
        print(f"  {stage:12s} {path}")
    return 0


def cmd_train(args) -> int:
    from benchmarks.runner import run_training

    overrides = _parse_overrides(args.set)
    if args.run_dir:
        overrides["run_dir"] = args.run_dir
    out = run_training(
        args.recipe, args.stage, overrides=overrides, force=args.force, wait=args.wait
    )
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"\n{args.stage} -> {out}")
    return 0


def cmd_report(args) -> int:
    from evaluation.report import build_report

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(
            f"run folder {run_dir} does not exist (expected runs/<recipe name>)"
        )
    outputs = build_report(run_dir)
    for name, path in sorted(outputs.items()):
        print(f"  {name:24s} {path}")
    print(f"report -> {outputs['html']} (also {outputs['report'].name} beside it)")
    return 0


# ----------------------------------------------------------------------------- import / push
def cmd_import(args) -> int:
    from generation.data.schema import DatasetSpec

    spec = DatasetSpec(image_size=args.image_size, wrist_image=args.wrist)
    if args.format == "hdf5":
        from generation.data.import_hdf5 import import_libero_hdf5

        out = import_libero_hdf5(
            [Path(p) for p in args.src],
            Path(args.out),
            spec,
            suite=args.suite,
            max_episodes=args.max_episodes,
            object_states=args.object_states,
        )
    else:
        if len(args.src) != 1:
            raise ValueError("`dlr import lerobot` takes exactly one dataset folder")
        from generation.data.import_lerobot import import_lerobot_dataset

        out = import_lerobot_dataset(
            Path(args.src[0]),
            Path(args.out),
            spec,
            max_episodes=args.max_episodes,
            suite=args.suite,
            allow_unknown_tasks=args.allow_unknown_tasks,
            flip_images=args.flip_images,
        )
    print(f"imported -> {out}")
    return 0


def cmd_push(args) -> int:
    from generation.hub import push_dataset

    result = push_dataset(
        Path(args.dataset), args.repo_id, private=args.private, dry_run=args.dry_run
    )
    print(json.dumps(result, indent=2, default=str))
    return 0


# ----------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dlr", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "-v", "--verbose", action="store_true",
        help="debug logging, library progress bars and LIBERO's [info] lines",
    )  # fmt: skip
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("info", help="list suites, tasks and demonstrator coverage")
    s.add_argument("--suite", help="one suite only")
    s.add_argument(
        "--perturbations", action="store_true",
        help="LIBERO-PRO perturbation families per suite, what each changes (from its BDDL files)",
    )  # fmt: skip
    s.add_argument("--json", help="also write the table as JSON to this path")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("demos", help="generate scripted multi-strategy demonstrations")
    s.add_argument("--suite", default="libero_object")
    s.add_argument("--tasks", default="all", help="'all', '0,1', '0-3' or task names")
    s.add_argument("--episodes-per-task", type=int, default=12)
    s.add_argument(
        "--out", required=True, help="dataset folder to write, e.g. runs/x/demos/libero_object"
    )
    s.add_argument("--image-size", type=int, default=128)
    s.add_argument("--wrist", action="store_true", help="also store the wrist camera")
    s.add_argument(
        "--videos", action="store_true", help="store images as mp4 (default: PNG frames)"
    )
    s.add_argument("--render-mode", choices=["fast", "faithful"], default="fast")
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_demos)

    s = sub.add_parser(
        "demo-quality", help="success and strategy separation of the scripted demonstrators"
    )
    s.add_argument("--suite", default="libero_object")
    s.add_argument("--tasks", default="all")
    s.add_argument(
        "--init-states", type=int, default=10, help="init states per task (x every strategy)"
    )
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--cycle", action="store_true",
        help="one strategy per init state (i mod strategies) instead of every strategy on each",
    )  # fmt: skip
    s.add_argument("--workers", type=int, default=1, help="tasks evaluated in parallel processes")
    s.add_argument(
        "--include-switched-off", action="store_true",
        help="also measure tasks switched off for measuring below the bar (to re-check them)",
    )  # fmt: skip
    s.add_argument("--out", help="also write the table as CSV")
    s.set_defaults(func=cmd_demo_quality)

    s = sub.add_parser(
        "demo-trace", help="one scripted episode waypoint by waypoint (why a demonstrator fails)"
    )
    s.add_argument("--suite", required=True)
    s.add_argument("--task", required=True, help="task index or name")
    s.add_argument("--strategy", default="0", help="strategy index or name")
    s.add_argument("--init-state", type=int, default=0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--frames", help="also save the agentview image after every waypoint (PNG)")
    s.set_defaults(func=cmd_demo_trace)

    s = sub.add_parser("run", help="run a recipe's stages")
    s.add_argument("recipe", help="path to a recipe YAML (see benchmarks/recipes/)")
    s.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. demos.episodes_per_task=6",
    )
    s.add_argument("--only", action="append", help="run only these stages (repeatable)")
    s.add_argument(
        "--force", action="store_true", help="rebuild the stages' outputs even if complete"
    )
    s.add_argument(
        "--dry-run", action="store_true",
        help="print the resolved recipe and the planned work; run nothing",
    )  # fmt: skip
    s.add_argument(
        "--wait", action="store_true", help="wait for another dlr run of this run folder to end"
    )
    s.add_argument(
        "--ray-address", metavar="ADDRESS",
        help="run demos, generation and evaluation jobs on this Ray cluster ('auto': the one "
        "this node belongs to); sets cluster.backend=ray and cluster.address",
    )  # fmt: skip
    s.set_defaults(func=cmd_run)

    s = sub.add_parser(
        "train",
        help="one training stage of a recipe on every process of a launcher",
        description="e.g. torchrun --nproc_per_node 2 -m benchmarks.cli train recipe.yaml "
        "--stage pretraining (docs/distributed.md); the recipe's batch_size is the global batch",
    )
    s.add_argument("recipe", help="path to a recipe YAML (see benchmarks/recipes/)")
    s.add_argument("--stage", required=True, choices=["pretraining", "adaptation"])
    s.add_argument("--run-dir", help="the run folder (default: the recipe's run_dir)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe value")
    s.add_argument("--force", action="store_true", help="retrain even if complete")
    s.add_argument(
        "--wait", action="store_true", help="wait for another dlr run of this run folder to end"
    )
    s.set_defaults(func=cmd_train)

    s = sub.add_parser(
        "report", help="tables and plots from a run's results (never reruns a model)"
    )
    s.add_argument("run_dir", help="runs/<recipe name>")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("import", help="import real LIBERO data (hdf5 or LeRobot) into our schema")
    s.add_argument("format", choices=["hdf5", "lerobot"])
    s.add_argument("src", nargs="+", help="hdf5 file(s) or one LeRobot dataset folder")
    s.add_argument("--out", required=True)
    s.add_argument(
        "--suite", default=None, help="suite of the tasks (default: detect from task names)"
    )
    s.add_argument("--image-size", type=int, default=128)
    s.add_argument("--wrist", action="store_true")
    s.add_argument("--max-episodes", type=int, default=None)
    s.add_argument(
        "--object-states",
        action="store_true",
        help="hdf5: recover object poses from sim states (slow)",
    )
    s.add_argument(
        "--allow-unknown-tasks",
        action="store_true",
        help="lerobot: keep episodes whose instruction matches no LIBERO task",
    )
    s.add_argument(
        "--flip-images", action="store_true", help="lerobot: source images are upside down"
    )
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("push", help="publish a dataset to the Hugging Face Hub")
    s.add_argument("dataset")
    s.add_argument("--repo-id", required=True)
    s.add_argument("--private", action="store_true")
    s.add_argument(
        "--dry-run", action="store_true", help="print what would be uploaded; upload nothing"
    )
    s.set_defaults(func=cmd_push)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    if int(os.environ.get("RANK", "0")) > 0:  # under a launcher the main process reports
        logging.getLogger().setLevel(logging.WARNING)
    quiet = None if args.verbose else _quiet()
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as e:
        if args.verbose:
            raise
        print(f"dlr {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted: finished work is kept; rerun the same command to resume", file=sys.stderr
        )
        return 130
    finally:
        if quiet is not None:
            quiet.close()


if __name__ == "__main__":
    sys.exit(main())
