"""Lean stepping (generation/envs/lean.py) against LIBERO's own env.step, bit for bit.

Every comparison runs a lean env and a reference env (``EnvConfig(lean=False)``) in lock-step
(generation/envs/lockstep.py): the full sim state, the gripper's carried command, the
observations and the success flags must be ``np.array_equal`` after every step.
"""

import numpy as np
import pytest

from generation.envs.libero_env import EnvConfig, LiberoEnv
from generation.envs.lockstep import Lockstep, LockstepMismatch, first_difference, sim_fields


@pytest.fixture(scope="module")
def object_reference():
    """LIBERO-Object task 0 stepped through LIBERO's own env.step (lean off)."""
    env = LiberoEnv(("libero_object", 0), EnvConfig(lean=False))
    yield env
    env.close()


def _random_episodes(pair: Lockstep, episodes: list[dict], steps: int, seed: int) -> None:
    """Random actions, some beyond [-1, 1] (clipped), the gripper command flipping."""
    horizons = pair.env.horizon, pair.reference.horizon
    pair.env.horizon = pair.reference.horizon = 10**6
    rng = np.random.default_rng(seed)
    try:
        for reset in episodes:
            pair.reset(**reset)
            for _ in range(steps):
                pair.step(rng.uniform(-1.3, 1.3, 7))
    finally:
        pair.env.horizon, pair.reference.horizon = horizons


def test_state_only_envs_step_lean_unless_switched_off(object_env, object_reference, monkeypatch):
    assert object_env.lean and not object_reference.lean
    monkeypatch.setenv("DLR_LEAN", "0")  # the run-wide switch: worker processes inherit it
    assert not EnvConfig().lean and EnvConfig(lean=True).lean
    monkeypatch.setenv("DLR_LEAN", "off")
    with pytest.raises(ValueError, match="DLR_LEAN='off': set it to 1"):
        EnvConfig()


def test_lean_random_steps_are_bit_identical_to_libero(object_env, object_reference):
    """Resets between episodes (by index and seeded) build a new controller, whose first
    substep keeps the state it read when built (robosuite's update guard)."""
    pair = Lockstep(object_env, object_reference)
    episodes = [{"init_state_index": 4}, {"seed": 3}, {"init_state_index": 4}]
    _random_episodes(pair, episodes, steps=35, seed=0)
    assert pair.steps == 105


def test_lockstep_catches_a_one_ulp_difference(object_env, object_reference):
    pair = Lockstep(object_env, object_reference)
    pair.reset(init_state_index=0)
    pair.step(np.zeros(7))
    qpos = object_env.sim.data.qpos
    qpos[0] = np.nextafter(qpos[0], np.inf)
    assert first_difference(sim_fields(object_env), sim_fields(object_reference)).startswith(
        "sim_state"
    )
    with pytest.raises(LockstepMismatch, match="step 2: sim_state"):
        pair.step(np.zeros(7))


def test_object_state_matches_the_per_object_formula(object_env):
    """``object_state`` gathers with cached ids; the values are those of the loop it replaced."""
    object_env.reset(init_state_index=2)
    for action in np.random.default_rng(1).uniform(-1, 1, (5, 7)):
        object_env.step(action)
    env, data = object_env.raw.env, object_env.sim.data
    parts = []
    for name in env.objects_dict:
        parts += [data.body_xpos[env.obj_body_id[name]], data.body_xquat[env.obj_body_id[name]]]
    joints = [
        data.qpos[object_env.sim.model.jnt_qposadr[j]] for j in object_env._articulated_joint_ids()
    ]
    flat = np.concatenate(parts + [np.asarray(joints, dtype=np.float64)]).astype(np.float32)
    expected = np.zeros(object_env.config.env_state_dim, dtype=np.float32)
    expected[: flat.size] = flat
    np.testing.assert_array_equal(object_env.object_state(), expected)


def test_contact_check_answers_as_robosuite(object_env):
    """Pairs of scene objects, geom names and lists (one unknown), each also against anything,
    in a state with contacts: the mask-based check and robosuite's name-based one agree."""
    from robosuite.environments.base import MujocoEnv

    object_env.reset(init_state_index=0)
    for action in np.tile([0, 0, -1.0, 0, 0, 0, 1.0], (12, 1)):  # press down onto the table
        object_env.step(action)
    env = object_env.raw.env
    model, contacts = env.sim.model, env.sim.data.contact[: env.sim.data.ncon]
    touching = sorted({model.geom_id2name(c.geom1) or "" for c in contacts})
    groups = [*env.objects_dict.values(), *env.fixtures_dict.values(), touching[0]]
    groups += [touching[1:], ["robot0_link7_collision", "no_such_geom"]]
    answers = []
    for a in groups:
        for b in [*groups, None]:
            answers.append(env.check_contact(a, b))
            assert answers[-1] == MujocoEnv.check_contact(env, a, b), (a, b)
    assert any(answers) and not all(answers)


def test_unsupported_configurations_fall_back_with_the_reason(object_env):
    import mujoco

    from generation.envs.lean import LeanStepper, lean_unsupported

    env = object_env.raw.env
    assert lean_unsupported(env) is None
    integrator = env.sim.model.opt.integrator
    env.sim.model.opt.integrator = mujoco.mjtIntegrator.mjINT_RK4
    try:
        assert "RK4" in lean_unsupported(env)
        with pytest.raises(ValueError, match="RK4"):
            LeanStepper(env)
    finally:
        env.sim.model.opt.integrator = integrator


def test_kernels_fuse_no_multiply_add(object_env):
    """The compiled element-wise parts must round every product and sum on its own, as numpy
    does: no fused multiply-add in their machine code (numba's default, fastmath off)."""
    import re

    import numba

    from generation.envs import lean_kernels

    object_env.reset(init_state_index=0)  # compiles (or loads) the kernels for the env's types
    kernels = [lean_kernels.read_robot_state, lean_kernels.desired_forces]
    kernels.append(lean_kernels.apply_controls)
    for kernel in kernels:
        assert kernel.signatures, kernel
        fresh = numba.njit(kernel.py_func)  # code loaded from numba's cache cannot be inspected
        for sig in kernel.signatures:
            fresh.compile(sig)
            asm = fresh.inspect_asm(sig)
            assert len(asm) > 1000
            assert not re.search(r"\bv?fn?m(add|sub)", asm), kernel.py_func.__name__


def test_kernels_give_numpys_bits():
    """desired_forces and apply_controls against robosuite's numpy expressions, on values
    from 1e-3 to 1e3 (and NaN, which np.clip keeps)."""
    from generation.envs.lean_kernels import apply_controls, desired_forces

    rng = np.random.default_rng(0)

    def vec(n):
        return rng.normal(size=n) * 10.0 ** rng.uniform(-3, 3, n)

    for _ in range(200):
        goal, ee, ori, vpos, vori, kp, kd = (vec(3) for _ in range(7))
        kp, kd = np.concatenate([kp, vec(3)]), np.concatenate([kd, vec(3)])
        init, jpos, jvel = vec(7), vec(7), vec(7)
        force, torque, pose = np.zeros(3), np.zeros(3), np.zeros(7)
        kv = np.sqrt(10) * 2
        desired_forces(
            goal, ee, ori, vpos, vori, kp, kd, init, jpos, jvel, 10, kv, force, torque, pose
        )
        np.testing.assert_array_equal(
            force, np.multiply(goal - ee, kp[0:3]) + np.multiply(-vpos, kd[0:3])
        )
        np.testing.assert_array_equal(
            torque, np.multiply(ori, kp[3:6]) + np.multiply(-vori, kd[3:6])
        )
        np.testing.assert_array_equal(pose, 10 * (init - jpos) - kv * jvel)

        jt, bias, ns = vec(7), vec(9), vec(7)
        jt[0] = np.nan
        low, high = -np.abs(vec(7)), np.abs(vec(7))
        grip, delta = rng.uniform(-1.2, 1.2, 2), rng.uniform(-0.3, 0.3, 2)
        gbias, gweight = vec(2), vec(2)
        torques, clipped, ctrl = np.zeros(7), np.zeros(7), np.zeros(9)
        qvel_idx, arm_ids, grip_ids = np.arange(7), np.arange(7), np.array([7, 8])
        expected_grip = np.clip(grip + delta, -1.0, 1.0)
        apply_controls(
            jt,
            bias,
            qvel_idx,
            ns,
            low,
            high,
            arm_ids,
            grip,
            delta,
            gbias,
            gweight,
            grip_ids,
            torques,
            clipped,
            ctrl,
        )
        expected = jt + bias[:7]
        expected += ns
        np.testing.assert_array_equal(torques, expected)
        np.testing.assert_array_equal(clipped, np.clip(expected, low, high))
        np.testing.assert_array_equal(grip, expected_grip)
        np.testing.assert_array_equal(
            ctrl, np.concatenate([np.clip(expected, low, high), gbias + gweight * expected_grip])
        )


# one task per suite, among them a stove knob, a book, a drawer and a microwave door
SCRIPTED = [
    ("libero_object", 0, 0),
    ("libero_spatial", 0, 1),
    ("libero_goal", 7, 2),  # turn on the stove
    ("libero_10", 5, 0),  # book into the caddy
    ("libero_90", 7, 1),  # open the top drawer
    ("libero_90", 33, 2),  # close the microwave
]


@pytest.mark.slow
@pytest.mark.parametrize("suite, task, strategy", SCRIPTED)
def test_scripted_and_random_episodes_are_bit_identical(suite, task, strategy, request):
    """A scripted demonstrator episode, then random steps from two other init states (480 over
    these tasks): lean and LIBERO's step agree after every step."""
    from generation.demonstrators import collect_episode, demonstrator_for

    owned = (suite, task) != ("libero_object", 0)
    if owned:
        lean, reference = LiberoEnv((suite, task)), LiberoEnv((suite, task), EnvConfig(lean=False))
    else:
        lean, reference = (request.getfixturevalue(f) for f in ("object_env", "object_reference"))
    try:
        pair = Lockstep(lean, reference)
        episode = collect_episode(
            pair, demonstrator_for(lean.task), strategy, init_state_index=strategy, seed=7
        )
        assert episode.success and pair.steps == len(episode)
        _random_episodes(pair, [{"init_state_index": 10}, {"init_state_index": 11}], 40, seed=1)
        assert pair.steps == len(episode) + 80
    finally:
        if owned:
            lean.close()
            reference.close()


@pytest.mark.slow
def test_hard_resets_rebind_the_lean_step(object_reference):
    """A state-only env in faithful mode rebuilds its sim on every reset: the lean step follows."""
    lean = LiberoEnv(("libero_object", 0), EnvConfig(render_mode="faithful"))
    try:
        assert lean.lean
        pair = Lockstep(lean, object_reference)
        _random_episodes(pair, [{"init_state_index": 1}, {"init_state_index": 2}], 25, seed=2)
        assert pair.steps == 50
    finally:
        lean.close()
