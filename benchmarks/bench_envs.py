"""Environment and dataset-writing throughput, measured in one run; prints ratios against goals.

  python -m benchmarks.bench_envs [--steps 300] [--quick] [--only rendering]

1. our LiberoEnv (state-only) vs the raw LIBERO ControlEnv stepping the same actions (goal >= 0.97x)
2. fast rendering (agentview only, MSAA/shadows off, soft reset, visual meshes simplified below
   half a pixel) vs LIBERO's default (two cameras, MSAA, hard reset each episode), episodes of
   50 steps including resets (goal >= 3x); also fast mode with whole meshes (mesh_cell=0)
3. N worker processes vs 1 (state-only, goal >= 0.9*N; N = number of cores)
4. demo-dataset write throughput: our writer vs LeRobotDataset.create defaults (frames/s)
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])


def _actions(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.3, 0.3, (n, 7))


def bench_wrapper(steps: int) -> tuple[float, float]:
    from libero.libero.envs.env_wrapper import ControlEnv

    from generation.envs.libero_env import LiberoEnv
    from generation.envs.suites import get_task

    task = get_task("libero_object", 0)
    acts = _actions(steps)
    ours = LiberoEnv(task)
    ours.horizon = 10**9
    ours.reset(init_state_index=0)
    raw = ControlEnv(bddl_file_name=task.bddl_file, use_camera_obs=False, has_offscreen_renderer=False,
                     camera_names=[], horizon=10**7, ignore_done=True, hard_reset=False)  # fmt: skip
    raw.reset()
    raw.set_init_state(ours.init_state(0))
    rates = {"ours": [], "raw": []}
    for _ in range(3):  # interleave to share machine noise
        t0 = time.perf_counter()
        for a in acts:
            raw.step(a)
            raw.check_success()
        rates["raw"].append(steps / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for a in acts:
            ours.step(a)
        rates["ours"].append(steps / (time.perf_counter() - t0))
    ours.close()
    raw.close()
    return float(np.median(rates["ours"])), float(np.median(rates["raw"]))


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


def bench_rendering(episodes: int, length: int) -> tuple[float, float, float]:
    from generation.envs.libero_env import EnvConfig, LiberoEnv

    fast = LiberoEnv(("libero_object", 0), EnvConfig(cameras=("agentview",), render_mode="fast"))
    whole = LiberoEnv(
        ("libero_object", 0), EnvConfig(cameras=("agentview",), render_mode="fast", mesh_cell=0)
    )
    default = LiberoEnv(
        ("libero_object", 0),
        EnvConfig(cameras=("agentview", "robot0_eye_in_hand"), render_mode="faithful"),
    )
    r_fast = _episodes_rate(fast, episodes, length)
    r_whole = _episodes_rate(whole, episodes, length)
    r_default = _episodes_rate(default, episodes, length)
    for env in (fast, whole, default):
        env.close()
    return r_fast, r_whole, r_default


def bench_workers(n_workers: int, steps: int) -> tuple[float, float]:
    from generation.envs.libero_env import EnvConfig
    from generation.envs.suites import get_task
    from generation.envs.vector import SubprocVectorEnv

    task = get_task("libero_object", 0)
    rates = {}
    for n in (1, n_workers):
        with SubprocVectorEnv(
            task, EnvConfig(horizon=10**6), num_envs=n, init_state_indices=range(50)
        ) as venv:
            venv.reset()
            acts = _actions(steps)
            t0 = time.perf_counter()
            for a in acts:
                venv.step(np.repeat(a[None], n, axis=0))
            rates[n] = n * steps / (time.perf_counter() - t0)
    return rates[n_workers], rates[1]


def bench_write(episodes: int, length: int, size: int) -> tuple[float, float]:
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
    tmp = tempfile.mkdtemp()
    try:
        t0 = time.perf_counter()
        write_episodes(
            eps, os.path.join(tmp, "ours"), spec=DatasetSpec(image_size=size), progress=False
        )
        ours = frames / (time.perf_counter() - t0)
        spec = DatasetSpec(image_size=size)
        t0 = time.perf_counter()
        ds = LeRobotDataset.create(
            "local/base",
            FPS,
            dataset_features(spec),
            root=os.path.join(tmp, "base"),
            use_videos=False,
        )
        for ep in eps:
            for t in range(length):
                ds.add_frame({"observation.images.image": ep.images["image"][t], "observation.state": ep.states[t].astype(np.float32),
                              "observation.environment_state": ep.env_states[t].astype(np.float32), "action": ep.actions[t],
                              "pattern_id": np.array([-1]), "task": ep.language})  # fmt: skip
            ds.save_episode()
        ds.finalize()
        base = frames / (time.perf_counter() - t0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ours, base


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke check")
    p.add_argument("--only", choices=["wrapper", "rendering", "workers", "write"], default=None)
    args = p.parse_args()
    steps = 60 if args.quick else args.steps
    n = os.cpu_count() or 2
    run = lambda name: args.only in (None, name)  # noqa: E731
    rows = []
    if run("wrapper"):
        ours, raw = bench_wrapper(steps)
        rows.append(
            ("wrapper vs raw LIBERO (state-only steps/s)", ours, raw, ours / raw, ">= 0.97")
        )
    if run("rendering"):
        fast, whole, default = bench_rendering(2 if args.quick else 4, 25 if args.quick else 50)
        rows.append(
            ("fast vs LIBERO-default rendering (steps/s)", fast, default, fast / default, ">= 3")
        )
        rows.append(
            (
                "  fast with whole meshes (mesh_cell=0) vs default",
                whole,
                default,
                whole / default,
                "-",
            )
        )
    if run("workers"):
        multi, single = bench_workers(n, steps)
        rows.append(
            (
                f"{n} workers vs 1 (total steps/s)",
                multi,
                single,
                multi / single,
                f">= {0.9 * n:.1f}",
            )
        )
    if run("write"):
        w_ours, w_base = bench_write(4 if args.quick else 10, 50 if args.quick else 100, 128)
        rows.append(
            (
                "dataset write, ours vs LeRobotDataset defaults (frames/s)",
                w_ours,
                w_base,
                w_ours / w_base,
                "> 1",
            )
        )
    print(f"\n{'benchmark':58s} {'ours':>9s} {'baseline':>9s} {'ratio':>7s}  goal")
    for name, a, b, r, goal in rows:
        print(f"{name:58s} {a:9.1f} {b:9.1f} {r:7.2f}  {goal}")


if __name__ == "__main__":
    main()
