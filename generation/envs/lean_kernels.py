"""The element-by-element parts of robosuite 1.4's OSC substep, compiled with numba.

Copies, and products and sums of single elements: IEEE arithmetic gives the same bits whether
numpy or compiled code does them, provided no multiply and add are fused into one rounding
(numba emits no fused multiply-add unless ``fastmath`` is on, which it is not here;
``tests/generation/test_lean_step.py`` checks the machine code). Every matrix product stays a
numpy (BLAS) call in ``lean.py``, as in robosuite: a BLAS kernel's summation order is its own.
Each kernel names the robosuite lines it stands for. Output arrays are preallocated by the
caller with the layouts robosuite's own arrays have (the fancy-indexed Jacobians and mass
matrix are Fortran-ordered), because numba and BLAS take other paths for other layouts.
"""

from __future__ import annotations

import numba

_jit = numba.njit(cache=True)


@_jit
def read_robot_state(
    site_xpos, site_xmat, qpos, qvel, jacp, jacr, full_m, site, qpos_idx, qvel_idx,
    ee_pos, ee_ori_mat, joint_pos, joint_vel, j_pos, j_ori, j_full, mass_matrix,
):  # fmt: skip
    """``Controller.update``'s copies: ``ee_pos``, ``ee_ori_mat`` (C order), ``joint_pos``,
    ``joint_vel``, ``J_pos``/``J_ori``/``J_full`` (``jac[:, qvel_index]``, stacked) and
    ``mass_matrix`` (``full_m[qvel_index, :][:, qvel_index]``)."""
    for r in range(3):
        ee_pos[r] = site_xpos[site, r]
        for c in range(3):
            ee_ori_mat[r, c] = site_xmat[site, 3 * r + c]
    for k in range(qpos_idx.size):
        joint_pos[k] = qpos[qpos_idx[k]]
    n = qvel_idx.size
    for k in range(n):
        col = qvel_idx[k]
        joint_vel[k] = qvel[col]
        for r in range(3):
            j_pos[r, k] = jacp[r, col]
            j_ori[r, k] = jacr[r, col]
            j_full[r, k] = jacp[r, col]
            j_full[3 + r, k] = jacr[r, col]
        for k2 in range(n):
            mass_matrix[k2, k] = full_m[qvel_idx[k2], col]


@_jit
def desired_forces(
    goal_pos, ee_pos, ori_error, ee_pos_vel, ee_ori_vel, kp, kd,
    initial_joint, joint_pos, joint_vel, nullspace_kp, nullspace_kv,
    desired_force, desired_torque, pose_error,
):  # fmt: skip
    """``OperationalSpaceController.run_controller``'s
    ``desired_force = (goal_pos - ee_pos) * kp[0:3] + (-ee_pos_vel) * kd[0:3]``,
    ``desired_torque = ori_error * kp[3:6] + (-ee_ori_vel) * kd[3:6]`` and, in
    ``nullspace_torques``, ``joint_kp * (initial_joint - joint_pos) - joint_kv * joint_vel``."""
    for i in range(3):
        desired_force[i] = (goal_pos[i] - ee_pos[i]) * kp[i] + (-ee_pos_vel[i]) * kd[i]
        desired_torque[i] = ori_error[i] * kp[3 + i] + (-ee_ori_vel[i]) * kd[3 + i]
    for k in range(pose_error.size):
        pose_error[k] = (
            nullspace_kp * (initial_joint[k] - joint_pos[k]) - nullspace_kv * joint_vel[k]
        )


@_jit
def apply_controls(
    jt_wrench, qfrc_bias, qvel_idx, nullspace, low, high, arm_ids,
    grip_action, grip_delta, grip_bias, grip_weight, grip_ids, torques, clipped, ctrl,
):  # fmt: skip
    """``torques = J_full.T @ wrench + torque_compensation``, ``torques += nullspace torques``
    (run_controller), ``np.clip(torques, *torque_limits)`` into the arm's controls
    (``Robot.control``), then ``PandaGripper.format_action``'s
    ``clip(current_action + delta, -1, 1)`` and ``grip_action``'s ``bias + weight * action``
    into the gripper's. Clipping by comparisons keeps NaN as ``np.clip`` does."""
    for k in range(torques.size):
        t = (jt_wrench[k] + qfrc_bias[qvel_idx[k]]) + nullspace[k]
        torques[k] = t
        if t < low[k]:
            t = low[k]
        elif t > high[k]:
            t = high[k]
        clipped[k] = t
        ctrl[arm_ids[k]] = t
    for g in range(grip_action.size):
        c = grip_action[g] + grip_delta[g]
        if c < -1.0:
            c = -1.0
        elif c > 1.0:
            c = 1.0
        grip_action[g] = c
        ctrl[grip_ids[g]] = grip_bias[g] + grip_weight[g] * c


@_jit
def any_contact(geom_pairs, in_1, in_2):
    """robosuite's ``check_contact`` loop over ``(geom1, geom2)`` of every contact, with its
    name tests as lookups in boolean masks over geom ids (``in_2`` all true: any geom)."""
    for k in range(geom_pairs.shape[0]):
        g1, g2 = geom_pairs[k, 0], geom_pairs[k, 1]
        if (in_1[g1] and in_2[g2]) or (in_2[g1] and in_1[g2]):
            return True
    return False
