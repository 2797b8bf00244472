"""Closed-loop rollouts of a state policy into :class:`Episode` objects, on a fixed schedule of
init states.

Every source draws from one shared schedule per task (:func:`init_state_schedule`), so the DLR
and O2O datasets of a task cover the same scene layouts: the comparison is between ways of
solving the same scenes, not between sets of scenes. :func:`rollout_schedule` runs exactly one
episode per schedule entry and keeps them all (successes and failures, each with its init
state); the pipeline then picks the init states every source solved.
Rollouts are state-only (no cameras); the dataset writer renders kept episodes afterwards by
replaying init state + actions.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from generation.data.episode import Episode
from generation.dlr.policy import GaussianPolicy, obs_vector
from generation.envs.libero_env import EnvConfig
from generation.envs.suites import TaskSpec
from generation.envs.vector import SubprocVectorEnv

log = logging.getLogger(__name__)


@dataclass
class RolloutResult:
    episodes: list[Episode]  # one per schedule entry, in schedule order
    attempted: int
    succeeded: int

    @property
    def success_rate(self) -> float:
        return self.succeeded / max(self.attempted, 1)


def init_state_schedule(task: TaskSpec, n: int, seed: int) -> list[int]:
    """``n`` distinct init-state indices of ``task`` in a seeded random order (all of them, in
    that order, when ``n`` exceeds the task's count). The same for every source of a task."""
    order = np.random.default_rng([seed, task.index]).permutation(task.n_init_states)
    return [int(i) for i in order[: min(n, task.n_init_states)]]


def rollout_schedule(
    policy: GaussianPolicy,
    task: TaskSpec,
    pattern: int | None,
    schedule: Sequence[int],
    source: str,
    env_config: EnvConfig | None = None,
    num_envs: int = 2,
    deterministic: bool = False,
    seed: int = 0,
) -> RolloutResult:
    """One episode of ``policy`` (with z = ``pattern``) from each init state in ``schedule``.

    Worker i runs ``schedule[i::num_envs]``; a worker that has finished its share keeps
    stepping in lock-step and its extra episodes are dropped, so every entry is run exactly
    once and the result does not depend on which worker finishes first.
    """
    env_config = env_config or EnvConfig()
    schedule = [int(s) for s in schedule]
    num_envs = max(1, min(num_envs, len(schedule)))
    torch.manual_seed(seed)
    shares = [schedule[i::num_envs] for i in range(num_envs)]
    done = [0] * num_envs  # episodes finished per worker
    by_position: dict[int, Episode] = {}
    envs = SubprocVectorEnv(task, env_config, num_envs, init_state_indices=schedule, seed=seed)
    try:
        obs, infos = envs.reset()
        starts = [(i["init_state"], i["init_state_index"]) for i in infos]
        buf = [{"states": [], "env_states": [], "actions": []} for _ in range(num_envs)]
        while any(d < len(s) for d, s in zip(done, shares, strict=True)):
            actions = policy.act(obs_vector(obs), pattern, deterministic=deterministic)
            for i in range(num_envs):
                buf[i]["states"].append(obs["state"][i])
                buf[i]["env_states"].append(obs["env_state"][i])
                buf[i]["actions"].append(actions[i])
            obs, _, _, _, infos = envs.step(actions)
            for i, info in enumerate(infos):
                if "episode" not in info:
                    continue
                if done[i] < len(shares[i]):
                    assert starts[i][1] == shares[i][done[i]], (starts[i], shares[i], done[i])
                    by_position[i + num_envs * done[i]] = Episode(
                        suite=task.suite,
                        task_index=task.index,
                        task_name=task.name,
                        language=task.language,
                        init_state=starts[i][0],
                        actions=np.stack(buf[i]["actions"]),
                        states=np.stack(buf[i]["states"]),
                        env_states=np.stack(buf[i]["env_states"]),
                        success=bool(info["episode"]["success"]),
                        source=source,
                        init_state_index=int(starts[i][1]),
                        seed=seed,
                        pattern_id=-1 if pattern is None else int(pattern),
                        settle_steps=env_config.settle_steps,
                    )
                    done[i] += 1
                r = info["reset_info"]
                starts[i] = (r["init_state"], r["init_state_index"])
                buf[i] = {"states": [], "env_states": [], "actions": []}
    finally:
        envs.close()
    episodes = [by_position[k] for k in sorted(by_position)]
    succeeded = sum(e.success for e in episodes)
    log.info("%s pattern %s: %d/%d successes", source, pattern, succeeded, len(episodes))
    return RolloutResult(episodes, len(episodes), succeeded)


def evaluate(
    policy: GaussianPolicy,
    task: TaskSpec,
    pattern: int | None,
    episodes: int,
    env_config: EnvConfig | None = None,
    num_envs: int = 2,
    seed: int = 0,
) -> RolloutResult:
    """Closed-loop success over the first ``episodes`` init states of the task's shared
    schedule (the same scenes for every pattern and source)."""
    schedule = init_state_schedule(task, episodes, seed)
    schedule = (schedule * (episodes // max(len(schedule), 1) + 1))[:episodes]
    return rollout_schedule(
        policy, task, pattern, schedule, "eval", env_config, num_envs, seed=seed
    )
