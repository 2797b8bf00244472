"""Two :class:`LiberoEnv` stepped in lock-step and compared bit for bit after every step.

This is how lean stepping (``lean.py``) is held to LIBERO's own ``env.step``: the lean env and
a reference env (``EnvConfig(lean=False)``) start from the same init state, take the same
actions, and must agree exactly (``np.array_equal``, not allclose) on the full sim state, the
gripper's carried command, the observations and the success flags after every step.
:class:`Lockstep` passes for the lean env (attributes fall through to it), so a scripted
demonstrator can drive both through ``collect_episode``.
"""

from __future__ import annotations

import numpy as np


class LockstepMismatch(AssertionError):
    pass


def sim_fields(env) -> dict[str, np.ndarray]:
    """What must be equal after every control step: the full sim state, its parts, what carries
    into the next step (controls, the solver's warm start, the gripper's smoothed command) and
    the kinematics that demonstrators and predicates read."""
    d = env.sim.data
    return {
        "sim_state": env.raw.get_sim_state(),
        "qpos": d.qpos,
        "qvel": d.qvel,
        "act": d.act,
        "ctrl": d.ctrl,
        "qacc_warmstart": d.qacc_warmstart,
        "xpos": d.xpos,
        "site_xpos": d.site_xpos,
        "gripper_action": np.asarray(env.raw.robots[0].gripper.current_action),
    }


def first_difference(a: dict, b: dict) -> str | None:
    """The first key whose arrays differ in shape or any bit of value (NaNs equal), or None."""
    for key in a:
        x, y = np.asarray(a[key]), np.asarray(b[key])
        if x.shape != y.shape or not np.array_equal(x, y, equal_nan=True):
            gap = np.abs(x - y).max() if x.shape == y.shape else "shape"
            return f"{key} (max |diff| {gap})"
    return None


class Lockstep:
    """``env`` with ``reference`` stepped alongside; raises :class:`LockstepMismatch` at the
    first step where they differ. ``steps`` counts the compared steps (settling excluded)."""

    def __init__(self, env, reference):
        self.env, self.reference = env, reference
        self.steps = 0

    def __getattr__(self, name):
        return getattr(self.env, name)

    def _check(self, what: str, pairs: list[tuple[dict, dict]]) -> None:
        for a, b in pairs:
            diff = first_difference(a, b)
            if diff is not None:
                raise LockstepMismatch(
                    f"{self.env.task.key}: {what}: {diff} differs (lean={self.env.lean}, "
                    f"reference lean={self.reference.lean})"
                )

    def reset(self, **kwargs) -> tuple[dict, dict]:
        obs, info = self.env.reset(**kwargs)
        ref_obs, ref_info = self.reference.reset(**kwargs)
        self._check(
            "after reset",
            [
                ({"init_state": info["init_state"]}, {"init_state": ref_info["init_state"]}),
                (sim_fields(self.env), sim_fields(self.reference)),
                (obs, ref_obs),
            ],
        )
        return obs, info

    def step(self, action) -> tuple[dict, float, bool, bool, dict]:
        out = self.env.step(action)
        ref = self.reference.step(action)
        flags = {"reward_terminated_truncated": np.array(out[1:4], dtype=float)}
        ref_flags = {"reward_terminated_truncated": np.array(ref[1:4], dtype=float)}
        self._check(
            f"step {self.env.t}",
            [
                (sim_fields(self.env), sim_fields(self.reference)),
                (out[0], ref[0]),
                (flags, ref_flags),
            ],
        )
        self.steps += 1
        return out
