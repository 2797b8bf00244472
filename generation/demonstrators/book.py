"""Books into a caddy's compartment or onto a shelf (LIBERO-90 STUDY_SCENE1-4).

A book stands upright on its bottom edge: 13.5 cm tall, 11 cm long, 2.9 cm thick (the black
one; the yellow ones 12.2 x 9.8 x 2.4 cm). :class:`PickPlace` pinches it across its thickness
near the top, which holds, but carries it at its grasp yaw: a book lying diagonally then does
not fit the caddy's 5.7 cm wide front compartment and sits on its walls, and falls out on
release (STUDY_SCENE1 front: 1/30). Here the hand turns the book on the way so that its long
side runs along the compartment's, and lowers it to the region's floor (the site is the
region's centre, up to 6 cm higher) before letting go.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from generation.demonstrators import geometry as geo
from generation.demonstrators.collect import eef_pose
from generation.demonstrators.controller import CLOSE, Waypoint
from generation.demonstrators.geometry import YAW_WINDOW_LOW
from generation.demonstrators.pick_place import PickPlace

BOOK_NAMES = r"book"
# the carry yaw may leave geometry's yaw window by this much rather than turn the hand (and
# the book) by another half turn
SLACK_LOW, SLACK_HIGH = 0.2, 0.4


def _wrap_half_turn(a: float) -> float:
    """``a`` in [-pi/2, pi/2): a line's direction is only defined modulo pi."""
    return float((a + np.pi / 2) % np.pi - np.pi / 2)


class BookPickPlace(PickPlace):
    """:class:`PickPlace` for an upright book: the same grasps and paths, the book turned in
    transit to the pose in the goal region with the most room and set down on its floor."""

    _place: tuple[np.ndarray, float] | None = None

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
                np.stack([np.full(3, 0.5 * fp.length), np.linspace(-0.5, 0.5, 3) * fp.width], 1),
                np.stack([np.full(3, -0.5 * fp.length), np.linspace(-0.5, 0.5, 3) * fp.width], 1),
            ]
        )
        heights = floor + np.array([0.02, 0.05, 0.08, 0.11])
        # the origin (what the goal checks) is off the footprint's centre (1.2 cm for the
        # black book): the centre keeps that far inside the region
        origin = np.array(env.sim.data.body_xpos[geo.body_id(env, self.obj)][:2])
        reach = np.maximum(half[:2] - np.linalg.norm(origin - fp.center) - 0.005, 0.0)
        grid = np.stack(
            np.meshgrid(*(np.linspace(-r, r, 1 + 2 * int(r / 0.004)) for r in reach)), -1
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
        region = self._region(env)
        if region is None or self._place is None:
            return super().target_point(env)
        center, half = region
        return self._place[0], float(center[2] - half[2])  # the floor, not the centre

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
        self._place = self._placement(env)
        carry = yaw
        if self._place is not None:
            carry = self._carry_yaw(yaw, geo.footprint(env, self.obj).axis_long, self._place[1])
        for wp in super()._transport(env, strategy, yaw, rng, table):
            if wp.label != "lift":  # turn once clear of the table
                wp.yaw = carry
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
