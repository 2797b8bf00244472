"""Generation of a few tiny tasks on Ray against the local executor, and Ray's scaling with CPUs.

    MUJOCO_GL=egl python -m benchmarks.bench_ray --tasks 0,1 --rounds 2

Every round runs, in a fresh run folder and a fresh Python process each (nothing skipped,
nothing warm from an earlier run: a ``dlr run`` starts cold too), in rotating order: ``local``
(the local executor, ``num_envs`` env workers per job), ``ray2`` (a one-machine Ray with 2
CPUs, the same jobs), and for scaling ``ray1/1env`` and ``ray2/1env`` (Ray with 1 and 2 CPUs,
jobs of one env worker, so 1 or 2 jobs at a time). The clock starts once the process has
imported the pipeline and, for Ray, started Ray (as a cluster is started before ``dlr run``
joins it); the Ray workers start and import inside the timed part, as every run's do.
Prints each median wall time, local/ray2 (goal: >= 0.9, Ray's overhead small) and
ray1/ray2 (throughput gained by the second worker), each with its range over the rounds.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TINY = {  # DLR + O2O, two PPO iterations per run at num_envs 2: ~1.5 min per run here
    "suite": "libero_object",
    "num_patterns": 2,
    "demos_per_strategy": 1,
    "horizon": 20,
    "env_steps_per_pattern": 40,
    "vae": {"epochs": 3, "restarts": 1},
    "bc": {"epochs": 3, "hidden": 32},
    "eval_episodes": 0,
    "episodes_per_task": 2,
    "subset_sizes": [1],
    "max_attempts_per_kept": 1,
    "keep_failures": True,
    "image_size": 32,
    "sources": ["dlr", "o2o"],
    "ppo": {"num_steps": 10, "update_epochs": 1, "num_minibatches": 1, "critic_hidden": 16},
}
CONFIGS = {  # name: (Ray CPUs or None for the local executor, num_envs per job)
    "local": (None, 2),
    "ray2": (2, 2),
    "ray1/1env": (1, 1),
    "ray2/1env": (2, 1),
}


def run_once(tasks: list[int], name: str) -> float:
    """Wall seconds of one generation of configuration ``name`` in a fresh process."""
    argv = [sys.executable, "-m", "benchmarks.bench_ray", "--child", name,
            "--tasks", ",".join(map(str, tasks))]  # fmt: skip
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def _child(tasks: list[int], ray_cpus: int | None, num_envs: int) -> float:
    """Wall seconds of one generation in a fresh run folder (in this process)."""
    from generation.dlr.pipeline import GenerationConfig, run_generation
    from generation.executor import ClusterConfig, executor_session

    cfg = GenerationConfig.model_validate(TINY | {"tasks": tasks, "num_envs": num_envs})
    cluster = ClusterConfig(backend="ray" if ray_cpus else "local", num_cpus=ray_cpus)
    with tempfile.TemporaryDirectory() as tmp, executor_session(cluster) as executor:
        t0 = time.perf_counter()
        run_generation(cfg, Path(tmp) / "run", executor=executor)
        return time.perf_counter() - t0


def _ratio(num: list[float], den: list[float]) -> str:
    r = np.array(num) / np.array(den)  # per round: the rounds' drift cancels
    return f"{np.median(r):.2f} (range {r.min():.2f}-{r.max():.2f})"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--tasks", default="0,1", help="libero_object task indices")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"a subset of {', '.join(CONFIGS)}")
    p.add_argument("--child", choices=list(CONFIGS), help=argparse.SUPPRESS)  # one timed run
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if "RAY_TMPDIR" not in os.environ:  # not /tmp/ray; the children share the parent's
        os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="bench-ray-")
    tasks = [int(t) for t in args.tasks.split(",")]
    if args.child:
        print(_child(tasks, *CONFIGS[args.child]), flush=True)
        return
    names = args.configs.split(",")
    unknown = set(names) - set(CONFIGS)
    if unknown:
        raise SystemExit(f"--configs: unknown {sorted(unknown)}; choose from {', '.join(CONFIGS)}")
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            times[name].append(run_once(tasks, name))
            print(f"round {r}: {name:10s} {times[name][-1]:7.1f} s", flush=True)
    print(f"\ngeneration of libero_object tasks {tasks}, {args.rounds} rounds (median wall s):")
    for name, t in times.items():
        print(f"  {name:10s} {np.median(t):7.1f}")
    if {"local", "ray2"} <= set(names):
        print(f"local/ray2 (>= 0.9: small overhead):  {_ratio(times['local'], times['ray2'])}")
    if {"ray1/1env", "ray2/1env"} <= set(names):
        speed_up = _ratio(times["ray1/1env"], times["ray2/1env"])
        print(f"ray1/ray2 at 1 env per job (speed-up): {speed_up}")


if __name__ == "__main__":
    main()
