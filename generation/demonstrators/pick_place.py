"""Goal-driven pick-and-place: ``(in obj region)`` and ``(on obj target)`` from the BDDL goal.

Three strategies, chosen to leave visibly different end-effector paths:

0 ``direct``      default grasp (right side of a rim), low straight transport, vertical moves.
1 ``high_arc``    grasp turned 90 degrees (or the left side of a rim), lift high, over the
                  top of the scene, come down from high above the target.
2 ``side_swing``  approach the object diagonally from the side (near side of a rim), swing the load out wide on the
                  far side of the straight line, arrive at the target from that side.

Grasps: an object narrower than the open gripper is pinched across its footprint's short side,
no deeper than ~2.5 cm into tall objects; a wider or hollow one (bowls, mugs) is pinched at its
rim, fingers radial: on the strategy's side if the hand fits there, the rim is not the low side
of a tilted bowl, and the arm need not stretch out straight for it (a side tucked in by the base
gives way to the opposite one), by preference a side where the hand also fits at the target;
otherwise on the side with the most room around the hand (a bowl in a drawer). After closing, a
short lift checks the object came along; if not, the grasp is retried once from a fresh look at
the scene. A bowl hangs tilted from its rim, so it is aimed at the target by its foot, looked at
again above it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from functools import partial
from typing import NamedTuple

import numpy as np

from generation.demonstrators import geometry as geo
from generation.demonstrators.collect import Demonstrator, eef_pose
from generation.demonstrators.controller import CLOSE, OPEN, Waypoint

GAP = 0.068  # widest object the open fingers take comfortably (open gap ~7.6 cm)
# grip site below the rim (fingertips 2.9 cm down): shallower, a bowl on a long carry pivots out
RIM_DEPTH = 0.016
FINGERTIP_BELOW = 0.013  # fingertips below the grip site
RIM_NAMES = re.compile(r"bowl|mug|cup|ramekin")
# gable-top cartons: taken across their faces only (turned, the gable wedges between the fingers)
CARTON_NAMES = re.compile(r"milk|orange_juice")

log = logging.getLogger(__name__)


REACH = 0.70  # via points stay this close (xy) to the robot's base: the arm stalls beyond
# a rim side farther than this (or than the bowl's near side, if that is farther) is not taken:
# the elbow is then straight, at a singularity from which the arm cannot draw the load back in
GRASP_REACH = 0.75
NEAR_CLEAR = 30  # probe hits (see grasp) below which a boxed-in side within reach is preferred
# A later part of a Sequence that starts with fewer than HURRY_BELOW steps left before the
# horizon goes straight to the object and, on side_swing, from the swing straight on to the
# target: its detours would run the episode out of steps.
HURRY_BELOW = 250
# ... nor one nearer than this (xy): folded that tight, the arm drifts outwards on the way down
# and the fingertips land on the rim; the opposite side (same finger axis) is taken instead.
GRASP_NEAREST = 0.28
DROPPED = 0.04  # the load hangs this much lower in the hand than at lift-off: it fell out


# The arm's reach with the hand pointing down: the wrist (~21 cm above the grip site and ~8 cm
# nearer the base) stays within ARM_REACH of the shoulder; beyond it the arm stalls short.
SHOULDER, WRIST_UP, WRIST_BACK, ARM_REACH = "robot0_link2", 0.208, 0.08, 0.725


def _shoulder(env) -> np.ndarray:
    return env.sim.data.body_xpos[env.sim.model.body_name2id(SHOULDER)]


def reach_height(env, xy: np.ndarray) -> float:
    """Highest grip-site z the arm reaches comfortably above ``xy`` with the hand down."""
    shoulder = _shoulder(env)
    out = max(float(np.linalg.norm(np.asarray(xy)[:2] - shoulder[:2])) - WRIST_BACK, 0.0)
    up = np.sqrt(max(ARM_REACH**2 - out**2, 0.0))
    return float(shoulder[2] + up - WRIST_UP)


def _capped(env, xy: np.ndarray, z: float, need: float) -> float:
    """``z`` lowered to what the arm reaches above ``xy``, but not below ``need`` (what clears
    the scene): far out, a waypoint placed high for comfort is one the arm never gets to."""
    return max(min(z, reach_height(env, xy)), need)


def _base_xy(env) -> np.ndarray:
    return np.array(env.sim.data.body_xpos[env.sim.model.body_name2id("robot0_base")][:2])


def _reachable(env, xy: np.ndarray) -> np.ndarray:
    """``xy`` pulled towards the robot base so the arm can get there comfortably."""
    base = _base_xy(env)
    d = xy - base
    n = np.linalg.norm(d)
    return base + d * (REACH / n) if n > REACH else xy


# grasps farther than LEAN_FROM (xy) from the base lean the fingertips outwards, by LEAN_PER_M
# radians per metre beyond it, at most MAX_LEAN
LEAN_FROM, LEAN_PER_M, MAX_LEAN = 0.66, 4.0, 0.45


def lean(base_xy: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """The hand's tilt (a world rotation vector) for a grasp at ``xy``: far out, the fingertips
    lean outwards and the wrist stays within reach. Straight down, the Panda reached a bowl
    0.75 m out only with its elbow straight, at its joint limit, where the controller can move
    the hand neither down nor back (LIBERO-Spatial task 6: 9 of its 50 init states failed so)."""
    out = np.asarray(xy, dtype=float) - np.asarray(base_xy, dtype=float)[:2]
    dist = float(np.linalg.norm(out))
    angle = float(np.clip((dist - LEAN_FROM) * LEAN_PER_M, 0.0, MAX_LEAN))
    if angle == 0.0:
        return np.zeros(3)
    u = out / dist
    return -angle * np.array([-u[1], u[0], 0.0])  # about z x u: the approach axis leans to +u


# Too near the shoulder the elbow folds shut: with the hand pointing down, the wrist (model of
# reach_height) must stay ARM_FOLD from the shoulder, or the hand stalls short of the grasp.
ARM_FOLD = 0.205


def _wrist_distance(env, point: np.ndarray, angle: float) -> float:
    """Distance of the wrist from the shoulder for the grip site at ``point``, the hand leaning
    its fingertips ``angle`` rad towards the base (the wrist away from it)."""
    shoulder = _shoulder(env)
    out = float(np.linalg.norm(np.asarray(point)[:2] - shoulder[:2]))
    c, s = np.cos(angle), np.sin(angle)
    return float(
        np.hypot(
            out - WRIST_BACK * c + WRIST_UP * s,
            point[2] + WRIST_UP * c + WRIST_BACK * s - shoulder[2],
        )
    )


def fold_lean(env, point: np.ndarray) -> np.ndarray:
    """The hand's tilt (a world rotation vector) for a grasp at ``point`` so near the shoulder
    that, pointing down, the elbow would have to fold past its limit: the fingertips lean
    towards the base, the least (in steps of 0.05 rad, at most MAX_LEAN) that keeps the wrist
    ARM_FOLD from the shoulder. Zero where the arm reaches pointing down."""
    angle = 0.0
    while _wrist_distance(env, point, angle) < ARM_FOLD and angle < MAX_LEAN:
        angle += 0.05
    if angle == 0.0:
        return np.zeros(3)
    u = _unit(np.asarray(point)[:2] - _base_xy(env))
    return angle * np.array([-u[1], u[0], 0.0])  # the approach axis leans to -u


def _unfolded(env, xy: np.ndarray, z: float) -> np.ndarray:
    """``xy`` moved out from the shoulder (1 cm at a time) until the hand pointing down at
    height ``z`` keeps its wrist ARM_FOLD from it. Driven from above the tray of LIBERO-90
    LIVING_ROOM_SCENE4 to points 0.19-0.34 m from the shoulder, the hand got within 1.5 cm in
    12-37 steps where this model puts the wrist 0.204-0.306 m out, and not in 60 steps at
    0.133-0.179 m."""
    shoulder = _shoulder(env)[:2]
    u = _unit(np.asarray(xy, dtype=float) - shoulder)
    xy = np.asarray(xy, dtype=float)
    while _wrist_distance(env, [*xy, z], 0.0) < ARM_FOLD:
        xy = xy + 0.01 * u
    return xy


# The forearm (robot0_link5) carries a housing that hangs to the robot's left (+y) of the
# wrist, down to ~6 cm below it: a low grasp beside a tall fixture on that side needs this room.
FOREARM_CLEAR, FOREARM_BELOW = 0.14, 0.07
DIAGONALS = [(-1, -1), (-1, 1), (1, -1), (1, 1)]


def forearm_room(env, boxes: np.ndarray, grasp: np.ndarray, tilt: np.ndarray) -> float:
    """Horizontal room (m, at most ``FOREARM_CLEAR``) on the robot's left of the wrist, at the
    forearm's height, between it and the scene ``boxes`` (:func:`geo.scene_boxes`) when the
    grip site is at ``grasp`` and the hand leans by ``tilt`` (:func:`lean`, which draws the
    wrist back)."""
    base = _base_xy(env)
    back = _unit(base - grasp[:2])
    angle = float(np.linalg.norm(tilt))
    out = WRIST_BACK + WRIST_UP * np.sin(angle)
    wrist = np.array([*(grasp[:2] + back * out), grasp[2] + WRIST_UP * np.cos(angle)])
    angles = np.linspace(0.0, np.pi, 9)[1:-1]  # the robot's left (+y) only: see FOREARM_CLEAR
    ring = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    for r in np.arange(0.04, FOREARM_CLEAR, 0.01):
        for dz in np.arange(-FOREARM_BELOW, 0.001, 0.01):  # a drawer's handle is 1.6 cm tall
            pts = np.column_stack([wrist[:2] + ring * r, np.full(len(ring), wrist[2] + dz)])
            if geo.blocked(boxes, pts, margin=0.0).any():
                return float(r)
    return FOREARM_CLEAR


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    return v / n if n > 1e-9 else np.array([1.0, 0.0])


def wait_until_still(env, max_checks: int = 12) -> Iterator[Waypoint]:
    """Hold still while objects are still falling or rocking into place (some scenes start
    them in the air): the operator looks before reaching."""
    names = geo.object_names(env)
    for _ in range(max_checks):
        before = np.array([env.sim.data.body_xpos[geo.body_id(env, n)] for n in names])
        pos, rot = eef_pose(env)
        yaw = float(np.arctan2(-rot[0, 0], rot[1, 0]))  # gripper x-axis is Rz(yaw) @ (0, 1, 0)
        yield Waypoint(
            pos, yaw, OPEN, tol=1.0, min_steps=4, max_steps=4, noise=0.0, yaw_tol=9.0, label="look"
        )
        after = np.array([env.sim.data.body_xpos[geo.body_id(env, n)] for n in names])
        if np.abs(after - before).max() < 0.002:
            return


def _palm_hits(
    boxes: np.ndarray, xy: np.ndarray, z: float, yaw: float, margin: float = 0.01
) -> int:
    """How many probe points of the open hand at grip site (xy, z) with ``yaw`` are inside
    scene geometry: the palm spans ~21 cm along the finger axis from 2.4 cm above the grip
    site, and the fingers hang ~4 cm either side of it."""
    f = np.array([-np.sin(yaw), np.cos(yaw)])  # finger axis
    n = np.array([f[1], -f[0]])  # across the hand, which is ~5 cm thick
    palm = [
        [*(xy + f * t + n * w), z + h]
        for t in np.linspace(-0.1, 0.1, 9)
        for w in (-0.025, 0.0, 0.025)
        for h in (0.03, 0.05)
    ]
    fingers = [
        [*(xy + f * t + n * w), z + h]
        for t in (-0.055, -0.045, -0.035, 0.035, 0.045, 0.055)
        for w in (-0.01, 0.01)
        for h in (-0.01, 0.005, 0.02)
    ]
    return int(geo.blocked(boxes, np.array(palm + fingers), margin).sum())


def _descent_hits(
    boxes: np.ndarray, xy: np.ndarray, z: float, yaw: float, margin: float = 0.01
) -> int:
    """:func:`_palm_hits` at the grasp and at every 3 cm of the 25 cm the hand descends
    through: a drawer's front or a shelf beside the object can stop the hand above a grasp
    whose own pose is clear (LIBERO-90 KITCHEN_SCENE10: the palm, ~21 cm along the finger
    axis, landed on the open drawer 19 cm above a bowl's rim)."""
    return sum(_palm_hits(boxes, xy, z + dz, yaw, margin) for dz in np.arange(0.0, 0.25, 0.03))


class Grasp(NamedTuple):
    point: np.ndarray  # grip-site position
    yaw: float
    side: np.ndarray  # horizontal direction from the object's centre to the side taken
    boxed_in: bool = False  # no side was clear: the side with the most room


class PickPlace(Demonstrator):
    strategy_names = ("direct", "high_arc", "side_swing")

    def __init__(self, task, obj: str, target: str, relation: str, **kw):
        super().__init__(task, **kw)
        self.obj, self.target, self.relation = obj, target, relation
        self.hurry = False  # set by plan: few steps left (see HURRY_BELOW)

    # ------------------------------------------------------------------ scene queries
    def target_point(self, env) -> tuple[np.ndarray, float]:
        """xy where the object's centre goes, and the z of the surface it lands on."""
        if self.target in env.raw.env.obj_body_id and self.relation == "on":
            fp = geo.footprint(env, self.target)
            return fp.center, fp.top
        site = geo.site_pos(env, self.target)
        if site is None:
            raise ValueError(f"{self.task.key}: cannot locate goal target {self.target!r}")
        return site[:2], float(site[2])

    def lying_place(self, env) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """For an ``in`` goal whose region is too shallow for the load standing: the way the
        load is tipped over (horizontal unit vector along the region's longer side, away from
        the robot) and the region's box (:func:`geo.site_box`); None where it stands inside.
        LIBERO's ``In`` tests the body origin against the region's box: the ketchup (14.6 cm
        tall, origin 7.2 cm up) standing on the floor of KITCHEN_SCENE5's top drawer has its
        origin 1.5 cm above the box (LIBERO-90 task 32: 0/30, every bottle set down upright).
        Tipped towards the robot instead, the bottle stood 0.75 m out, past the arm's reach
        (``REACH``): the hand stalled there and dragged the bottle out of the drawer."""
        box = geo.site_box(env, self.target) if self.relation == "in" else None
        if box is None:
            return None
        lo, hi = box
        fp = geo.footprint(env, self.obj)
        up = float(env.sim.data.body_xpos[geo.body_id(env, self.obj)][2]) - fp.bottom
        if lo[2] + up < hi[2] + 0.005:
            return None
        u = np.eye(2)[int(np.argmax(hi[:2] - lo[:2]))]
        if u @ (_base_xy(env) - 0.5 * (lo[:2] + hi[:2])) > 0:
            u = -u
        return u, lo, hi

    def grasp(self, env, strategy: int, rng: np.random.Generator) -> Grasp:
        """Grasp point (grip-site position), yaw, the horizontal approach direction, and
        whether no side was clear (the object is boxed in)."""
        fp = geo.footprint(env, self.obj)
        rim = RIM_NAMES.search(self.obj) is not None or fp.width > GAP
        boxes = geo.scene_boxes(env, exclude=(self.obj,))
        if not rim:
            across = np.arctan2(fp.axis_long[0], -fp.axis_long[1])  # angle of the short side
            options = [across, across + 0.25, across - 0.25]  # tilted a little if need be
            if fp.length < GAP - 0.01:  # square-ish and small: can be taken either way
                options.insert(1, across + np.pi / 2)
            yaws = [geo.yaw_for_finger_axis(np.array([np.cos(a), np.sin(a)])) for a in options]
            turned = strategy == 1 and not CARTON_NAMES.search(self.obj)
            # a load to be laid down is taken across its long side: it tips over about the
            # finger axis onto its wide face, the narrow way (see _tip_over)
            if fp.length < GAP - 0.01 and (turned or self.lying_place(env) is not None):
                yaws[0], yaws[1] = yaws[1], yaws[0]
            z = max(fp.top - 0.025, fp.bottom + 0.012)
            xy = fp.center + rng.normal(0, 0.002, 2)
            hits = [_descent_hits(boxes, xy, z, yaw) for yaw in yaws]
            return Grasp(np.array([*xy, z]), yaws[int(np.argmin(hits))], np.zeros(2))
        # rim grasp: the strategy's side of the rim, unless the palm or outer finger would hit
        # sides along y keep the wrist near its home yaw (a turned wrist swings the elbow low)
        prefs = {
            0: [(0, -1), (0, 1), (-1, 0), (1, 0)],
            1: [(0, 1), (0, -1), (-1, 0), (1, 0)],
            2: [(-1, 0), (0, -1), (0, 1), (1, 0)],
        }[strategy]
        radius = 0.5 * min(fp.length, fp.width) if fp.width > 0.02 else fp.radius
        base = _base_xy(env)
        reach = max(GRASP_REACH, np.linalg.norm(fp.center - base) - radius + 0.03)
        cramped = False  # a side was ruled out for the forearm (see FOREARM_CLEAR)

        def rim_side(
            pref, margin: float = 0.01, jitter: bool = True
        ) -> tuple[np.ndarray, np.ndarray, float] | None:
            """(side, grip xy, grip z) for a preferred side, or None where it is not taken: the
            hand's way down must keep ``margin`` from the scene, and the forearm its room."""
            nonlocal cramped
            d = np.array(pref, float)
            d = _unit(d + rng.normal(0, 0.08, 2)) if jitter else _unit(d)
            for flip in (False, True):
                if flip:  # folded too tight: the far side
                    d = -d
                xy = fp.center + d * (radius - 0.012)
                rim_z = geo.top_near(env, self.obj, xy)
                if rim_z < fp.top - 0.015:  # the low side of a tilted bowl: take the high side
                    return None
                if np.linalg.norm(xy - base) >= GRASP_NEAREST:
                    break
            if np.linalg.norm(xy - base) > reach:  # at full stretch the arm stalls
                return None
            z = rim_z - RIM_DEPTH
            if _descent_hits(boxes, xy, z, geo.yaw_for_finger_axis(d), margin) > 0:
                return None
            if forearm_room(env, boxes, np.array([*xy, z]), lean(base, xy)) < FOREARM_CLEAR:
                cramped = True  # the forearm would come down onto a fixture
                return None
            return d, xy, z

        # the hand keeps its side of the load all the way: a side clear at both the object and the
        # target first (margin 1 cm, then 0.5 cm); if none is clear at the target, the first side
        # clear at the object, with the same random draws as without the check; else boxed in.
        goal_xy, surface = self.target_point(env)
        rng_state = rng.bit_generator.state
        clear_here = False  # some side is clear at the object (else: boxed in, below)
        for margin in (0.01, 0.005):
            if margin < 0.01 and not clear_here:
                break
            rng.bit_generator.state = rng_state
            for pref in prefs:
                side = rim_side(pref, margin)
                if side is None:
                    continue
                clear_here = True
                d, xy, z = side
                yaw = geo.yaw_for_finger_axis(d)
                at_goal = goal_xy + xy - fp.center
                if _descent_hits(boxes, at_goal, surface + z - fp.bottom + 0.015, yaw) == 0:
                    return Grasp(np.array([*xy, z]), yaw, d)
        rng.bit_generator.state = rng_state
        for pref in prefs:
            side = rim_side(pref)
            if side is not None:
                d, xy, z = side
                return Grasp(np.array([*xy, z]), geo.yaw_for_finger_axis(d), d)
        # a side ruled out by the forearm: the diagonals too, whose palm (21 cm along the finger
        # axis) points past the fixture
        for pref in DIAGONALS if cramped else []:
            side = rim_side(pref, jitter=False)
            if side is not None:
                d, xy, z = side
                return Grasp(np.array([*xy, z]), geo.yaw_for_finger_axis(d), d)
        # boxed in (a bowl in a drawer of a turned cabinet, or beside an open drawer): the side
        # with the most room, counted as probe hits with the hand grown by 1, 2 and 3 cm plus
        # hits on the way down, among 24 directions
        first = np.arctan2(prefs[0][1], prefs[0][0]) + rng.normal(0, 0.05)
        best, best_score = None, np.inf
        within, within_score = None, np.inf  # the same among sides within reach
        for k in range(24):
            a = first + np.pi / 12 * k
            d = np.array([np.cos(a), np.sin(a)])
            xy = fp.center + d * (radius - 0.012)
            yaw = geo.yaw_for_finger_axis(d)
            rim_z = geo.top_near(env, self.obj, xy)
            z = rim_z - RIM_DEPTH
            score = sum(_palm_hits(boxes, xy, z, yaw, m) for m in (0.01, 0.02, 0.03))
            score += _descent_hits(boxes, xy, z, yaw)  # the way down must be clear too
            score += 1000 * (fp.top - rim_z)  # a low side (tilted bowl): barely ever
            score += 0.1 * min(k, 24 - k)  # ties: nearest the preferred side
            if cramped:  # 1 per mm the forearm lacks: it stops the hand short of the rim
                room = forearm_room(env, boxes, np.array([*xy, z]), lean(base, xy))
                score += 1000 * (FOREARM_CLEAR - room)
            if score < best_score:
                best, best_score = d, score
            if score < within_score and np.linalg.norm(xy - base) <= reach:
                within, within_score = d, score
        # a side within reach that only grazes its neighbours beats a clear one beyond reach, where
        # the arm stalls straight (as above); in a drawer every side scores above NEAR_CLEAR
        if within is not None and within_score < NEAR_CLEAR:
            best = within
        xy = fp.center + best * (radius - 0.012)
        z = geo.top_near(env, self.obj, xy) - RIM_DEPTH
        return Grasp(np.array([*xy, z]), geo.yaw_for_finger_axis(best), best, boxed_in=True)

    # ------------------------------------------------------------------ the plan
    def plan(self, env, strategy: int, rng: np.random.Generator) -> Iterator[Waypoint]:
        later = env.t > 0  # not the episode's first plan: a later part of a Sequence
        yield from wait_until_still(env)
        table = geo.table_height(env)
        self.hurry = later and env.horizon - env.t < HURRY_BELOW
        for _ in range(3):  # a missed grasp or a dropped load: look again and start over
            yaw = yield from self._pick(env, strategy, rng, table)
            if yaw is not None:
                yield from self._transport(env, strategy, yaw, rng, table)
            yield from wait_until_still(env)
            if self.achieved(env):  # only reached inside a longer task (a Sequence)
                return

    def achieved(self, env) -> bool:
        return bool(env.raw.env._eval_predicate([self.relation, self.obj, self.target]))

    def _pick(self, env, strategy, rng, table):
        """Waypoints of one grasp; returns the grasp yaw if the object came along, else None.
        In a hurry, straight to above the object, without high_arc's rise or side_swing's
        detour to the side (the strategies still differ in the grasp and the carry)."""
        grasp, yaw, side, boxed_in = self.grasp(env, strategy, rng)
        fp = geo.footprint(env, self.obj)
        body = geo.body_id(env, self.obj)
        z0 = float(env.sim.data.body_xpos[body][2])
        clutter = geo.obstacles_top(env, (self.obj,), near=grasp[None], radius=0.12)
        above = max(fp.top, clutter) + 0.08 + rng.uniform(0, 0.03)
        tilt = np.zeros(3) if boxed_in else lean(_base_xy(env), grasp[:2])
        if not boxed_in and not tilt.any():  # too near the shoulder: lean the other way
            tilt = fold_lean(env, grasp)
        clear = max(fp.top, clutter) + 0.03
        if not tilt.any():  # a leaning hand keeps its wrist nearer: reach_height does not apply
            above = _capped(env, grasp[:2], above, clear)
        # a hand leaning into a drawer hits its walls (so a boxed-in grasp does not lean)
        leaning = partial(Waypoint, yaw=yaw, tilt=tilt)  # every waypoint at the object
        pos, _ = eef_pose(env)
        if strategy == 2 and not self.hurry:  # come in diagonally from the side
            off = np.array([0.0, -0.12]) if not side.any() else side * 0.12
            side_xy = _reachable(env, grasp[:2] + off)
            side_z = _capped(env, side_xy, above + 0.01, clear)
            # a near side's detour ends before the elbow folds shut
            side_xy = _unfolded(env, side_xy, side_z)
            yield Waypoint(
                [*side_xy, side_z],
                yaw,
                OPEN,
                tol=0.03,
                max_steps=45,
                label="pre_side",
            )
            yield leaning([*grasp[:2], above], grip=OPEN, tol=0.015, speed=0.6, label="pre_grasp")
        else:
            if strategy == 1 and not self.hurry:
                yield Waypoint([*pos[:2], table + 0.33], yaw, OPEN, tol=0.04, label="rise")
            yield leaning([*grasp[:2], above], grip=OPEN, tol=0.02, label="pre_grasp")
        yield leaning(
            grasp + [0, 0, 0.03], grip=OPEN, tol=0.015, speed=0.8, noise=0.5, label="approach"
        )
        yield leaning(
            grasp, grip=OPEN, tol=0.007, speed=0.5, noise=0.2, max_steps=40, label="descend"
        )
        yield leaning(
            grasp, grip=CLOSE, tol=1.0, speed=0.2, noise=0.0, min_steps=10, max_steps=10,
            label="close",
        )  # fmt: skip
        yield leaning(
            grasp + [0, 0, 0.05], grip=CLOSE, tol=0.015, speed=0.5, noise=0.3, label="lift_check"
        )
        rise = eef_pose(env)[0][2] - grasp[2]
        # the body origin, not the bottom: a bowl pinched at its rim tilts as it comes up
        came = env.sim.data.body_xpos[body][2] - z0
        log.debug("%s: lift check: grip rose %.3f, %s %.3f", self.task.key, rise, self.obj, came)
        if came > 0.35 * rise:  # it came along
            return yaw
        yield leaning(grasp + [0, 0, 0.08], grip=OPEN, tol=0.02, min_steps=5, label="regrasp")
        return None

    def _landing_xy(self, env, vessel: bool) -> np.ndarray:
        """Where the held load's centre will come to rest when set down. A bowl hanging
        tilted from its rim lands on its foot and tips flat: its body origin (the centre of
        its foot) predicts that better than its tilted footprint's centre."""
        if vessel:
            return np.array(env.sim.data.body_xpos[geo.body_id(env, self.obj)][:2])
        if self.lying_place(env) is not None:  # stood on its bottom: where the bottom is
            pts = geo.geom_corners(
                env.sim, geo.collision_geoms(env.sim, geo.body_id(env, self.obj))
            )
            return pts[pts[:, 2] < pts[:, 2].min() + 0.01, :2].mean(0)
        return geo.footprint(env, self.obj).center

    def _transport(self, env, strategy, yaw, rng, table) -> Iterator[Waypoint]:
        eef, _ = eef_pose(env)
        fp = geo.footprint(env, self.obj)
        vessel = RIM_NAMES.search(self.obj) is not None
        rim = vessel or fp.width > GAP
        hold_xy = eef[:2] - self._landing_xy(env, vessel)  # eef relative to where it will land
        below = eef[2] - fp.bottom  # how far the load hangs below the grip site
        goal_xy, surface = self.target_point(env)
        lying = self.lying_place(env)
        if lying is not None:  # the bottom goes down where the load, tipped over, lies inside
            u, lo, hi = lying
            yaw = geo.yaw_for_finger_axis(np.array([-u[1], u[0]]))  # the hinge across u
            goal_xy, surface = self._upright_spot(fp, u, lo, hi), float(lo[2])
        # a tall load held near its top, or a bowl held by its rim, slips if swung fast
        speed = 0.65 if fp.height > 0.1 or rim else 1.0
        goal_xy = goal_xy + rng.normal(0, 0.004, 2)
        # the load's own way, from where its centre is now: holding a rim, the hand is a bowl's
        # radius off the load's centre, and clutter near the hand is not clutter on the load's way
        path = np.stack([eef[:2] - hold_xy, goal_xy])
        clutter = geo.obstacles_top(
            env, (self.obj,), near=np.linspace(path[0], path[1], 8), radius=0.08
        )
        cruise = max(clutter, surface) + below + 0.05 + rng.uniform(0, 0.02)
        if self.relation == "in":
            release = surface + below + 0.01
        else:
            release = surface + below + 0.015
        over = max(cruise, release + 0.06)
        end_xy = goal_xy + hold_xy
        # the least heights that clear the scene, for waypoints lowered to within reach
        need = max(clutter, surface) + below + 0.02
        need_over = max(need, release + 0.03)
        cap = partial(_capped, env)
        way = partial(Waypoint, yaw=yaw, grip=CLOSE, speed=speed)
        if strategy == 0:
            route = [
                way([*eef[:2], cap(eef[:2], cruise, need)], tol=0.03, label="lift"),
                way([*end_xy, cap(end_xy, over, need_over)], tol=0.02, label="carry"),
            ]
        elif strategy == 1:
            high = max(cruise + 0.12, table + 0.34) + rng.uniform(0, 0.03)
            # drawn in towards the base: far out and high up is out of reach
            start = _reachable(env, eef[:2])
            mid = _reachable(env, 0.5 * (eef[:2] + end_xy))
            route = [
                way([*start, cap(start, high - 0.05, need)], tol=0.04, label="lift_high"),
                way([*mid, cap(mid, high, need)], tol=0.05, max_steps=45, label="apex"),
                way([*end_xy, cap(end_xy, high - 0.05, need_over)], tol=0.03, label="over_high"),
            ]
        else:
            line = end_xy - eef[:2]
            perp = _unit(np.array([-line[1], line[0]]))
            if perp[0] < 0 or (abs(perp[0]) < 0.2 and perp[1] < 0):
                perp = -perp  # by preference swing out on the far side (away from the robot)
            swing = 0.16 + rng.uniform(0, 0.04)
            options = []
            for side in (perp, -perp):  # ... unless the other side is clearer
                mid = _reachable(env, 0.5 * (eef[:2] + end_xy) + side * swing)
                pts = np.concatenate(
                    [np.linspace(eef[:2], mid, 6), np.linspace(mid, end_xy + side * 0.08, 6)]
                )
                top = geo.obstacles_top(env, (self.obj,), near=pts, radius=0.08)
                options.append((top, side, mid))
            if options[1][0] < options[0][0] - 0.01:
                options.reverse()
            top, perp, mid = options[0]
            cruise = max(cruise, top + below + 0.05)
            over = max(cruise, release + 0.06)
            need = max(need, top + below + 0.02)
            need_over = max(need, release + 0.03)
            arrive = _reachable(env, end_xy + perp * 0.08)
            route = [
                way([*eef[:2], cap(eef[:2], cruise, need)], tol=0.03, label="lift"),
                way([*mid, cap(mid, cruise + 0.04, need)], tol=0.05, max_steps=45, label="swing"),
                way(
                    [*arrive, cap(arrive, over, need_over)],
                    tol=0.03,
                    max_steps=45,
                    label="arrive_side",
                ),
            ][: 2 if self.hurry else 3]  # in a hurry from the swing on to the target
        route.append(
            way([*end_xy, cap(end_xy, over, need_over)], tol=0.012, noise=0.3, label="above_target")
        )
        # a load that slips out on the way is picked up again at once (plan's retry), not carried
        # on as air
        body = geo.body_id(env, self.obj)
        hang = eef[2] - env.sim.data.body_xpos[body][2]
        for wp in route:
            yield wp
            fell = eef_pose(env)[0][2] - env.sim.data.body_xpos[body][2] - hang
            if fell > DROPPED:
                log.debug(
                    "%s: %s fell %.3f out of the hand by %s",
                    self.task.key,
                    self.obj,
                    fell,
                    wp.label,
                )
                return
        # look again: a bowl hanging from its rim swings and turns in the hand on the way
        end_xy = end_xy + goal_xy - self._landing_xy(env, vessel)
        if lying is not None:
            yield from self._tip_over(end_xy, yaw, lying[0], 0.5 * fp.width, surface, below)
            return
        yield Waypoint(
            [*end_xy, release],
            yaw,
            CLOSE,
            tol=0.01,
            speed=0.6,
            noise=0.2,
            max_steps=50,
            label="lower",
        )
        yield Waypoint(
            [*end_xy, release],
            yaw,
            OPEN,
            tol=1.0,
            noise=0.0,
            min_steps=8,
            max_steps=8,
            label="release",
        )
        yield Waypoint([*end_xy, release + 0.10], yaw, OPEN, tol=0.02, label="retreat")

    @staticmethod
    def _upright_spot(fp: geo.Footprint, u: np.ndarray, lo: np.ndarray, hi: np.ndarray):
        """xy for the bottom's centre of a load stood up in the box (``lo``, ``hi``) to be
        tipped over along ``u`` about its bottom edge (``fp``: the load standing)."""
        r = 0.5 * fp.width
        s_lo, s_hi = sorted([float(lo[:2] @ u), float(hi[:2] @ u)])
        # the tipping edge: the bottom stands 2 cm clear of the wall behind (nearer, a load swinging
        # in the pinch catches on the wall's top); lying, the origin stays 2 cm inside; its top may
        # end on the wall in front (the origin then still ~2 cm below the box's top)
        edge = min(s_lo + 2 * r + 0.02, s_hi - 0.5 * fp.height - 0.02)
        across = np.array([-u[1], u[0]])
        return (edge - r) * u + float(0.5 * (lo[:2] + hi[:2]) @ across) * across

    def _tip_over(self, xy, yaw, u, r, floor, below) -> Iterator[Waypoint]:
        """Stand the held load on ``floor`` and tip it over along ``u`` about its bottom edge:
        the hand, pointing down, follows the grip's arc round that edge while the load turns in
        the pinch (about the finger axis, a hinge), and lets go at 40 degrees; past ~15 degrees
        it falls on by itself."""
        touch = np.array([*xy, floor + below + 0.004])
        yield Waypoint(
            touch, yaw, CLOSE, tol=0.01, speed=0.5, noise=0.2, max_steps=50, label="lower"
        )
        pivot = np.array([*(xy + u * r), floor])
        v_s, v_z = -r, touch[2] - floor  # the grip seen from the bottom edge, along u and up
        for angle in np.arange(0.1, 0.71, 0.1):
            c, s = np.cos(angle), np.sin(angle)  # (v_s, v_z) turned by angle towards u
            at = pivot + np.array([*(u * (v_s * c + v_z * s)), v_z * c - v_s * s])
            yield Waypoint(
                at, yaw, CLOSE, tol=0.01, speed=0.4, noise=0.1, max_steps=20, label="tip"
            )
        yield Waypoint(at, yaw, OPEN, tol=1.0, noise=0.0, min_steps=8, max_steps=8, label="release")
        yield Waypoint(at + [0, 0, 0.10], yaw, OPEN, tol=0.02, label="retreat")
