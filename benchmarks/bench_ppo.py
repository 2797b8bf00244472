"""PPO throughput vs raw simulation throughput on one LIBERO task, lean stepping off and on.

    MUJOCO_GL=egl python -m benchmarks.bench_ppo --suite libero_object --task 0 --num-envs 2

Measures raw vectorised env steps/s (random actions, no learner) and PPO env steps/s (rollout
with the policy + GAE + updates), each with LIBERO's own step (``EnvConfig(lean=False)``, before)
and with lean stepping (the default, after), in interleaved rounds (order rotating; see
bench_envs). Prints the medians, after/before ratios with their range (goal for PPO: >= 2x),
and PPO/raw: the learner's overhead.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np


def raw_steps_per_s(task, env_config, num_envs: int, steps: int) -> float:
    from generation.envs.vector import SubprocVectorEnv

    with SubprocVectorEnv(
        task, env_config, num_envs, init_state_indices=list(range(task.n_init_states))
    ) as envs:
        envs.reset()
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        for _ in range(steps // num_envs):
            envs.step(rng.uniform(-1, 1, size=(num_envs, 7)).astype(np.float32))
        return (steps // num_envs) * num_envs / (time.perf_counter() - t0)


def ppo_steps_per_s(task, env_config, num_envs: int, steps: int, num_steps: int) -> float:
    from generation.dlr.policy import GaussianPolicy
    from generation.dlr.ppo import PPOConfig, train_ppo

    policy = GaussianPolicy(obs_dim=8 + 84, num_patterns=3)
    cfg = PPOConfig(
        total_env_steps=steps, num_envs=num_envs, num_steps=num_steps, critic_warmup_iters=0
    )
    with tempfile.TemporaryDirectory() as tmp:
        res = train_ppo(policy, task, 0, cfg, Path(tmp), env_config)
    # skip the first iteration, whose wall time includes the workers' env start-up
    c = res.curves
    if len(c) < 2:
        raise SystemExit("need >= 2 PPO iterations: raise --steps or lower --num-steps")
    return float(
        (c.global_step.iloc[-1] - c.global_step.iloc[0]) / (c.wall_s.iloc[-1] - c.wall_s.iloc[0])
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--suite", default="libero_object")
    p.add_argument("--task", default="0")
    p.add_argument("--num-envs", type=int, default=2)
    p.add_argument("--steps", type=int, default=2048, help="env steps per measurement")
    p.add_argument("--num-steps", type=int, default=256, help="PPO steps per env per iteration")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    args = p.parse_args()
    if args.rounds < 1:
        p.error(f"--rounds must be >= 1, got {args.rounds}")
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(1)
    from benchmarks.bench_envs import compare, interleaved
    from generation.envs.libero_env import EnvConfig
    from generation.envs.suites import get_task

    task = get_task(args.suite, args.task)
    before, after = EnvConfig(lean=False), EnvConfig()
    n, steps = args.num_envs, args.steps
    r = interleaved(
        {
            "raw_before": lambda: raw_steps_per_s(task, before, n, steps),
            "raw_after": lambda: raw_steps_per_s(task, after, n, steps),
            "ppo_before": lambda: ppo_steps_per_s(task, before, n, steps, args.num_steps),
            "ppo_after": lambda: ppo_steps_per_s(task, after, n, steps, args.num_steps),
        },
        args.rounds,
    )
    print(f"task {task.key} num_envs={n} steps={steps}, {args.rounds} interleaved rounds")
    print(f"{'env steps/s':28s} {'lean off':>9s} {'lean on':>9s} {'ratio':>7s} {'range':>11s}")
    for name, key, goal in (("raw vectorised env", "raw", ""), ("PPO", "ppo", "  goal >= 2")):
        c = compare(r[f"{key}_after"], r[f"{key}_before"])
        print(
            f"{name:28s} {c.base:9.1f} {c.ours:9.1f} {c.ratio:7.2f} {c.lo:5.2f}-{c.hi:<5.2f}{goal}"
        )
    for lean in ("before", "after"):
        share = float(np.median(r[f"ppo_{lean}"] / r[f"raw_{lean}"]))
        print(f"PPO / raw, lean {'off' if lean == 'before' else 'on'}: {share:.3f} "
              f"(learner overhead {100 * (1 - share):.0f}%)")  # fmt: skip


if __name__ == "__main__":
    main()
