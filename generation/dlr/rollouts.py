"""Closed-loop rollouts of a state policy into :class:`Episode` objects.

Rollouts are state-only (no cameras: several times faster); the dataset writer renders the
kept episodes afterwards by replaying init state + actions. Every recorded episode keeps the
sim state it started from, so it is replayable.
"""

from __future__ import annotations

import logging
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
    episodes: list[Episode]  # the kept ones (all, or successes only)
    attempted: int
    succeeded: int

    @property
    def success_rate(self) -> float:
        return self.succeeded / max(self.attempted, 1)


def collect(
    policy: GaussianPolicy,
    task: TaskSpec,
    pattern: int | None,
    n_keep: int,
    max_episodes: int,
    source: str,
    env_config: EnvConfig | None = None,
    num_envs: int = 2,
    successes_only: bool = True,
    deterministic: bool = False,
    init_state_indices: list[int] | None = None,
    seed: int = 0,
) -> RolloutResult:
    """Roll ``policy`` (with z = ``pattern``) until ``n_keep`` episodes are kept or
    ``max_episodes`` have finished. Episodes still running at the end are dropped."""
    env_config = env_config or EnvConfig()
    torch.manual_seed(seed)
    indices = (
        init_state_indices if init_state_indices is not None else list(range(task.n_init_states))
    )
    envs = SubprocVectorEnv(task, env_config, num_envs, init_state_indices=indices, seed=seed)
    kept: list[Episode] = []
    attempted = succeeded = 0
    try:
        obs, infos = envs.reset()
        starts = [(i["init_state"], i["init_state_index"]) for i in infos]
        buf = [{"states": [], "env_states": [], "actions": []} for _ in range(num_envs)]
        while len(kept) < n_keep and attempted < max_episodes:
            actions = policy.act(obs_vector(obs), pattern, deterministic=deterministic)
            for i in range(num_envs):
                buf[i]["states"].append(obs["state"][i])
                buf[i]["env_states"].append(obs["env_state"][i])
                buf[i]["actions"].append(actions[i])
            obs, _, _, _, infos = envs.step(actions)
            for i, info in enumerate(infos):
                if "episode" not in info:
                    continue
                success = bool(info["episode"]["success"])
                attempted += 1
                succeeded += success
                if (
                    (success or not successes_only)
                    and len(kept) < n_keep
                    and attempted <= max_episodes
                ):
                    kept.append(
                        Episode(
                            suite=task.suite,
                            task_index=task.index,
                            task_name=task.name,
                            language=task.language,
                            init_state=starts[i][0],
                            actions=np.stack(buf[i]["actions"]),
                            states=np.stack(buf[i]["states"]),
                            env_states=np.stack(buf[i]["env_states"]),
                            success=success,
                            source=source,
                            init_state_index=-1 if starts[i][1] is None else int(starts[i][1]),
                            seed=seed,
                            pattern_id=-1 if pattern is None else int(pattern),
                            settle_steps=env_config.settle_steps,
                        )
                    )
                r = info["reset_info"]
                starts[i] = (r["init_state"], r["init_state_index"])
                buf[i] = {"states": [], "env_states": [], "actions": []}
    finally:
        envs.close()
    log.info(
        "%s pattern %s: kept %d, %d/%d successes", source, pattern, len(kept), succeeded, attempted
    )
    return RolloutResult(kept, attempted, succeeded)


def evaluate(
    policy: GaussianPolicy,
    task: TaskSpec,
    pattern: int | None,
    episodes: int,
    env_config: EnvConfig | None = None,
    num_envs: int = 2,
    seed: int = 0,
) -> RolloutResult:
    """Closed-loop success rate over ``episodes`` episodes (all kept, for their eef paths)."""
    return collect(
        policy,
        task,
        pattern,
        n_keep=episodes,
        max_episodes=episodes,
        source="eval",
        env_config=env_config,
        num_envs=num_envs,
        successes_only=False,
        seed=seed,
    )
