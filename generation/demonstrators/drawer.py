"""Drawers: opening one by its handle, closing one by pushing its handle.

A LIBERO cabinet drawer is a slide joint (``<cabinet>_<level>_level``) that opens towards
negative joint positions: open below -0.14, closed above 0 (``WoodenCabinet.is_open`` and
friends). Its handle is a bar on two short posts, ~1.6 cm in front of the drawer's face; the
drawer body's collision geom farthest along the opening direction is the bar.

Opening: the hand turns to point into the cabinet, fingers closing vertically round the bar
(a downward hand would have to fit a fingertip into the 1.6 cm behind it), and pulls.
Closing: the closed fingers, pointing down and leaning in, push the bar in. A bottom drawer's
bar is 4.6 cm above the table: too low for the turned hand, whose palm spans 21 cm along the
fingers, so bottom drawers are only closed, not opened.

Three strategies, visibly different at the hand:

0 ``straight``  straight to the bar's middle, low.
1 ``over_top``  up high first, drops in front of the bar's far end.
2 ``from_side`` swings in from the robot's side of the drawer, to the bar's near end.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from generation.demonstrators import geometry as geo
from generation.demonstrators.collect import Demonstrator, eef_pose
from generation.demonstrators.controller import CLOSE, OPEN, Waypoint
from generation.demonstrators.pick_place import wait_until_still

OPEN_BELOW, CLOSED_ABOVE = -0.14, 0.0  # LIBERO's cabinets: default open / close ranges
PUSH_LEAN = 0.8  # rad


class Handle(NamedTuple):
    centre: np.ndarray  # the bar's centre
    out: np.ndarray  # horizontal unit vector: the way the drawer opens
    along: np.ndarray  # horizontal unit vector along the bar, towards the robot
    half_length: float  # half the bar's length
    depth: float  # half the bar's thickness along ``out``
    qpos: float  # the slide joint's position now


def slide_joint(env, region: str) -> str | None:
    """The slide joint that opens ``region`` (a drawer), or None if it is not a drawer."""
    site = env.raw.env.object_sites_dict.get(region)
    joints = getattr(site, "joints", None) or []
    for j in joints:
        if env.sim.model.jnt_type[env.sim.model.joint_name2id(j)] == 2:  # mjJNT_SLIDE
            return j
    return None


def handle(env, joint: str) -> Handle:
    sim, m = env.sim, env.sim.model
    jid = m.joint_name2id(joint)
    body = m.jnt_bodyid[jid]
    axis = sim.data.body_xmat[body].reshape(3, 3) @ m.jnt_axis[jid]
    out = -axis[:2] / np.linalg.norm(axis[:2])  # negative joint positions open the drawer
    geoms = geo.collision_geoms(sim, body)
    centres = [geo.geom_corners(sim, [g]).mean(0) for g in geoms]
    bar = geoms[int(np.argmax([c[:2] @ out for c in centres]))]
    pts = geo.geom_corners(sim, [bar])
    along = np.array([-out[1], out[0]])
    base = sim.data.body_xpos[m.body_name2id("robot0_base")][:2]
    if along @ (base - pts.mean(0)[:2]) < 0:
        along = -along  # towards the robot: the far side is at the edge of its reach
    span = pts[:, :2] @ along
    depth = pts[:, :2] @ out
    return Handle(
        centre=pts.mean(0),
        out=out,
        along=along,
        half_length=0.5 * float(span.max() - span.min()),
        depth=0.5 * float(depth.max() - depth.min()),
        qpos=float(sim.data.qpos[m.jnt_qposadr[jid]]),
    )


def opening_travel(h: Handle) -> float:
    """How far (m, along ``h.out``) opening moves the drawer: to 1.5 cm past LIBERO's open."""
    return h.qpos - OPEN_BELOW + 0.015


def _pointing(out: np.ndarray) -> tuple[float, np.ndarray]:
    """(yaw, tilt) of a hand pointing horizontally along ``-out`` (into the cabinet) with its
    fingers closing vertically: the fingers are first laid along ``out`` pointing down, then
    the hand is turned 90 degrees about the horizontal axis across ``out``."""
    yaw = geo.yaw_for_finger_axis(out)
    axis = np.array([-out[1], out[0], 0.0])  # (-z) x (-out): turns the approach -z into -out
    return yaw, axis * (np.pi / 2)


class Drawer(Demonstrator):
    strategy_names = ("straight", "over_top", "from_side")

    def __init__(self, task, region: str, to_open: bool, **kw):
        super().__init__(task, **kw)
        self.region, self.to_open = region, to_open

    def achieved(self, env) -> bool:
        pred = ["open" if self.to_open else "close", self.region]
        return bool(env.raw.env._eval_predicate(pred))

    def plan(self, env, strategy: int, rng: np.random.Generator) -> Iterator[Waypoint]:
        yield from wait_until_still(env)
        joint = slide_joint(env, self.region)
        if joint is None:
            raise ValueError(f"{self.task.key}: {self.region!r} is not a drawer")
        for _ in range(2):  # a slipped pinch or push: look again and go again
            h = handle(env, joint)
            yield from (self._pull if self.to_open else self._push)(env, h, strategy, rng)
            if self.achieved(env):
                return

    def _approach(self, env, h, strategy, rng, at, yaw, tilt, grip) -> Iterator[Waypoint]:
        """The strategy's way to ``at`` - 8 cm out in front of it."""
        front = at + np.array([*(h.out * 0.08), 0.0])
        pos, _ = eef_pose(env)
        if strategy == 1:
            up = max(pos[2], at[2]) + 0.18 + rng.uniform(0, 0.03)
            yield Waypoint([*pos[:2], up], yaw, grip, tol=0.04, label="rise")
            yield Waypoint([*front[:2], up], yaw, grip, tilt=tilt, tol=0.04, label="over")
        elif strategy == 2:
            side = front + np.array([*(h.along * 0.12 + h.out * 0.05), 0.02])
            yield Waypoint(side, yaw, grip, tilt=tilt, tol=0.03, max_steps=60, label="side")
        yield Waypoint(front, yaw, grip, tilt=tilt, tol=0.015, max_steps=70, label="front")

    def _point_on_bar(self, h: Handle, strategy: int, rng) -> np.ndarray:
        shift = {0: 0.0, 1: -0.5, 2: 0.5}[strategy] * h.half_length + rng.normal(0, 0.004)
        return h.centre + np.array([*(h.along * shift), 0.0])

    def _pull(self, env, h: Handle, strategy, rng) -> Iterator[Waypoint]:
        yaw, tilt = _pointing(h.out)
        at = self._point_on_bar(h, strategy, rng)
        yield from self._approach(env, h, strategy, rng, at, yaw, tilt, OPEN)
        out = np.array([*h.out, 0.0])
        grip = at - out * 0.004  # the fingers reach past the bar into the gap behind it
        yield Waypoint(grip, yaw, OPEN, tilt=tilt, tol=0.008, speed=0.5, noise=0.2, label="reach")
        yield Waypoint(
            grip, yaw, CLOSE, tilt=tilt, tol=1.0, noise=0.0, min_steps=10, max_steps=10,
            label="pinch",
        )  # fmt: skip
        end = grip + out * opening_travel(h)
        yield Waypoint(end, yaw, CLOSE, tilt=tilt, tol=0.01, speed=0.5, noise=0.3, label="pull")
        yield Waypoint(
            end, yaw, OPEN, tilt=tilt, tol=1.0, noise=0.0, min_steps=6, max_steps=6,
            label="let_go",
        )  # fmt: skip
        yield Waypoint(end + out * 0.08, yaw, OPEN, tilt=tilt, tol=0.03, label="retreat")

    def _push(self, env, h: Handle, strategy, rng) -> Iterator[Waypoint]:
        # fingers side by side across the way the drawer moves (the palm, 21 cm along the
        # finger axis, would hit the drawer above if it lay along it), leaning in by PUSH_LEAN:
        # the palm, thicker than the fingers, stays out of the way of the handle of the
        # drawer above (KITCHEN_SCENE4 close the bottom drawer: 0/30 upright, the push stopped
        # 4 cm short; 30/30 leaning, init states 0-9 x 3 strategies)
        yaw = geo.yaw_for_finger_axis(h.along)
        at = self._point_on_bar(h, strategy, rng)
        at = at + np.array([*(h.out * (h.depth + 0.012)), 0.012])  # fingertips at the bar
        tilt = np.array([-h.out[1], h.out[0], 0.0]) * PUSH_LEAN  # fingertips towards the drawer
        yield from self._approach(env, h, strategy, rng, at, yaw, tilt, CLOSE)
        out = np.array([*h.out, 0.0])
        yield Waypoint(at, yaw, CLOSE, tilt=tilt, tol=0.01, speed=0.6, noise=0.2, label="touch")
        push = h.qpos - CLOSED_ABOVE - 0.006  # the joint's way to closed, <0: against out
        end = at + out * push
        yield Waypoint(end, yaw, CLOSE, tilt=tilt, tol=0.008, speed=0.6, noise=0.2, label="push")
        yield Waypoint(
            end + out * 0.08 + [0, 0, 0.04], yaw, CLOSE, tilt=tilt, tol=0.03, label="retreat"
        )
