"""Synthetic multi-strategy episodes for DLR tests: eef paths from a start to a goal through one
of three via points (left, right, above), with the ground-truth strategy_id."""

from __future__ import annotations

import numpy as np

from generation.data.episode import Episode

VIA = np.array([[0.0, 0.2, 0.1], [0.0, -0.2, 0.1], [0.0, 0.0, 0.35]])


def synthetic_episode(strategy: int, rng: np.random.Generator, length: int = 60) -> Episode:
    start = np.array([-0.2, 0.0, 0.2]) + rng.normal(0, 0.01, 3)
    goal = np.array([0.2, 0.0, 0.1]) + rng.normal(0, 0.01, 3)
    via = VIA[strategy] + rng.normal(0, 0.01, 3)
    half = length // 2
    path = np.concatenate(
        [np.linspace(start, via, half, endpoint=False), np.linspace(via, goal, length - half)]
    )
    states = np.zeros((length, 8), np.float32)
    states[:, :3] = path
    states[:, 3] = 3.14
    states[:, 6:] = [0.04, -0.04]
    env_states = np.zeros((length, 84), np.float32)
    env_states[:, :3] = goal
    actions = np.zeros((length, 7), np.float32)
    actions[:-1, :3] = np.clip(np.diff(path, axis=0) * 20, -1, 1)
    actions[:, 6] = -1.0
    return Episode(
        suite="libero_object",
        task_index=0,
        task_name="synthetic",
        language="synthetic",
        init_state=np.zeros(10),
        actions=actions,
        states=states,
        env_states=env_states,
        success=True,
        strategy_id=strategy,
    )


def synthetic_demos(per_strategy: int = 10, seed: int = 0) -> list[Episode]:
    rng = np.random.default_rng(seed)
    return [synthetic_episode(s, rng) for s in range(3) for _ in range(per_strategy)]
