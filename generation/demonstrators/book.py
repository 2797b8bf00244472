"""Books into a caddy's compartment or onto a shelf (LIBERO-90 STUDY_SCENE1-4, LIBERO-10).

A book stands upright on its bottom edge: 13.5 cm tall, 11 cm long, 2.9 cm thick (the black
one; the yellow ones 12.2 x 9.8 x 2.4 cm). :class:`PickPlace` pinches it across its thickness
near the top, which holds, but carries it at its grasp yaw: a book lying diagonally then does
not fit the caddy's 5.7 cm wide front compartment and sits on its walls, and falls out on
release (STUDY_SCENE1 front: 1/30). Here the hand turns the book on the way to the pose in
the goal region with the most room around it, comes to rest over that spot and lowers the
book to the region's floor (the site is the region's centre, up to 6 cm higher) before
letting go (STUDY_SCENE1 front and right: 30/30 each).

A shelf's compartment has a board over it: the hand cannot come down into it. The book is
taken by the end that stays outside, shallow, and carried in from the open side at the height
where the book passes under the board and the hand over it (STUDY_SCENE4, 13.5 cm between
the boards). The goal, LIBERO's ``In``, only asks for the book's origin (on its bottom face)
inside the region's box, so it holds once the book is 2-4 cm in, while still in the hand;
the episode ends there.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import NamedTuple

import numpy as np
from scipy.spatial.transform import Rotation

from generation.demonstrators import geometry as geo
from generation.demonstrators.collect import eef_pose
from generation.demonstrators.controller import CLOSE, OPEN, Waypoint
from generation.demonstrators.geometry import YAW_WINDOW_LOW
from generation.demonstrators.pick_place import Grasp, PickPlace, _base_xy

BOOK_NAMES = r"book"
# the carry yaw may leave geometry's yaw window by this much rather than turn the hand (and
# the book) by another half turn
SLACK_LOW, SLACK_HIGH = 0.2, 0.4
# into a shelf: the hand takes the book END_GRASP from its end, the grip site SHALLOW below its
# top (fingertips 2.4 cm down), so the hand (from 2.4 cm above the grip site) clears the board
# the book passes under; it stops with the fingers (1.4 cm thick) FINGER_HALF before the
# board's edge; the book's top passes ROOF_GAP under the board, its bottom FLOOR_GAP over the
# floor at least
END_GRASP, SHALLOW, FINGER_HALF, ROOF_GAP, FLOOR_GAP = 0.015, 0.011, 0.017, 0.005, 0.004


# a book too tall for the shelf goes in rolled by ROLL (rad) about its long side (the black
# book: 13.5 cm upright, 12.2 cm rolled, between boards 13.5 cm apart: 0/30 upright, 29/30
# rolled), taken END_GRASP_TALL from its end, and the hand (3.5 cm either side of the grip
# site across its fingers) stays HAND_HALF before the board's edge; hand yaws it may take
# for it (the last joint turns by about minus the yaw and stops at +-2.9 rad)
ROLL, END_GRASP_TALL, HAND_HALF, YAW_SAFE = 0.7, 0.01, 0.042, (-0.9, 2.75)


# under a low board the book leans back by LEAN (rad) and goes in until its origin is BEYOND
# the board's edge: leaning 0.6 rad, its face passes 1.5 cm in front of the edge of a board
# 7.1 cm over the table while its bottom edge is under it (STUDY_SCENE4 under the shelf: 30/30)
LEAN, BEYOND = 0.6, 0.013


class Shelf(NamedTuple):
    d: np.ndarray  # horizontal unit direction into the region, from its open side
    roof_bottom: float
    edge: float  # the board's front edge, as a coordinate along d
    yaw: float  # hand yaw with the fingers across d (the hand is thin along d)


def _wrap_turn(a: float) -> float:
    """``a`` in [-pi, pi)."""
    return float((a + np.pi) % (2 * np.pi) - np.pi)


def _wrap_half_turn(a: float) -> float:
    """``a`` in [-pi/2, pi/2): a line's direction is only defined modulo pi."""
    return float((a + np.pi / 2) % np.pi - np.pi / 2)


class BookPickPlace(PickPlace):
    """:class:`PickPlace` for an upright book: the same grasps and paths, the book turned in
    transit to the pose in the goal region with the most room and set down on its floor, or,
    into a shelf, taken by its end and carried in from the open side."""

    _place: tuple[np.ndarray, float] | None = None
    _shelf_cache: tuple[int, Shelf | None] | None = None
    _roll: float = 0.0  # about the book's long side, in a shelf (a tall book)
    _carry: float = 0.0  # hand yaw in a shelf
    _lean: bool = False  # slid in leaning back, bottom edge first (under a low board)

    def _region(self, env) -> tuple[np.ndarray, np.ndarray] | None:
        """Centre and half sizes (world axes) of the goal region, None for an object."""
        sites = env.raw.env.object_sites_dict
        if self.target not in sites:
            return None
        mat = np.array(env.sim.data.get_site_xmat(self.target)).reshape(3, 3)
        half = np.abs(mat @ np.asarray(sites[self.target].size, float))
        return np.array(env.sim.data.get_site_xpos(self.target)), half

    def _placement(self, env) -> tuple[np.ndarray, float] | None:
        """Where in the goal region the book's centre goes and the angle of its long side:
        of the poses whose origin stays in the region, the one farthest from every wall
        around it (the black book has 0.8 cm to spare either side in the caddy's right
        compartment when square to it, 1.4 cm when diagonal)."""
        region = self._region(env)
        if region is None:
            return None
        center, half = region
        floor = center[2] - half[2]
        fp = geo.footprint(env, self.obj)
        boxes = geo.scene_boxes(env, exclude=(self.obj,))
        near = np.linalg.norm(boxes[:, 0, :2] - center[:2], axis=1) < 0.4
        boxes = boxes[near]
        u = np.linspace(-0.5, 0.5, 9)
        rim = np.concatenate(
            [
                np.stack([u * fp.length, np.full(9, 0.5 * fp.width)], 1),
                np.stack([u * fp.length, np.full(9, -0.5 * fp.width)], 1),
                np.stack(
                    [np.full(3, 0.5 * fp.length), np.linspace(-0.5, 0.5, 3) * fp.width],
                    1,
                ),
                np.stack(
                    [
                        np.full(3, -0.5 * fp.length),
                        np.linspace(-0.5, 0.5, 3) * fp.width,
                    ],
                    1,
                ),
            ]
        )
        heights = floor + np.array([0.02, 0.05, 0.08, 0.11])
        # the origin (what the goal checks) is off the footprint's centre (1.2 cm for the
        # black book): the centre keeps that far inside the region
        origin = np.array(env.sim.data.body_xpos[geo.body_id(env, self.obj)][:2])
        reach = np.maximum(half[:2] - np.linalg.norm(origin - fp.center) - 0.005, 0.0)
        grid = np.stack(
            np.meshgrid(*(np.linspace(-r, r, 1 + 2 * int(r / 0.004)) for r in reach)),
            -1,
        ).reshape(-1, 2)
        best, best_score = (center[:2], 0.0), -np.inf
        for angle in np.arange(0.0, np.pi, np.pi / 12):
            c, s_ = np.cos(angle), np.sin(angle)
            flat = rim @ np.array([[c, s_], [-s_, c]])
            pts = np.concatenate(
                [
                    np.repeat(center[None, None, :2] + grid[:, None] + flat[None], 4, axis=1),
                    np.tile(heights, len(flat))[None, :, None].repeat(len(grid), 0),
                ],
                axis=-1,
            )  # (offsets, probes, 3)
            score = _clearance(boxes, pts) - 0.05 * np.linalg.norm(grid, axis=1)
            k = int(np.argmax(score))
            if score[k] > best_score:
                best, best_score = (center[:2] + grid[k], float(angle)), score[k]
        return best

    def target_point(self, env) -> tuple[np.ndarray, float]:
        shelf = self._shelf(env)
        if shelf is not None:  # the book's centre when the hand is in front of the shelf
            front, _, z = self._insertion(env, shelf)
            fp = geo.footprint(env, self.obj)
            return front + shelf.d * (0.5 * fp.length - END_GRASP), z - 0.1
        region = self._region(env)
        if region is None or self._place is None:
            return super().target_point(env)
        center, half = region
        return self._place[0], float(center[2] - half[2])  # the floor, not the centre

    def _shelf(self, env) -> Shelf | None:
        """The goal region's roof and open side, if a board covers it (a shelf's compartment):
        the hand cannot come down into it then, the book goes in from the side."""
        if self._shelf_cache is not None and self._shelf_cache[0] == id(env.sim):
            return self._shelf_cache[1]
        region = self._region(env)
        shelf = None
        if region is not None:
            center, half = region
            floor = center[2] - half[2]
            boxes = geo.scene_boxes(env, exclude=(self.obj,))
            lo = boxes[:, 0] - _extent(boxes)
            hi = boxes[:, 0] + _extent(boxes)
            # over the region's centre: a caddy's wall stepped higher at one end is no roof
            # (it took STUDY_SCENE1 left from 30/30 to 5/30 as one)
            over = (
                np.all(lo[:, :2] < center[:2], 1)
                & np.all(hi[:, :2] > center[:2], 1)
                & (lo[:, 2] > floor + 0.05)
            )
            if over.any():
                roof = int(np.argmin(np.where(over, lo[:, 2], np.inf)))
                base = _base_xy(env) - center[:2]
                sides = []
                for d in ([1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]):
                    d = np.array(d)  # into the region, from the side at -d
                    along = float(np.abs(d) @ half[:2]) + 0.005
                    across = np.array([-d[1], d[0]]) * (float(np.abs(d[::-1]) @ half[:2]))
                    probes = [
                        [*(center[:2] - d * along + across * t), floor + h]
                        for t in np.linspace(-0.8, 0.8, 5)
                        for h in (0.03, 0.06)
                    ]
                    if not geo.blocked(boxes, np.array(probes), margin=0.0).any():
                        sides.append((-float(d @ base), d))
                if sides:
                    d = min(sides, key=lambda x: x[0])[1]
                    edge = float(min(lo[roof, :2] @ d, hi[roof, :2] @ d))
                    yaw = geo.yaw_for_finger_axis(np.array([-d[1], d[0]]))
                    shelf = Shelf(d, float(lo[roof, 2]), edge, yaw)
        self._shelf_cache = (id(env.sim), shelf)
        return shelf

    def grasp(self, env, strategy: int, rng: np.random.Generator) -> Grasp:
        grasp = super().grasp(env, strategy, rng)
        shelf = self._shelf(env)
        if shelf is None:
            return grasp
        # into a shelf: by the end that stays outside, the rest of the book ahead of the hand,
        # and shallow, so that the hand passes over the board while the book passes under it
        fp = geo.footprint(env, self.obj)
        d_heading = np.arctan2(shelf.d[1], shelf.d[0])
        self._roll, self._carry = 0.0, shelf.yaw
        heading = grasp.yaw + d_heading - shelf.yaw
        end = END_GRASP
        center, half = self._region(env)
        floor = max(center[2] - half[2], geo.table_height(env))
        self._lean = fp.height * np.cos(ROLL) + fp.width * np.sin(ROLL) > (
            shelf.roof_bottom - floor - 2 * ROOF_GAP
        )
        if self._lean:
            # too tall even rolled (under a shelf's lower board: 7.1 cm): slid in leaning back,
            # its long side along the board's edge, its bottom edge first
            across = np.array([-shelf.d[1], shelf.d[0]])
            self._carry = self._carry_yaw(
                grasp.yaw, fp.axis_long, float(np.arctan2(across[1], across[0]))
            )
            return grasp
        if fp.height > shelf.roof_bottom - (center[2] - half[2]) - 2 * ROOF_GAP:
            # too tall to go in upright: rolled about its long side, and then the hand (whose
            # palm end drops) must stay off the board: taken by the end farther from the
            # origin (what the goal checks), which then gets in 5.7 cm ahead of the grip site;
            # if no yaws are safe for that, it goes in upright like a shorter book
            origin = np.array(env.sim.data.body_xpos[geo.body_id(env, self.obj)][:2])
            ahead = fp.axis_long * np.sign((origin - fp.center) @ fp.axis_long)
            h = float(np.arctan2(ahead[1], ahead[0]))
            turn = _wrap_turn(d_heading - h)
            best = None
            for g in (grasp.yaw - np.pi, grasp.yaw, grasp.yaw + np.pi):
                f = g + turn
                if YAW_SAFE[0] <= g <= YAW_SAFE[1] and YAW_SAFE[0] <= f <= YAW_SAFE[1]:
                    cost = abs(f - shelf.yaw)  # the same turn: the yaw nearer mid-range
                    if best is None or cost < best[0]:
                        best = (cost, g, f)
            if best is not None:
                _, g, self._carry = best
                grasp = grasp._replace(yaw=float(g))
                heading, end, self._roll = h, END_GRASP_TALL, ROLL
        ahead = np.array([np.cos(heading), np.sin(heading)])
        xy = fp.center - ahead * (0.5 * fp.length - end)
        return grasp._replace(point=np.array([*xy, fp.top - SHALLOW]))

    def _carry_yaw(self, yaw: float, book_axis: np.ndarray, angle: float) -> float:
        """Hand yaw that turns the held book's long side (``book_axis`` now) to ``angle``."""
        turn = _wrap_half_turn(angle - np.arctan2(book_axis[1], book_axis[0]))
        new = yaw + turn
        if not YAW_WINDOW_LOW - SLACK_LOW <= new < YAW_WINDOW_LOW + np.pi + SLACK_HIGH:
            new = (new - YAW_WINDOW_LOW) % np.pi + YAW_WINDOW_LOW
        return float(new)

    def _hand_xy(self, env) -> np.ndarray:
        """Hand xy that puts the held book's centre over the placement."""
        hold = eef_pose(env)[0][:2] - geo.footprint(env, self.obj).center
        return self._place[0] + hold

    def _transport(self, env, strategy, yaw, rng, table) -> Iterator[Waypoint]:
        shelf = self._shelf(env)
        self._place = None if shelf is not None else self._placement(env)
        carry = yaw
        if shelf is not None:
            carry = self._carry
        elif self._place is not None:
            carry = self._carry_yaw(yaw, geo.footprint(env, self.obj).axis_long, self._place[1])
        for wp in super()._transport(env, strategy, yaw, rng, table):
            if wp.label != "lift":  # turn once clear of the table
                wp.yaw = carry
            if wp.label == "lower" and shelf is not None:
                yield from (self._slide_under if self._lean else self._insert)(env, shelf, rng)
                return
            if wp.label == "lower" and self._place is not None:
                # over the spot first, then straight down, both aimed from where the book
                # hangs in the hand now (PickPlace aims from where the hand should be, and
                # "above_target" lets it be 1.2 cm off: the book then lands on a wall)
                yield Waypoint(
                    [*self._hand_xy(env), eef_pose(env)[0][2]],
                    carry,
                    CLOSE,
                    tol=0.004,
                    speed=0.4,
                    noise=0.2,
                    min_steps=8,  # come to rest: moving on, the hand drifts on by ~1 cm
                    max_steps=30,
                    label="align",
                )
                wp.pos[:2] = self._hand_xy(env)
                wp.speed = 0.4
            yield wp

    def _slide_under(self, env, shelf: Shelf, rng) -> Iterator[Waypoint]:
        """Under a board too low for the book even rolled: the book, its covers facing the
        open side, leans back by LEAN (its top towards the hand) and goes in bottom edge
        first, just over the floor, until its origin is BEYOND the board's edge."""
        center, half = self._region(env)
        d = shelf.d
        d3 = np.array([*d, 0.0])
        lean_axis = np.cross([0.0, 0.0, 1.0], -d3)
        body = geo.body_id(env, self.obj)
        level = self._upright(env)
        tilt = (Rotation.from_rotvec(LEAN * lean_axis) * Rotation.from_rotvec(level)).as_rotvec()
        leaning = partial(Waypoint, yaw=self._carry, grip=CLOSE, tilt=tilt)
        lateral = (
            center[:2] - d * (d @ center[:2]) + np.array([-d[1], d[0]]) * rng.uniform(-0.02, 0.02)
        )
        goal = lateral + d * (shelf.edge + BEYOND)  # the origin's xy in the end
        eef = eef_pose(env)[0]
        yield leaning([*(goal - d * 0.2), eef[2]], tol=0.01, speed=0.7, label="front")
        eef = eef_pose(env)[0]
        fp = geo.footprint(env, self.obj)
        origin = np.array(env.sim.data.body_xpos[body])
        floor = max(center[2] - half[2], geo.table_height(env))
        z = eef[2] - fp.bottom + floor + FLOOR_GAP
        deep = goal + (eef[:2] - origin[:2])
        yield leaning([*(deep - d * 0.1), z], tol=0.004, speed=0.5, noise=0.2, label="down")
        yield from self._push_in_and_let_go(leaning, deep, z, d)

    def _insertion(self, env, shelf: Shelf) -> tuple[np.ndarray, np.ndarray, float]:
        """Hand xy in front of the shelf and in it, and the grip height to go in at: the book's
        top ROOF_GAP under the board (the yellow book's bottom is then 0.8 cm over the lower
        one)."""
        center, half = self._region(env)
        floor = center[2] - half[2]
        eef = eef_pose(env)[0]
        fp = geo.footprint(env, self.obj)
        z = shelf.roof_bottom - ROOF_GAP - (fp.top - eef[2])
        z = max(z, floor + FLOOR_GAP + (eef[2] - fp.bottom))
        d = shelf.d
        stop = HAND_HALF if self._roll else FINGER_HALF
        deep = center[:2] - d * (d @ center[:2]) + d * (shelf.edge - stop)
        return deep - d * 0.12, deep, z

    def _insert(self, env, shelf: Shelf, rng) -> Iterator[Waypoint]:
        """From in front of the shelf, at the height where the book passes under the board
        and the hand over it, straight in until the fingers reach the board's edge. Held by
        its end, the book may have pivoted a few degrees in the fingers on the way: the hand
        leans to stand it upright again first (STUDY_SCENE4 right book, high_arc: tilted 6-7
        degrees, its far end caught the lower board)."""
        d = shelf.d
        across = np.array([-d[1], d[0]]) * rng.uniform(-0.02, 0.02)
        front = self._insertion(env, shelf)[0] + across
        tilt = self._upright(env)
        if self._roll:
            roll = Rotation.from_rotvec(self._roll * np.array([*d, 0.0]))
            tilt = (roll * Rotation.from_rotvec(tilt)).as_rotvec()
        level = partial(Waypoint, yaw=self._carry, grip=CLOSE, tilt=tilt)
        yield level([*front, eef_pose(env)[0][2]], tol=0.01, speed=0.7, label="front")
        _, deep, z = self._insertion(env, shelf)  # with the book upright again
        deep = deep + across
        yield level([*front, z], tol=0.004, speed=0.5, noise=0.2, label="down")
        yield from self._push_in_and_let_go(level, deep, z, d)

    @staticmethod
    def _push_in_and_let_go(way, deep: np.ndarray, z: float, d: np.ndarray) -> Iterator[Waypoint]:
        """Slowly in to ``deep`` at height ``z``, let go, back out along ``-d`` and up a little:
        the end of both ways into a shelf. ``way`` is the partial Waypoint holding the book's
        carry yaw and tilt."""
        yield way([*deep, z], tol=0.004, speed=0.3, noise=0.1, max_steps=80, label="insert")
        yield way(
            [*deep, z], grip=OPEN, tol=1.0, noise=0.0, min_steps=8, max_steps=8, label="release"
        )
        yield way([*(deep - d * 0.1), z + 0.02], grip=OPEN, tol=0.02, label="retreat")

    def _upright(self, env) -> np.ndarray:
        """The world rotation vector that stands the held book upright again (its up axis
        back to vertical); zero below 0.01 rad."""
        up = np.array(env.sim.data.body_xmat[geo.body_id(env, self.obj)]).reshape(3, 3)[:, 2]
        axis = np.cross(up, [0.0, 0.0, 1.0])
        angle = float(np.arccos(np.clip(up[2], -1.0, 1.0)))
        return axis / np.linalg.norm(axis) * angle if angle > 0.01 else np.zeros(3)


def _extent(boxes: np.ndarray) -> np.ndarray:
    """World-axis half extents of the oriented ``boxes``."""
    return np.einsum("nij,ni->nj", np.abs(boxes[:, 2:]), boxes[:, 1])


def _clearance(boxes: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Per row of the (g, k, 3) ``pts``: the least distance of its points to the oriented
    ``boxes`` (negative inside one)."""
    if len(boxes) == 0:
        return np.ones(len(pts))
    rel = pts[:, :, None, :] - boxes[None, None, :, 0]
    local = np.abs(np.einsum("gknj,nij->gkni", rel, boxes[:, 2:])) - boxes[None, None, :, 1]
    outside = np.linalg.norm(np.maximum(local, 0.0), axis=-1)
    inside = np.minimum(local.max(-1), 0.0)
    return (outside + inside).min(axis=(1, 2))
