"""Lean stepping: LIBERO's control step for state-only envs, the same arithmetic without the
per-substep work that does not change the state.

One LIBERO control step (robosuite 1.4 ``MujocoEnv.step``) runs 25 physics substeps, each
``mj_forward``, ``Robot.control`` (OSC goal on the first substep, then the OSC torques, whose
``Controller.update`` runs a second ``mj_forward``), ``mj_step`` (a third forward, then the
integrator) and the update of every observable (37 on LIBERO-Object). :class:`LeanStepper`
runs per substep ``mj_step1`` (position and velocity stages: everything the controller reads),
the controller's state read with cached ids, robosuite's own ``set_goal``/``run_controller``
and gripper arithmetic, ``mj_step2`` (actuation, acceleration, constraints, integrator), and
the update of the three observables the policy reads. The sim state, the gripper's carried
command, the observation and the predicates come out bit-identical to LIBERO's step
(``tests/generation/test_lean_step.py``; what it mirrors and pins: ``docs/lean_stepping.md``).
What it leaves out changes no state: the other observables, and the robot's history buffers
(``recent_qpos``, ``recent_ee_*``) that robosuite fills on policy steps and nothing reads here.
"""

from __future__ import annotations

import mujoco
import numpy as np
from robosuite.models.base import MujocoModel
from robosuite.utils.control_utils import opspace_matrices, orientation_error

# control_utils.nullspace_torques' default gains (joint_kp=10, critically damped)
NULLSPACE_KP = 10
NULLSPACE_KV = np.sqrt(10) * 2

# robosuite observables that LiberoEnv reads for the policy's proprio vector
PROPRIO_OBSERVABLES = ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos")


def lean_unsupported(env) -> str | None:
    """Why the robosuite env ``env`` cannot be stepped lean, or None when it can.

    The lean step mirrors one configuration: one single-arm robot, robosuite's OSC with fixed
    impedance and no interpolator, a one-dof Panda gripper, a non-RK4 integrator (``mj_step2``
    integrates RK4 as Euler), no control callback and no viewer. Anything else: LIBERO's step.
    """
    from robosuite.controllers.osc import OperationalSpaceController
    from robosuite.models.grippers.panda_gripper import PandaGripper
    from robosuite.robots.single_arm import SingleArm

    if len(env.robots) != 1 or type(env.robots[0]) is not SingleArm:
        return f"robots {[type(r).__name__ for r in env.robots]} (one SingleArm supported)"
    robot = env.robots[0]
    ctrl = robot.controller
    if type(ctrl) is not OperationalSpaceController:
        return f"controller {type(ctrl).__name__} (OSC supported)"
    if ctrl.impedance_mode != "fixed" or ctrl.interpolator_pos or ctrl.interpolator_ori:
        return "OSC with variable impedance or an interpolator"
    if not robot.has_gripper or type(robot.gripper) is not PandaGripper:
        return f"gripper {type(robot.gripper).__name__} (PandaGripper supported)"
    if env.sim.model.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4:
        return "RK4 integrator (mj_step2 would integrate it as Euler)"
    if mujoco.get_mjcb_control() is not None:
        return "a MuJoCo control callback is installed (mj_forward and mj_step1 call it)"
    if env.viewer is not None:
        return "an on-screen viewer"
    missing = [name for name in PROPRIO_OBSERVABLES if name not in env._observables]
    if missing:
        return f"observables {missing} missing"
    return None


class LeanStepper:
    """Steps one robosuite/LIBERO env (``ControlEnv.env``) like its ``step``, leaner.

    Ids, index arrays and limits are looked up once per controller (robosuite builds a new
    controller on every reset, and a new sim on hard resets).
    """

    def __init__(self, env):
        reason = lean_unsupported(env)
        if reason is not None:
            raise ValueError(f"lean stepping does not support this env: {reason}")
        self.env = env
        self._controller = None

    def _bind(self) -> None:
        env = self.env
        robot = env.robots[0]
        ctrl, sim = robot.controller, env.sim
        model = sim.model
        self._controller = ctrl
        self._m, self._d = model._model, sim.data._data
        self._site = model.site_name2id(ctrl.eef_name)
        qpos_index, qvel_index = np.asarray(ctrl.qpos_index), np.asarray(ctrl.qvel_index)
        self._qpos_index, self._qvel_index = _as_slice(qpos_index), _as_slice(qvel_index)
        self._index = qvel_index  # fancy indexing, as robosuite does: see _read_robot_state
        nv = model.nv
        self._jacp, self._jacr = np.zeros((3, nv)), np.zeros((3, nv))
        self._full_m = np.zeros((nv, nv))
        self._kp, self._kd = np.array(ctrl.kp), np.array(ctrl.kd)
        self._arm_ids = _as_slice(np.asarray(robot._ref_joint_actuator_indexes))
        self._torque_low, self._torque_high = (np.array(x) for x in robot.torque_limits)
        gripper = robot.gripper
        self._grip_ids = [model.actuator_name2id(a) for a in gripper.actuators]
        ctrl_range = model.actuator_ctrlrange[self._grip_ids]
        self._grip_bias = (0.5 * (ctrl_range[:, 1] + ctrl_range[:, 0])).tolist()
        self._grip_weight = (0.5 * (ctrl_range[:, 1] - ctrl_range[:, 0])).tolist()
        self._substeps = int(env.control_timestep / env.model_timestep)

    def _read_robot_state(self) -> None:
        """``Controller.update`` without its ``mj_forward`` (``mj_step1`` just ran the stages it
        reads: kinematics, com, inertia, bias forces) and with ids looked up once. Every array
        is built by the same numpy calls: BLAS and numba results depend on memory layout (the
        fancy-indexed Jacobians and mass matrix are Fortran-ordered), so values alone are not
        enough for bit-identical torques."""
        ctrl, d, jacp, jacr, index = self._controller, self._d, self._jacp, self._jacr, self._index
        ctrl.ee_pos = np.array(d.site_xpos[self._site])
        ctrl.ee_ori_mat = np.array(d.site_xmat[self._site].reshape([3, 3]))
        mujoco.mj_jacSite(self._m, d, jacp, jacr, self._site)
        ctrl.ee_pos_vel = np.dot(jacp, d.qvel)
        ctrl.ee_ori_vel = np.dot(jacr, d.qvel)
        ctrl.joint_pos = d.qpos[self._qpos_index].copy()
        ctrl.joint_vel = d.qvel[self._qvel_index].copy()
        ctrl.J_pos = np.array(jacp[:, index])
        ctrl.J_ori = np.array(jacr[:, index])
        ctrl.J_full = np.array(np.vstack([ctrl.J_pos, ctrl.J_ori]))
        mujoco.mj_fullM(self._m, d, self._full_m)
        ctrl.mass_matrix = self._full_m[index, :][:, index]

    def _osc_torques(self) -> np.ndarray:
        """robosuite 1.4 ``OperationalSpaceController.run_controller`` (fixed impedance, no
        interpolator), operation for operation, without its copies and property look-ups."""
        ctrl = self._controller
        ori_error = orientation_error(ctrl.goal_ori, ctrl.ee_ori_mat)
        position_error = ctrl.goal_pos - ctrl.ee_pos
        kp, kd = self._kp, self._kd
        desired_force = position_error * kp[0:3] + (-ctrl.ee_pos_vel) * kd[0:3]
        desired_torque = ori_error * kp[3:6] + (-ctrl.ee_ori_vel) * kd[3:6]
        mass, j_full = ctrl.mass_matrix, ctrl.J_full
        lambda_full, lambda_pos, lambda_ori, nullspace_matrix = opspace_matrices(
            mass, j_full, ctrl.J_pos, ctrl.J_ori
        )
        if ctrl.uncoupling:
            decoupled_wrench = np.concatenate(
                [np.dot(lambda_pos, desired_force), np.dot(lambda_ori, desired_torque)]
            )
        else:
            decoupled_wrench = np.dot(lambda_full, np.concatenate([desired_force, desired_torque]))
        torques = np.dot(j_full.T, decoupled_wrench) + self._d.qfrc_bias[self._qvel_index]
        # control_utils.nullspace_torques with its default gain
        pose_torques = np.dot(
            mass,
            NULLSPACE_KP * (ctrl.initial_joint - ctrl.joint_pos) - NULLSPACE_KV * ctrl.joint_vel,
        )
        torques += np.dot(nullspace_matrix.transpose(), pose_torques)
        ctrl.torques = torques
        return torques

    def step(self, action: np.ndarray) -> dict[str, np.ndarray]:
        """One control step with ``action`` (7,); returns the proprio observations LIBERO's
        step would return (``PROPRIO_OBSERVABLES``)."""
        env = self.env
        if env.done:
            raise ValueError("executing action in terminated episode")
        robot = env.robots[0]
        if robot.controller is not self._controller or env.sim.data._data is not self._d:
            self._bind()
        ctrl, gripper, m, d = self._controller, robot.gripper, self._m, self._d
        env.timestep += 1
        # PandaGripper.format_action's increment, the same on every substep of a control step
        grip_delta = np.array([-1.0, 1.0]) * gripper.speed * np.sign(action[ctrl.control_dim :])
        # a soft reset may leave a (1,) command, which broadcasts as in format_action
        c0, c1 = np.broadcast_to(gripper.current_action, grip_delta.shape).tolist()
        d0, d1 = grip_delta.tolist()
        (g0, g1), (b0, b1), (w0, w1) = self._grip_ids, self._grip_bias, self._grip_weight
        low, high, arm_ids = self._torque_low, self._torque_high, self._arm_ids
        observables = [env._observables[name] for name in PROPRIO_OBSERVABLES]
        dt = env.model_timestep
        for i in range(self._substeps):
            mujoco.mj_step1(m, d)
            # Controller.update's guard: the first substep after a reset keeps what the new
            # controller read when it was built (before the init state was set), as in LIBERO
            if ctrl.new_update:
                self._read_robot_state()
                ctrl.new_update = False  # set_goal's update() would run mj_forward again
            if i == 0:
                ctrl.set_goal(action[: ctrl.control_dim])
            torques = np.minimum(np.maximum(self._osc_torques(), low), high)  # np.clip's values
            ctrl.new_update = True
            c0, c1 = min(max(c0 + d0, -1.0), 1.0), min(max(c1 + d1, -1.0), 1.0)
            d.ctrl[g0], d.ctrl[g1] = b0 + w0 * c0, b1 + w1 * c1
            d.ctrl[arm_ids] = torques
            mujoco.mj_step2(m, d)
            for observable in observables:
                observable.update(timestep=dt, obs_cache=env._obs_cache)
        robot.torques = torques
        gripper.current_action = np.array([c0, c1])
        env.cur_time += env.control_timestep
        env._post_process()  # LIBERO's per-step object-state update (stove burners)
        return {ob.name: ob.obs for ob in observables}


def _as_slice(index: np.ndarray) -> slice | np.ndarray:
    """A contiguous index array as a slice (a view, no gather), anything else unchanged."""
    if index.size and np.array_equal(index, np.arange(index[0], index[0] + index.size)):
        return slice(int(index[0]), int(index[0]) + index.size)
    return index


class ContactCheck:
    """robosuite's ``MujocoEnv.check_contact``, the same boolean from masks over geom ids.

    robosuite looks up the names of both geoms of every contact and searches the groups' name
    lists for them, on every call (LIBERO's ``In``/``On`` predicates call it on every step). Here
    each group becomes, once per model, a mask over geom ids holding robosuite's own test
    (``geom_id2name(id) in names``), and a call indexes the masks with the contact list.
    """

    def __init__(self, env):
        self.env = env
        self._model = None
        self._masks: dict[object, tuple[object, np.ndarray]] = {}

    def _mask(self, geoms, model) -> np.ndarray:
        if isinstance(geoms, MujocoModel):  # LIBERO's predicates pass the object models
            key, names = id(geoms), None
        else:
            names = [geoms] if type(geoms) is str else list(geoms)
            key = tuple(names)
        hit = self._masks.get(key)
        if hit is not None and (names is not None or hit[0] is geoms):
            return hit[1]
        if names is None:
            names = geoms.contact_geoms
        mask = np.array([model.geom_id2name(i) in names for i in range(model.ngeom)], dtype=bool)
        self._masks[key] = (geoms, mask)  # holding a model keeps its id from being reused
        return mask

    def __call__(self, geoms_1, geoms_2=None) -> bool:
        sim = self.env.sim
        model = sim.model
        if model is not self._model:
            self._model, self._masks = model, {}
        d = sim.data._data
        ncon = d.ncon
        if ncon == 0:
            return False
        contact = d.contact
        geom1, geom2 = contact.geom1[:ncon], contact.geom2[:ncon]
        in_1 = self._mask(geoms_1, model)
        if geoms_2 is None:
            return bool((in_1[geom1] | in_1[geom2]).any())
        in_2 = self._mask(geoms_2, model)
        return bool(((in_1[geom1] & in_2[geom2]) | (in_2[geom1] & in_1[geom2])).any())
