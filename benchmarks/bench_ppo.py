"""PPO throughput vs raw simulation throughput on one LIBERO task, in the same run.

    MUJOCO_GL=egl python -m benchmarks.bench_ppo --suite libero_object --task 0 --num-envs 2

Prints raw vectorised env steps/s (random actions, no learner), PPO env steps/s (rollout with
the policy + GAE + updates), and their ratio: the learner's overhead.
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
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(1)
    from generation.envs.libero_env import EnvConfig
    from generation.envs.suites import get_task

    task, env_config = get_task(args.suite, args.task), EnvConfig()
    raw = raw_steps_per_s(task, env_config, args.num_envs, args.steps)
    ppo = ppo_steps_per_s(task, env_config, args.num_envs, args.steps, args.num_steps)
    print(f"task {task.key} num_envs={args.num_envs} steps={args.steps}")
    print(f"raw env steps/s:  {raw:8.1f}")
    print(f"PPO env steps/s:  {ppo:8.1f}")
    print(f"PPO / raw ratio:  {ppo / raw:8.3f}  (learner overhead {100 * (1 - ppo / raw):.0f}%)")


if __name__ == "__main__":
    main()
