"""Making room before opening a drawer: the object that is to go into the drawer is first set
down out of the drawer's way.

An opened drawer sweeps ~15 cm out of its cabinet, at the height of the hand. An object lying
in front of it then ends up under the drawer or under its handle, and no hand can come down on
it: LIBERO-Goal "open the top drawer and put the bowl inside" (the bowl beside the cabinet, the
open drawer's side over its rim on every init state 0-9) scored 1/30, LIBERO-90 KITCHEN_SCENE1
"open the top drawer and put the bowl in it" (the bowl in front of the drawer, the open
drawer's handle over its near rim on every init state 0-9; the hand came to rest on the handle
12 cm above the grasp) 3/30. A person moves the object aside first, then opens the drawer.

:class:`MakeRoom` is a :class:`PickPlace` whose target is the nearest free spot on the table
out of the open drawer's way, and whose goal holds while the object is not in the way (so a
:class:`Sequence` skips it when there is room already). The drawer's way is the rectangle the
open drawer covers, in the horizontal frame of its handle, grown by the room a hand needs
beside it and in front of its handle.
"""

from __future__ import annotations

import numpy as np

from generation.demonstrators import geometry as geo
from generation.demonstrators.drawer import handle, opening_travel, slide_joint
from generation.demonstrators.pick_place import PickPlace, _base_xy

HAND_ROOM_OUT = 0.04  # in front of the open drawer's handle: room for a hand held across it
HAND_ROOM_SIDE = 0.02  # beside the drawer
SPOT_GAP = 0.02  # between the object set down and anything else
# a spot is this much farther out of the way than needed: a bowl set down exactly at the edge
# landed 5 mm short, still in the way, and was moved a second time (LIBERO-90 KITCHEN_SCENE1,
# high_arc, init state 0: 150 steps lost, the episode ran out of time)
SPOT_MARGIN = 0.03
SPOT_REACH = (0.4, 0.70)  # spots this far (xy) from the robot's base: within easy reach
MAX_MOVE = 0.3


def drawer_way(env, region: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The open drawer's footprint grown by a hand's room: ``(origin, axes, box)`` where a
    point p is in the way if ``box[:, 0] <= axes @ (p - origin) <= box[:, 1]`` (axes: the
    handle's ``along`` and ``out`` rows)."""
    joint = slide_joint(env, region)
    if joint is None:
        raise ValueError(f"{region!r} is not a drawer")
    h = handle(env, joint)
    sim, m = env.sim, env.sim.model
    body = m.jnt_bodyid[m.joint_name2id(joint)]
    pts = geo.geom_corners(sim, geo.collision_geoms(sim, body))[:, :2] - h.centre[:2]
    axes = np.stack([h.along, h.out])
    local = pts @ axes.T
    pull = max(opening_travel(h), 0.0)  # how far opening will move it
    box = np.array(
        [
            [local[:, 0].min() - HAND_ROOM_SIDE, local[:, 0].max() + HAND_ROOM_SIDE],
            [local[:, 1].min(), local[:, 1].max() + pull + HAND_ROOM_OUT],
        ]
    )
    return h.centre[:2], axes, box


def _overlaps(origin, axes, box, xy: np.ndarray, radius: float) -> bool:
    s, u = axes @ (np.asarray(xy) - origin)
    return bool(
        box[0, 0] - radius < s < box[0, 1] + radius and box[1, 0] - radius < u < box[1, 1] + radius
    )


class MakeRoom(PickPlace):
    """Set ``obj`` down on the table out of the way of ``region``'s drawer when it opens."""

    def __init__(self, task, obj: str, region: str, **kw):
        super().__init__(task, obj=obj, target=region, relation="on", **kw)
        self.region = region
        self._spot: np.ndarray | None = None
        self._side = 0  # the strategy whose side of the object the hand takes

    def in_the_way(self, env) -> bool:
        fp = geo.footprint(env, self.obj)
        return _overlaps(*drawer_way(env, self.region), fp.center, fp.radius)

    def achieved(self, env) -> bool:
        """Nothing to do: the drawer is open already (a Sequence then skips its opening too),
        or the object is out of its way. An open drawer is left as it is: a bowl in front of
        KITCHEN_SCENE5's open drawer, moved aside anyway, went into it 25/30 times, 29/30 left
        where it was."""
        if env.raw.env._eval_predicate(["open", self.region]):
            return True
        return not self.in_the_way(env)

    def free_spot(self, env) -> np.ndarray:
        """The nearest spot to ``obj`` out of the drawer's way, clear of everything else and
        within easy reach, among rings of candidates around it."""
        fp = geo.footprint(env, self.obj)
        way = drawer_way(env, self.region)
        table = geo.table_height(env)
        base = _base_xy(env)
        boxes = geo.scene_boxes(env, exclude=(self.obj,))
        # the object's footprint disc, low over the table: against the scene's actual boxes
        # (a footprint's circle around a stove 30 cm wide rules out far too much)
        ring = [
            [r * np.cos(a), r * np.sin(a), h]
            for r in (0.0, 0.5 * fp.radius, fp.radius)
            for a in np.linspace(0, 2 * np.pi, 12, endpoint=False)
            for h in (0.01, 0.04)
        ]
        disc = np.array(ring) + [0.0, 0.0, table]
        best, best_cost = None, np.inf
        for dist in np.arange(0.04, MAX_MOVE + 1e-9, 0.02):
            for a in np.linspace(0, 2 * np.pi, 24, endpoint=False):
                xy = fp.center + dist * np.array([np.cos(a), np.sin(a)])
                if _overlaps(*way, xy, fp.radius + SPOT_MARGIN):
                    continue
                if not SPOT_REACH[0] <= np.linalg.norm(xy - base) <= SPOT_REACH[1]:
                    continue
                if geo.blocked(boxes, disc + [*xy, 0.0], SPOT_GAP).any():
                    continue
                cost = dist + 0.1 * np.linalg.norm(xy - base)  # ties: nearer the robot
                if cost < best_cost:
                    best, best_cost = xy, cost
            if best is not None:
                return best
        raise ValueError(
            f"{self.task.key}: no free spot within {MAX_MOVE} m to move {self.obj} out of the "
            f"way of the {self.region} drawer"
        )

    def target_point(self, env) -> tuple[np.ndarray, float]:
        return self._spot, geo.table_height(env)

    def grasp(self, env, strategy, rng):
        return super().grasp(env, self._side, rng)  # the strategy's side of the object

    def plan(self, env, strategy, rng):
        # a few centimetres aside, low and straight, whatever the strategy: the strategies
        # differ at the grasp here and in the drawer and the placing that follow. high_arc's
        # climb over the scene took 57 steps for an 8 cm move (direct: 16), side_swing's
        # approach from the side 26, and the task then ran out of time (LIBERO-90
        # KITCHEN_SCENE1 open the top drawer and put the bowl in it, init state 0)
        self._spot, self._side = self.free_spot(env), strategy
        yield from super().plan(env, 0, rng)
