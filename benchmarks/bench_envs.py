"""Environment and dataset-writing throughput, measured in one run; prints ratios against goals.

  python -m benchmarks.bench_envs [--steps 300] [--rounds 5] [--quick] [--only rendering]

Each comparison runs in interleaved rounds on objects built once (envs, worker pools), the order
rotating every round, and reports the median of the per-round ratios with their range: on a
shared host whose speed drifts by tens of percent within minutes, the ratio of two timings taken
minutes apart measures the drift as much as the code.

1. our LiberoEnv (state-only, lean off) vs the raw LIBERO ControlEnv stepping the same actions
   (goal >= 0.97x): what the wrapper itself costs
2. lean stepping (the default for state-only envs) vs LIBERO's own step (``EnvConfig(lean=False)``),
   task 0 of each of the five suites (goal >= 2.5x), beside the physics alone (25 ``mj_step`` per
   control step, the limit); the final states of every round are checked bit-identical
3. fast rendering (agentview only, MSAA/shadows off, soft reset, visual meshes simplified below
   half a pixel) vs LIBERO's default (two cameras, MSAA, hard reset each episode), episodes of
   50 steps including resets (goal >= 3x); also fast mode with whole meshes (mesh_cell=0)
4. N worker processes vs 1 (state-only, goal >= 0.9*N; N = number of cores)
5. demo-dataset write throughput: our writer vs LeRobotDataset.create defaults (frames/s)
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])


def _actions(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.3, 0.3, (n, 7))


class Compared(NamedTuple):
    ours: float  # median rate over the rounds
    base: float
    ratio: float  # median of the per-round ratios
    lo: float  # their range
    hi: float


def interleaved(rates: dict[str, Callable[[], float]], rounds: int) -> dict[str, np.ndarray]:
    """Each rate measured once per round, the order rotating round by round (a steady drift of
    the machine's speed then favours none of them)."""
    names = list(rates)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            out[n].append(rates[n]())
    return {n: np.array(v) for n, v in out.items()}


def compare(ours: np.ndarray, base: np.ndarray) -> Compared:
    ratios = ours / base
    return Compared(
        float(np.median(ours)),
        float(np.median(base)),
        float(np.median(ratios)),
        float(ratios.min()),
        float(ratios.max()),
    )


def _steps_rate(step: Callable[[np.ndarray], object], acts: np.ndarray, per_step: int = 1):
    t0 = time.perf_counter()
    for a in acts:
        step(a)
    return per_step * len(acts) / (time.perf_counter() - t0)


def bench_wrapper(steps: int, rounds: int) -> tuple[Compared, float]:
    """(ours vs the raw env in wall-clock rounds, and the same ratio measured inside our own
    steps: the time LIBERO's step and check_success take over the time our whole step takes.
    The second needs no second env and no second timing, so the host's drift cancels out.)"""
    from libero.libero.envs.env_wrapper import ControlEnv

    from generation.envs.libero_env import EnvConfig, LiberoEnv
    from generation.envs.suites import get_task

    task = get_task("libero_object", 0)
    acts = _actions(steps)
    ours = LiberoEnv(task, EnvConfig(lean=False))
    ours.horizon = 10**9
    ours.reset(init_state_index=0)
    raw = ControlEnv(bddl_file_name=task.bddl_file, use_camera_obs=False, has_offscreen_renderer=False,
                     camera_names=[], horizon=10**7, ignore_done=True, hard_reset=False)  # fmt: skip
    init = ours.init_state(0)
    raw.reset()
    raw.set_init_state(init)

    def raw_step(a):
        raw.step(a)
        raw.check_success()

    inner = [0.0]

    def timed(fn):
        def call(*args):
            t0 = time.perf_counter()
            out = fn(*args)
            inner[0] += time.perf_counter() - t0
            return out

        return call

    def from_init(env, step):  # both sims start every round from the same state
        env.set_init_state(init)
        return _steps_rate(step, acts)

    try:
        r = interleaved(
            {
                "ours": lambda: from_init(ours.raw, ours.step),
                "raw": lambda: from_init(raw, raw_step),
            },
            rounds,
        )
        # the instance attributes shadow the methods our step calls, for this measurement only
        ours.raw.step, ours.raw.check_success = timed(ours.raw.step), timed(ours.raw.check_success)
        t0 = time.perf_counter()
        for a in acts:
            ours.step(a)
        in_steps = inner[0] / (time.perf_counter() - t0)
    finally:
        ours.close()
        raw.close()
    return compare(r["ours"], r["raw"]), in_steps


SUITES = ("libero_spatial", "libero_object", "libero_goal", "libero_10", "libero_90")
LEAN_TASKS = [(suite, 0) for suite in SUITES]  # one task of each suite


def _lean_task(
    suite: str, index: int, acts: np.ndarray, rounds: int
) -> tuple[Compared, Compared, bool]:
    """(lean vs LIBERO's step, physics alone vs LIBERO's step, whether every round ended in
    bit-identical states) on one task; every measurement starts from init state 0."""
    import mujoco

    from generation.envs.libero_env import EnvConfig, LiberoEnv
    from generation.envs.lockstep import first_difference, sim_fields

    lean = LiberoEnv((suite, index))
    libero = LiberoEnv((suite, index), EnvConfig(lean=False))
    finals: dict[str, list] = {"lean": [], "libero": []}

    def rate(env, name):
        env.horizon = 10**9
        env.reset(init_state_index=0)
        r = _steps_rate(env.step, acts)
        finals[name].append({k: np.copy(v) for k, v in sim_fields(env).items()})
        return r

    def physics():  # the same model and start, 25 mj_step per control step, no controller
        lean.reset(init_state_index=0)
        raw = lean.raw.env
        m, d = raw.sim.model._model, raw.sim.data._data
        substeps = len(acts) * int(raw.control_timestep / raw.model_timestep)
        t0 = time.perf_counter()
        for _ in range(substeps):
            mujoco.mj_step(m, d)
        return len(acts) / (time.perf_counter() - t0)

    try:
        assert lean.lean and not libero.lean
        r = interleaved(
            {"lean": lambda: rate(lean, "lean"), "libero": lambda: rate(libero, "libero"),
             "physics": physics},
            rounds,
        )  # fmt: skip
    finally:
        lean.close()
        libero.close()
    same = all(
        first_difference(a, b) is None
        for a, b in zip(finals["lean"], finals["libero"], strict=True)
    )
    return compare(r["lean"], r["libero"]), compare(r["physics"], r["libero"]), same


def _episodes_rate(env, episodes: int, length: int) -> float:
    acts = _actions(length)
    t0 = time.perf_counter()
    n = 0
    for e in range(episodes):
        env.reset(init_state_index=e % 50)
        for a in acts:
            env.step(a)
            n += 1
    return n / (time.perf_counter() - t0)


def bench_rendering(episodes: int, length: int, rounds: int) -> tuple[Compared, Compared]:
    """(fast vs LIBERO's default, fast with whole meshes vs LIBERO's default)."""
    from generation.envs.libero_env import EnvConfig, LiberoEnv

    envs = {
        "fast": LiberoEnv(
            ("libero_object", 0), EnvConfig(cameras=("agentview",), render_mode="fast")
        ),
        "whole": LiberoEnv(
            ("libero_object", 0), EnvConfig(cameras=("agentview",), render_mode="fast", mesh_cell=0)
        ),
        "default": LiberoEnv(
            ("libero_object", 0),
            EnvConfig(cameras=("agentview", "robot0_eye_in_hand"), render_mode="faithful"),
        ),
    }
    try:
        r = interleaved(
            {n: (lambda e=e: _episodes_rate(e, episodes, length)) for n, e in envs.items()}, rounds
        )
    finally:
        for env in envs.values():
            env.close()
    return compare(r["fast"], r["default"]), compare(r["whole"], r["default"])


def bench_workers(n_workers: int, steps: int, rounds: int) -> Compared:
    from generation.envs.libero_env import EnvConfig
    from generation.envs.suites import get_task
    from generation.envs.vector import SubprocVectorEnv

    task = get_task("libero_object", 0)
    acts = _actions(steps)
    cfg = EnvConfig(horizon=10**6)
    # both pools live through all rounds; the idle one's workers sleep on their pipes
    with (
        SubprocVectorEnv(task, cfg, num_envs=1, init_state_indices=range(50)) as one,
        SubprocVectorEnv(task, cfg, num_envs=n_workers, init_state_indices=range(50)) as many,
    ):
        one.reset()
        many.reset()
        r = interleaved(
            {
                "many": lambda: _steps_rate(
                    lambda a: many.step(np.repeat(a[None], n_workers, axis=0)), acts, n_workers
                ),
                "one": lambda: _steps_rate(lambda a: one.step(a[None]), acts),
            },
            rounds,
        )
    return compare(r["many"], r["one"])


def bench_write(episodes: int, length: int, size: int, rounds: int) -> Compared:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from generation.data.episode import Episode
    from generation.data.schema import FPS, DatasetSpec, dataset_features
    from generation.data.writer import write_episodes

    rng = np.random.default_rng(0)
    eps = [
        Episode(
            "libero_object",
            0,
            "t",
            "pick up the soup",
            np.zeros(110),
            rng.uniform(-1, 1, (length, 7)),
            rng.normal(size=(length, 8)),
            rng.normal(size=(length, 84)),
            True,
            images={"image": rng.integers(0, 255, (length, size, size, 3), dtype=np.uint8)},
        )  # fmt: skip
        for _ in range(episodes)
    ]
    frames = episodes * length
    spec = DatasetSpec(image_size=size)

    def ours(root: str) -> None:
        write_episodes(eps, root, spec=spec, progress=False)

    def base(root: str) -> None:
        ds = LeRobotDataset.create(
            "local/base", FPS, dataset_features(spec), root=root, use_videos=False
        )
        for ep in eps:
            for t in range(length):
                ds.add_frame({"observation.images.image": ep.images["image"][t], "observation.state": ep.states[t].astype(np.float32),
                              "observation.environment_state": ep.env_states[t].astype(np.float32), "action": ep.actions[t],
                              "pattern_id": np.array([-1]), "task": ep.language})  # fmt: skip
            ds.save_episode()
        ds.finalize()

    tmp = tempfile.mkdtemp()
    count = itertools.count()

    def rate(write: Callable[[str], None]) -> float:
        root = os.path.join(tmp, str(next(count)))
        t0 = time.perf_counter()
        write(root)
        out = frames / (time.perf_counter() - t0)
        shutil.rmtree(root, ignore_errors=True)
        return out

    try:
        r = interleaved({"ours": lambda: rate(ours), "base": lambda: rate(base)}, rounds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return compare(r["ours"], r["base"])


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds per comparison")
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke check")
    p.add_argument(
        "--only", choices=["wrapper", "lean", "rendering", "workers", "write"], default=None
    )
    args = p.parse_args()
    if args.rounds < 1:
        p.error(f"--rounds must be >= 1, got {args.rounds}")
    steps = 60 if args.quick else args.steps
    rounds = 2 if args.quick else args.rounds
    n = os.cpu_count() or 2
    run = lambda name: args.only in (None, name)  # noqa: E731
    rows: list[tuple[str, Compared, str]] = []
    if run("wrapper"):
        wall, in_steps = bench_wrapper(steps, rounds)
        rows.append(("wrapper vs raw LIBERO (state-only steps/s)", wall, ">= 0.97"))
        inner_only = Compared(float("nan"), float("nan"), in_steps, in_steps, in_steps)
        rows.append(("  the same, timed inside our steps (LIBERO's share)", inner_only, ">= 0.97"))
    exact = []
    if run("lean"):
        for suite, index in LEAN_TASKS:
            lean, physics, same = _lean_task(suite, index, _actions(steps), rounds)
            name = f"{suite}/{index}"
            rows.append((f"lean vs LIBERO's step, {name} (steps/s)", lean, ">= 2.5"))
            rows.append((f"  physics alone (25 mj_step), {name}", physics, "limit"))
            exact.append(f"{name} {'bit-identical' if same else 'DIFFERENT'}")
    if run("rendering"):
        fast, whole = bench_rendering(2, 25 if args.quick else 50, rounds)
        rows.append(("fast vs LIBERO-default rendering (steps/s)", fast, ">= 3"))
        rows.append(("  fast with whole meshes (mesh_cell=0) vs default", whole, "-"))
    if run("workers"):
        rows.append(
            (
                f"{n} workers vs 1 (total steps/s)",
                bench_workers(n, steps, rounds),
                f">= {0.9 * n:.1f}",
            )
        )
    if run("write"):
        w = bench_write(4 if args.quick else 10, 50 if args.quick else 100, 128, rounds)
        rows.append(("dataset write, ours vs LeRobotDataset defaults (frames/s)", w, "> 1"))
    print(
        f"\n{rounds} interleaved rounds each; rates are medians, the ratio the median of the per-round ratios"
    )
    print(f"{'benchmark':58s} {'ours':>9s} {'baseline':>9s} {'ratio':>7s} {'range':>11s}  goal")
    for name, c, goal in rows:
        rates = f"{c.ours:9.1f} {c.base:9.1f}" if np.isfinite(c.ours) else f"{'':9s} {'':9s}"
        print(f"{name:58s} {rates} {c.ratio:7.2f} {c.lo:5.2f}-{c.hi:<5.2f}  {goal}")
    if exact:
        print("lean vs LIBERO's step, final states of every round: " + ", ".join(exact))


if __name__ == "__main__":
    main()
