"""Lean stepping: LIBERO's control step for state-only envs, the same arithmetic without the
per-substep work that does not change the state.

One LIBERO control step (robosuite 1.4 ``MujocoEnv.step``) runs 25 physics substeps, each
``mj_forward``, ``Robot.control`` (OSC goal on the first substep, then the OSC torques, whose
``Controller.update`` runs a second ``mj_forward``), ``mj_step`` (a third forward, then the
integrator) and the update of every observable (37 on LIBERO-Object). :class:`LeanStepper`
runs per substep ``mj_step1`` (position and velocity stages: everything the controller reads),
the controller's state read with ids looked up once, robosuite's ``set_goal`` and the OSC and
gripper arithmetic operation for operation (products as numpy calls, element-wise parts in
``lean_kernels.py``), ``mj_step2`` (actuation, acceleration, constraints, integrator), and the
update of the three observables the policy reads. The sim state, the gripper's carried command,
the observations and the predicates come out bit-identical to LIBERO's step
(``tests/generation/test_lean_step.py``; how, and what it mirrors: ``docs/lean_stepping.md``).
What it leaves out changes no state: the other observables, and the robot's history buffers
(``recent_qpos``, ``recent_ee_*``) that robosuite fills on policy steps and nothing reads.
"""

from __future__ import annotations

import mujoco
import numpy as np
from robosuite.models.base import MujocoModel
from robosuite.utils.control_utils import opspace_matrices, orientation_error

from generation.envs.lean_kernels import (
    any_contact,
    apply_controls,
    desired_forces,
    read_robot_state,
)

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
        ctrl, sim, gripper = robot.controller, env.sim, robot.gripper
        model, data = sim.model, sim.data._data
        self._controller, self._m, self._d = ctrl, model._model, data
        # MjData's arrays as numpy views, taken once (each attribute access builds a new view)
        self._site_xpos, self._site_xmat = data.site_xpos, data.site_xmat
        self._qpos, self._qvel = data.qpos, data.qvel
        self._qfrc_bias, self._ctrl = data.qfrc_bias, data.ctrl
        self._site = model.site_name2id(ctrl.eef_name)
        self._qpos_idx = np.asarray(ctrl.qpos_index, dtype=np.intp)
        self._qvel_idx = np.asarray(ctrl.qvel_index, dtype=np.intp)
        n, nv = self._qvel_idx.size, model.nv
        self._jacp, self._jacr = np.zeros((3, nv)), np.zeros((3, nv))
        self._full_m = np.zeros((nv, nv))
        # the controller's state, in the layouts Controller.update gives it (lean_kernels.py)
        self._ee_pos, self._ee_ori_mat = np.zeros(3), np.zeros((3, 3))
        self._joint_pos, self._joint_vel = np.zeros(self._qpos_idx.size), np.zeros(n)
        self._j_pos, self._j_ori = np.zeros((3, n), order="F"), np.zeros((3, n), order="F")
        self._j_full, self._mass = np.zeros((6, n), order="F"), np.zeros((n, n), order="F")
        self._force, self._torque, self._pose_error = np.zeros(3), np.zeros(3), np.zeros(n)
        self._torques, self._clipped = np.zeros(n), np.zeros(n)
        self._arm_ids = np.asarray(robot._ref_joint_actuator_indexes, dtype=np.intp)
        low, high = robot.torque_limits
        self._torque_low, self._torque_high = np.array(low, float), np.array(high, float)
        self._grip_ids = np.array([model.actuator_name2id(a) for a in gripper.actuators])
        ctrl_range = model.actuator_ctrlrange[self._grip_ids]
        self._grip_bias = 0.5 * (ctrl_range[:, 1] + ctrl_range[:, 0])
        self._grip_weight = 0.5 * (ctrl_range[:, 1] - ctrl_range[:, 0])
        self._substeps = int(env.control_timestep / env.model_timestep)

    def _read_robot_state(self) -> None:
        """``Controller.update`` without its ``mj_forward`` (``mj_step1`` just ran the stages it
        reads: kinematics, com, inertia, bias forces), ids looked up once, into the same
        layouts."""
        ctrl, d, jacp, jacr = self._controller, self._d, self._jacp, self._jacr
        mujoco.mj_jacSite(self._m, d, jacp, jacr, self._site)
        mujoco.mj_fullM(self._m, d, self._full_m)
        read_robot_state(
            self._site_xpos, self._site_xmat, self._qpos, self._qvel, jacp, jacr, self._full_m,
            self._site, self._qpos_idx, self._qvel_idx, self._ee_pos, self._ee_ori_mat,
            self._joint_pos, self._joint_vel, self._j_pos, self._j_ori, self._j_full, self._mass,
        )  # fmt: skip
        ctrl.ee_pos, ctrl.ee_ori_mat = self._ee_pos, self._ee_ori_mat
        ctrl.ee_pos_vel, ctrl.ee_ori_vel = np.dot(jacp, self._qvel), np.dot(jacr, self._qvel)
        ctrl.joint_pos, ctrl.joint_vel = self._joint_pos, self._joint_vel
        ctrl.J_pos, ctrl.J_ori, ctrl.J_full = self._j_pos, self._j_ori, self._j_full
        ctrl.mass_matrix = self._mass

    def _osc_substep(self, grip_action: np.ndarray, grip_delta: np.ndarray) -> None:
        """robosuite 1.4 ``OperationalSpaceController.run_controller`` (fixed impedance, no
        interpolator) and the rest of ``Robot.control``, into ``ctrl``: the same products
        (numpy/BLAS), the same numba functions, the element-wise parts in lean_kernels.py."""
        ctrl = self._controller
        ori_error = orientation_error(ctrl.goal_ori, ctrl.ee_ori_mat)
        force, torque, pose_error = self._force, self._torque, self._pose_error
        desired_forces(
            ctrl.goal_pos, ctrl.ee_pos, ori_error, ctrl.ee_pos_vel, ctrl.ee_ori_vel, ctrl.kp,
            ctrl.kd, ctrl.initial_joint, ctrl.joint_pos, ctrl.joint_vel, NULLSPACE_KP,
            NULLSPACE_KV, force, torque, pose_error,
        )  # fmt: skip
        mass = ctrl.mass_matrix
        lambda_full, lambda_pos, lambda_ori, nullspace_matrix = opspace_matrices(
            mass, ctrl.J_full, ctrl.J_pos, ctrl.J_ori
        )
        if ctrl.uncoupling:
            wrench = np.concatenate([np.dot(lambda_pos, force), np.dot(lambda_ori, torque)])
        else:
            wrench = np.dot(lambda_full, np.concatenate([force, torque]))
        nullspace = np.dot(nullspace_matrix.transpose(), np.dot(mass, pose_error))
        apply_controls(
            np.dot(ctrl.J_full.T, wrench), self._qfrc_bias, self._qvel_idx, nullspace,
            self._torque_low, self._torque_high, self._arm_ids, grip_action, grip_delta,
            self._grip_bias, self._grip_weight, self._grip_ids, self._torques, self._clipped,
            self._ctrl,
        )  # fmt: skip

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
        grip_action = np.array(np.broadcast_to(gripper.current_action, grip_delta.shape))
        observables = [env._observables[name] for name in PROPRIO_OBSERVABLES]
        dt, cache = env.model_timestep, env._obs_cache
        for i in range(self._substeps):
            mujoco.mj_step1(m, d)
            # Controller.update's guard: the first substep after a reset keeps what the new
            # controller read when it was built (before the init state was set), as in LIBERO
            if ctrl.new_update:
                self._read_robot_state()
                ctrl.new_update = False  # set_goal's update() would run mj_forward again
            if i == 0:
                ctrl.set_goal(action[: ctrl.control_dim])
            self._osc_substep(grip_action, grip_delta)
            ctrl.new_update = True
            mujoco.mj_step2(m, d)
            for observable in observables:
                observable.update(timestep=dt, obs_cache=cache)
        ctrl.torques, robot.torques = self._torques.copy(), self._clipped.copy()
        gripper.current_action = grip_action
        env.cur_time += env.control_timestep
        env._post_process()  # LIBERO's per-step object-state update (stove burners)
        return {ob.name: ob.obs for ob in observables}


class ContactCheck:
    """robosuite's ``MujocoEnv.check_contact``, the same boolean from masks over geom ids.

    robosuite looks up the names of both geoms of every contact and searches the groups' name
    lists for them, on every call (LIBERO's ``In``/``On`` predicates call it on every step). Here
    each group becomes, once per model, a mask over geom ids holding robosuite's own test
    (``geom_id2name(id) in names``), and a compiled loop over the contacts looks them up.
    """

    def __init__(self, env):
        self.env = env
        self._model = None
        self._masks: dict[object, tuple[object, np.ndarray]] = {}
        self._anything = np.ones(0, dtype=bool)

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
            self._anything = np.ones(model.ngeom, dtype=bool)  # geoms_2=None: any geom
        d = sim.data._data
        if d.ncon == 0:
            return False
        in_2 = self._anything if geoms_2 is None else self._mask(geoms_2, model)
        return any_contact(d.contact.geom, self._mask(geoms_1, model), in_2)
