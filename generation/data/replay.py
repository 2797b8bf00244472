"""Replaying a stored episode with LIBERO's own API, without this package.

An episode is replayable from its ``init_state`` (the flattened MuJoCo state before
settling), ``settle_steps`` no-op steps with :data:`SETTLE_ACTION` (LIBERO's dummy action:
arm still, gripper open), then its ``actions``. Fixtures (cabinets, stoves, racks) are not part
of a MuJoCo state: our env puts them at the centre of LIBERO's placement ranges on every reset
(``LiberoEnv._pin_fixtures``), LIBERO's own reset at random. :func:`fixture_poses` gives those
poses, so that a replay touching a fixture pins them too. The dataset card prints
:func:`replay_with_libero` itself as the recipe, so the published recipe is the tested one.
"""

from __future__ import annotations

import numpy as np

from generation.envs.libero_env import SETTLE_ACTION

__all__ = ["SETTLE_ACTION", "fixture_poses", "replay_with_libero"]


def fixture_poses(suite: str, task_index: int) -> dict[str, tuple[list[float], list[float]]]:
    """``{body name: (pos xyz, quat wxyz)}`` of the task's fixtures as our env places them."""
    from generation.envs.libero_env import LiberoEnv

    env = LiberoEnv((suite, task_index))  # state only: no renderer is built
    try:
        env.reset(init_state_index=0)
        pinned = env._fixture_pose or {}
        return {b: (np.asarray(p).tolist(), np.asarray(q).tolist()) for b, (p, q) in pinned.items()}
    finally:
        env.close()


def replay_with_libero(
    suite, task_name, init_state, actions, settle_steps, fixtures=None, size=128
):
    """Replay one episode with LIBERO's API; return LIBERO's observation before each action."""
    import os

    from libero.libero import benchmark, get_libero_path
    from libero.libero.envs import OffScreenRenderEnv

    bench = benchmark.get_benchmark_dict()[suite]()
    task = next(t for t in bench.tasks if t.name == task_name)
    bddl = os.path.join(get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)
    env = OffScreenRenderEnv(bddl_file_name=bddl, camera_heights=size, camera_widths=size)
    try:
        env.reset()
        model = env.sim.model
        for body, (pos, quat) in (fixtures or {}).items():  # where the episode had its fixtures
            model.body_pos[model.body_name2id(body)] = pos
            model.body_quat[model.body_name2id(body)] = quat
        obs = env.set_init_state(np.asarray(init_state, dtype=np.float64))
        for _ in range(settle_steps):
            obs, *_ = env.step([0, 0, 0, 0, 0, 0, -1])
        observations = []
        for action in actions:
            observations.append(obs)
            obs, *_ = env.step(action)
        return observations
    finally:
        env.close()
