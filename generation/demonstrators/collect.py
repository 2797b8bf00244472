"""Running a demonstrator in a :class:`LiberoEnv` and recording the :class:`Episode`.

A demonstrator's ``plan`` is a generator of :class:`Waypoint`s. The runner drives the arm to
each waypoint in turn and only then asks the generator for the next one, so a plan can look at
the scene as it is *now* (where the grasped object ended up in the hand, whether the grasp
held) before deciding where to go next.

Where an episode ends: at the first step whose state satisfies the task's goal predicates
(``LiberoEnv.step`` reports ``terminated``), exactly as RL rollouts and LIBERO's evaluations
end. There is no post-success tail: ``LiberoEnv`` refuses steps after success, and an episode
must replay through the same API. For "in" goals this can be while the object is still held
above the container (LIBERO's predicate fires as soon as the object is inside the region).
Otherwise an episode ends at the env's horizon or when the plan is exhausted (failure).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np

from generation.data.episode import Episode
from generation.demonstrators.controller import HumanNoise, Waypoint, WaypointController

log = logging.getLogger(__name__)

GRIP_SITE = "gripper0_grip_site"


class Demonstrator:
    """A scripted solver of one task with several named strategies.

    Subclasses set ``strategy_names`` and implement ``plan(env, strategy_id, rng)``, a generator
    of waypoints. ``noise`` describes the simulated operator's imperfection.
    """

    strategy_names: tuple[str, ...] = ()

    def __init__(self, task, noise: HumanNoise | None = None):
        self.task = task
        self.noise = noise or HumanNoise()
        self.controller = WaypointController()

    @property
    def n_strategies(self) -> int:
        return len(self.strategy_names)

    def plan(self, env, strategy_id: int, rng: np.random.Generator) -> Iterator[Waypoint]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.task.key}, strategies={list(self.strategy_names)})"


def eef_pose(env) -> tuple[np.ndarray, np.ndarray]:
    d = env.sim.data
    return np.array(d.get_site_xpos(GRIP_SITE)), np.array(d.get_site_xmat(GRIP_SITE)).reshape(3, 3)


class _Finished(Exception):
    pass


def collect_episode(
    env,
    demonstrator: Demonstrator,
    strategy_id: int,
    init_state_index: int | None = None,
    seed: int | None = None,
    rng: np.random.Generator | None = None,
) -> Episode:
    """Reset ``env``, run ``demonstrator``'s strategy ``strategy_id`` and return the episode."""
    if not 0 <= strategy_id < demonstrator.n_strategies:
        raise ValueError(
            f"strategy_id {strategy_id} out of range: {demonstrator!r} has "
            f"{demonstrator.n_strategies} strategies {list(demonstrator.strategy_names)}"
        )
    if rng is None:
        rng = np.random.default_rng(
            [
                seed if seed is not None else 0,
                init_state_index if init_state_index is not None else -1,
                strategy_id,
            ]
        )
    obs, info = env.reset(init_state_index=init_state_index, seed=seed)
    noise, ctrl = demonstrator.noise, demonstrator.controller
    noise.reset()
    actions, states, env_states = [], [], []
    success = False

    def step(action: np.ndarray) -> None:
        nonlocal obs, success
        states.append(obs["state"])
        env_states.append(obs["env_state"])
        action = np.clip(action, -1.0, 1.0).astype(np.float32)
        actions.append(action)
        obs, _, terminated, truncated, step_info = env.step(action)
        if terminated or truncated:
            success = bool(step_info["success"])
            raise _Finished

    try:
        for wp in demonstrator.plan(env, strategy_id, rng):
            for _ in range(noise.pause_length(rng)):  # the operator hesitates
                pos, rot = eef_pose(env)
                grip = actions[-1][-1] if actions else wp.grip
                hold = Waypoint(pos=pos, yaw=wp.yaw, grip=grip, tilt=wp.tilt)
                a = ctrl.action(pos, rot, hold)
                a[:6] += 0.3 * noise.sample(rng)
                step(a)
            for t in range(wp.max_steps):
                pos, rot = eef_pose(env)
                if t >= wp.min_steps and ctrl.reached(pos, rot, wp):
                    break
                a = ctrl.action(pos, rot, wp)
                a[:6] += wp.noise * noise.sample(rng)
                step(a)
            log.debug(
                "%s: %-12s t=%d eef=%s",
                env.task.key,
                wp.label,
                len(actions),
                np.round(eef_pose(env)[0], 3),
            )
    except _Finished:
        pass
    return Episode(
        suite=env.task.suite,
        task_index=env.task.index,
        task_name=env.task.name,
        language=env.task.language,
        init_state=np.asarray(info["init_state"]),
        actions=np.asarray(actions, dtype=np.float32).reshape(-1, 7),
        states=np.asarray(states, dtype=np.float32).reshape(-1, 8),
        env_states=np.asarray(env_states, dtype=np.float32).reshape(len(states), -1),
        success=success,
        source="demo",
        init_state_index=-1 if init_state_index is None else int(init_state_index),
        seed=-1 if seed is None else int(seed),
        strategy_id=int(strategy_id),
        settle_steps=env.config.settle_steps,
    )
