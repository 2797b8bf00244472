"""Articulated fixtures: turning a stove knob on or off.

The knob (``<stove>_button``) is a hinge about the vertical with a raised fin across it; the
stove counts as on once the hinge is past +0.5 rad (counter-clockwise from above) and off
below 0. Three contact strategies, visibly different at the hand:

0 ``centre_twist``  straight down onto the fin's middle, pinch, turn the wrist.
1 ``far_end_arc``   over the top from high up, pinch the fin's far end, turn: the hand swings
                    round the hinge on an arc.
2 ``side_near_end`` come in low from the right, pinch the near end, turn (an arc the other way
                    round relative to the hinge).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from generation.demonstrators import geometry as geo
from generation.demonstrators.collect import Demonstrator, eef_pose
from generation.demonstrators.controller import CLOSE, OPEN, Waypoint
from generation.demonstrators.pick_place import wait_until_still

ON_ANGLE, TARGET_SWEEP = 0.5, 1.0


class StoveKnob(Demonstrator):
    strategy_names = ("centre_twist", "far_end_arc", "side_near_end")

    def __init__(self, task, fixture: str, turn_on: bool, **kw):
        super().__init__(task, **kw)
        self.fixture, self.turn_on = fixture, turn_on

    def _knob(self, env):
        """(hinge centre xyz, hinge angle, fin geoms' corners)."""
        sim = env.sim
        joint = env.raw.env.get_object(self.fixture).joints[0]
        jid = sim.model.joint_name2id(joint)
        body = sim.model.jnt_bodyid[jid]
        angle = float(sim.data.qpos[sim.model.jnt_qposadr[jid]])
        geoms = geo.collision_geoms(sim, body)
        tops = [geo.geom_corners(sim, [g])[:, 2].max() for g in geoms]
        fin = geo.geom_corners(sim, [geoms[int(np.argmax(tops))]])
        return np.array(sim.data.body_xpos[body]), angle, fin

    def plan(self, env, strategy: int, rng: np.random.Generator) -> Iterator[Waypoint]:
        yield from wait_until_still(env)
        centre, angle, fin = self._knob(env)
        sign = 1.0 if self.turn_on else -1.0  # direction of rotation about +z
        xy = fin[:, :2] - centre[:2]
        _, _, vt = np.linalg.svd(xy - xy.mean(0), full_matrices=False)
        axis = vt[0] / np.linalg.norm(vt[0])  # fin's long direction through the hinge
        if axis[0] > 0:
            axis = -axis  # towards the robot (-x)
        fin_top = float(fin[:, 2].max())
        sweep = sign * (TARGET_SWEEP + rng.uniform(-0.1, 0.2))
        yaw0 = geo.yaw_for_finger_axis(np.array([-axis[1], axis[0]]))
        # where along the fin the fingers pinch: centre, far end or near end
        offset = {0: 0.0, 1: -0.018, 2: 0.018}[strategy] + rng.normal(0, 0.002)
        z = fin_top - 0.018
        pos, _ = eef_pose(env)
        if strategy == 1:  # lift up high first, drop onto the knob from above the far side
            yield Waypoint(
                [*(centre[:2] - axis * 0.12), fin_top + 0.2], yaw0, OPEN, tol=0.04, label="high"
            )
        if strategy == 2:  # come in low from the robot's right
            yield Waypoint(
                [*(centre[:2] + axis * offset + [0.0, -0.14]), fin_top + 0.03],
                yaw0,
                OPEN,
                tol=0.03,
                label="side",
            )
        grasp = np.array([*(centre[:2] + axis * offset), z])
        yield Waypoint(grasp + [0, 0, 0.06], yaw0, OPEN, tol=0.015, label="above_knob")
        yield Waypoint(
            grasp, yaw0, OPEN, tol=0.007, speed=0.4, noise=0.2, max_steps=40, label="descend"
        )
        yield Waypoint(
            grasp, yaw0, CLOSE, tol=1.0, noise=0.0, min_steps=10, max_steps=10, label="pinch"
        )
        for k in range(1, 5):  # turn the wrist; an off-centre pinch also swings the hand round
            a = sweep * k / 4
            c, s_ = np.cos(a), np.sin(a)
            d = axis * offset
            p = centre[:2] + np.array([c * d[0] - s_ * d[1], s_ * d[0] + c * d[1]])
            yield Waypoint(
                [*p, z],
                yaw0 + a,
                CLOSE,
                tol=0.015,
                noise=0.2,
                max_steps=25,
                yaw_tol=0.1,
                label="twist",
            )
        p = np.array(eef_pose(env)[0])
        yield Waypoint(
            p, yaw0 + sweep, OPEN, tol=1.0, noise=0.0, min_steps=6, max_steps=6, label="let_go"
        )
        yield Waypoint(p + [0, 0, 0.1], yaw0 + sweep, OPEN, tol=0.02, label="retreat")
