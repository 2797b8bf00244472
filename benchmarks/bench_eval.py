"""Closed-loop evaluation of several checkpoints: one shared worker pool vs a pool per policy.

    MUJOCO_GL=egl python -m benchmarks.bench_eval --run runs/smoke --episodes 2 --horizon 50

Evaluates every adapted checkpoint of a finished run (``<run>/adaptation/.../config.json``)
twice into temporary folders: once with a fresh :class:`EvalPool` per checkpoint (how the
evaluation stage worked before, and what ``evaluate`` does without ``pool=``), once with one
pool for all of them (the evaluation stage now). Prints episodes/s of each and their ratio.
The two must give the same successes and lengths; the script checks that.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def _checkpoints(run: Path) -> list[tuple[str, Path]]:
    found = sorted(p.parent for p in (run / "adaptation").rglob("config.json"))
    found = [p for p in found if "checkpoints" not in p.parts]
    if not found:
        raise SystemExit(f"no adapted checkpoints under {run}/adaptation: run its recipe first")
    return [(p.relative_to(run / "adaptation").parts[0], p) for p in found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/smoke"))
    parser.add_argument("--suite", default="libero_spatial")
    parser.add_argument("--tasks", default="0")
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--horizon", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from evaluation.closed_loop import EvalPool, evaluate

    ckpts = _checkpoints(args.run)
    tasks = [int(t) for t in args.tasks.split(",")]
    kw = dict(suite=args.suite, tasks=tasks, episodes_per_task=args.episodes, seeds=[0],
              horizon=args.horizon, source="bench")  # fmt: skip
    episodes = len(ckpts) * len(tasks) * args.episodes
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        per_policy = [
            evaluate(
                str(c),
                arch=a,
                size=i,
                out_dir=Path(tmp) / "per_policy",
                num_workers=args.workers,
                **kw,
            )  # fmt: skip
            for i, (a, c) in enumerate(ckpts)
        ]
        t_per = time.perf_counter() - t0
        t0 = time.perf_counter()
        with EvalPool(args.workers) as pool:
            shared = [
                evaluate(str(c), arch=a, size=i, out_dir=Path(tmp) / "shared", pool=pool, **kw)
                for i, (a, c) in enumerate(ckpts)
            ]
        t_shared = time.perf_counter() - t0
    cols = ["successes", "mean_length"]
    same = all(a[cols].equals(b[cols]) for a, b in zip(per_policy, shared, strict=True))
    print(f"{len(ckpts)} checkpoints x {len(tasks)} task(s) x {args.episodes} episodes, "
          f"horizon {args.horizon}, {args.workers} workers")  # fmt: skip
    print(f"pool per policy : {episodes / t_per:6.3f} episodes/s ({t_per:.1f} s)")
    print(f"one shared pool : {episodes / t_shared:6.3f} episodes/s ({t_shared:.1f} s)")
    print(f"ratio shared / per policy: {t_per / t_shared:.2f}x; same results: {same}")


if __name__ == "__main__":
    main()
