"""Articulated fixtures: turning a stove knob on or off; closing a hinged door (a microwave).

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


class DoorCloser(Demonstrator):
    """Closing a hinged door (LIBERO's microwave): the closed fingers, pointing down, press
    on the door's top edge from the side it must swing to, and follow it round the hinge.

    The palm (~5 cm thick, wider than the fingers) stays above the door's top: the grip site
    sits 1.8 cm below it, so the fingertips press on the top 3 cm of the door.

    0 ``mid_door``   presses at 60% of the door's width from the hinge, straight there.
    1 ``outer_high`` from high above, presses at 80%.
    2 ``inner_side`` swings in from the side, presses at 45%, fingers turned across the door.
    """

    strategy_names = ("mid_door", "outer_high", "inner_side")

    def __init__(self, task, fixture: str, **kw):
        super().__init__(task, **kw)
        self.fixture = fixture

    def achieved(self, env) -> bool:
        return bool(env.raw.env._eval_predicate(["close", self.fixture]))

    def _door(self, env):
        """(hinge anchor xyz, joint position, rotation sign that closes, panel corners)."""
        sim, m = env.sim, env.sim.model
        joint = env.raw.env.get_object(self.fixture).joints[0]
        jid = m.joint_name2id(joint)
        q = float(sim.data.qpos[m.jnt_qposadr[jid]])
        axis_z = float((sim.data.body_xmat[m.jnt_bodyid[jid]].reshape(3, 3) @ m.jnt_axis[jid])[2])
        geoms = geo.collision_geoms(sim, m.jnt_bodyid[jid])
        sizes = [np.prod(np.ptp(geo.geom_corners(sim, [g]), axis=0)) for g in geoms]
        panel = geo.geom_corners(sim, [geoms[int(np.argmax(sizes))]])
        return np.array(sim.data.xanchor[jid]), q, np.sign(-q) * np.sign(axis_z), panel

    def plan(self, env, strategy: int, rng: np.random.Generator) -> Iterator[Waypoint]:
        yield from wait_until_still(env)
        for _ in range(2):
            yield from self._close(env, strategy, rng)
            if self.achieved(env):
                return

    def _close(self, env, strategy, rng) -> Iterator[Waypoint]:
        anchor, q, turn, panel = self._door(env)
        rel = panel[:, :2] - anchor[:2]
        width = float(np.linalg.norm(rel, axis=1).max())
        r = rel.mean(0) / np.linalg.norm(rel.mean(0))  # from the hinge along the door
        frac = {0: 0.6, 1: 0.8, 2: 0.45}[strategy] + rng.normal(0, 0.02)
        thick = 0.5 * float(np.ptp(rel @ np.array([-r[1], r[0]])))
        z = float(panel[:, 2].max()) - 0.018
        # past closed: the frame stops the door, the hand keeps pressing until it is shut (the
        # last 0.1 rad are only 1.5 cm at the hand: with a looser aim it stopped at -0.1 rad)
        sweep = abs(q) + 0.12 + rng.uniform(0, 0.04)

        def at(phi: float, gap: float) -> np.ndarray:
            c, s = np.cos(turn * phi), np.sin(turn * phi)
            u = np.array([c * r[0] - s * r[1], s * r[0] + c * r[1]])  # door direction
            n = turn * np.array([-u[1], u[0]])  # the way the door swings to close
            return np.array([*(anchor[:2] + u * frac * width - n * gap), z])

        yaw = geo.yaw_for_finger_axis(r if strategy == 2 else np.array([-r[1], r[0]]))
        start = at(0.0, thick + 0.03)
        pos, _ = eef_pose(env)
        if strategy == 1:
            up = max(pos[2], z) + 0.15 + rng.uniform(0, 0.03)
            yield Waypoint([*start[:2], up], yaw, CLOSE, tol=0.04, label="high")
        if strategy == 2:
            side = at(-0.35, thick + 0.1) + [0, 0, 0.03]
            yield Waypoint(side, yaw, CLOSE, tol=0.03, max_steps=60, label="side")
        yield Waypoint(start + [0, 0, 0.06], yaw, CLOSE, tol=0.02, label="above_door")
        yield Waypoint(start, yaw, CLOSE, tol=0.01, speed=0.6, noise=0.2, label="beside_door")
        for k in range(1, 7):  # follow the door round its hinge
            phi = sweep * k / 6
            last = k == 6
            yield Waypoint(
                at(phi, thick + 0.008), yaw, CLOSE, tol=0.004 if last else 0.015, speed=0.6,
                noise=0.2, min_steps=6 if last else 0, max_steps=30, yaw_tol=0.2,
                label="swing_shut",
            )  # fmt: skip
        p = np.array(eef_pose(env)[0])
        yield Waypoint(p + [0, 0, 0.08], yaw, CLOSE, tol=0.03, label="retreat")
