"""Where things are in a LIBERO scene: object footprints, heights, sites and fixture joints.

Body origins (``<obj>_pos``) are neither the top nor the bottom of an object, so heights come
from the collision geometry: every collision geom's local AABB is turned into its eight world
corners, and an object's extent is the hull of its subtree's corners.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

_CORNERS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)


@dataclass(frozen=True)
class Footprint:
    """An object's extent in the world now.

    ``center``: xy centre of its footprint; ``bottom``/``top``: z range; ``axis_long``: unit xy
    direction of the footprint's long side; ``length``/``width``: extents along/across it.
    """

    center: np.ndarray
    bottom: float
    top: float
    axis_long: np.ndarray
    length: float
    width: float

    @property
    def height(self) -> float:
        return self.top - self.bottom

    @property
    def radius(self) -> float:
        return 0.5 * max(self.length, self.width)


def _subtree_bodies(model, root: int) -> list[int]:
    out = []
    for b in range(model.nbody):
        bb = b
        while bb not in (0, root):
            bb = model.body_parentid[bb]
        if bb == root:
            out.append(b)
    return out


def _collision_geoms(model, root: int) -> tuple[int, ...]:
    bodies = set(_subtree_bodies(model, root))
    return tuple(
        g
        for g in range(model.ngeom)
        if model.geom_bodyid[g] in bodies
        and (model.geom_contype[g] != 0 or model.geom_conaffinity[g] != 0)
    )


# per model, weakly: an lru_cache keyed on the model kept every model it had seen alive, with
# its meshes, after its env was closed: ~400 MB per LIBERO-90 task run in one process (measured:
# 824 -> 2597 MB over 4 tasks' envs opened, run and closed in turn; 1117 MB with the cache cleared)
_GEOMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def collision_geoms(sim, body_id: int) -> tuple[int, ...]:
    """Ids of the collision geoms in a body's subtree (cached per model)."""
    per_model = _GEOMS.setdefault(sim.model, {})
    root = int(body_id)
    if root not in per_model:
        per_model[root] = _collision_geoms(sim.model, root)
    return per_model[root]


def geom_corners(sim, geoms) -> np.ndarray:
    """(8 * n, 3) world corners of the geoms' local AABBs."""
    m, d = sim.model, sim.data
    pts = []
    for g in geoms:
        c, r = m.geom_aabb[g][:3], m.geom_aabb[g][3:]
        R = d.geom_xmat[g].reshape(3, 3)
        pts.append(d.geom_xpos[g] + (c + _CORNERS * r) @ R.T)
    return np.concatenate(pts) if pts else np.zeros((0, 3))


def body_id(env, name: str) -> int:
    env_ = env.raw.env
    if name in env_.obj_body_id:
        return env_.obj_body_id[name]
    return env.sim.model.body_name2id(name)


def footprint(env, name: str) -> Footprint:
    """Footprint of a scene object (or fixture) by its BDDL name."""
    pts = geom_corners(env.sim, collision_geoms(env.sim, body_id(env, name)))
    xy = pts[:, :2]
    center_guess = xy.mean(0)
    cov = np.cov((xy - center_guess).T)
    evals, evecs = np.linalg.eigh(cov)
    axis = evecs[:, 1] / np.linalg.norm(evecs[:, 1])
    perp = np.array([-axis[1], axis[0]])
    a, p = xy @ axis, xy @ perp
    center = axis * 0.5 * (a.max() + a.min()) + perp * 0.5 * (p.max() + p.min())
    return Footprint(
        center=center,
        bottom=float(pts[:, 2].min()),
        top=float(pts[:, 2].max()),
        axis_long=axis,
        length=float(a.max() - a.min()),
        width=float(p.max() - p.min()),
    )


def top_near(env, name: str, xy: np.ndarray, radius: float = 0.02) -> float:
    """Highest point of ``name``'s collision geometry within ``radius`` (xy) of ``xy``: the
    rim height where a hand takes a bowl, which differs around the rim when the bowl lies
    tilted (e.g. half on a ramekin). The object's overall top if nothing is that near."""
    pts = geom_corners(env.sim, collision_geoms(env.sim, body_id(env, name)))
    near = np.linalg.norm(pts[:, :2] - xy, axis=1) < radius
    return float(pts[near, 2].max()) if near.any() else float(pts[:, 2].max())


def object_names(env) -> list[str]:
    """Movable objects of the scene (not fixtures)."""
    return list(env.raw.env.objects_dict)


def site_pos(env, name: str) -> np.ndarray | None:
    m = env.sim.model
    try:
        sid = m.site_name2id(name)
    except ValueError:
        return None
    return np.array(env.sim.data.site_xpos[sid])


def site_box(env, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(lower, upper) corners of the box LIBERO's ``In`` tests a body origin against for the
    region ``name`` (``SiteObject.in_box``: the site's size turned by its orientation, whose
    lower face it takes 1 cm lower still), or None if ``name`` is not such a region."""
    site = env.raw.env.object_sites_dict.get(name)
    size = getattr(site, "size", None)
    pos = site_pos(env, name)
    if size is None or pos is None or not hasattr(site, "in_box"):
        return None
    half = np.abs(env.sim.data.get_site_xmat(name) @ np.asarray(size, dtype=float))
    return pos - half, pos + half


def table_height(env) -> float:
    """z of the table surface (0 in LIBERO-Object's floor scenes, ~0.9 on tables)."""
    for site in ("table_top",):
        p = site_pos(env, site)
        if p is not None:
            return float(p[2])
    tops = [footprint(env, n).bottom for n in object_names(env)]
    return float(np.median(tops)) if tops else 0.0


def obstacles_top(
    env, exclude: tuple[str, ...], near: np.ndarray | None = None, radius: float = 1e9
) -> float:
    """Highest top among objects and fixtures (minus ``exclude``) whose footprint is within
    ``radius`` of the xy points ``near`` (all objects when ``near`` is None)."""
    env_ = env.raw.env
    best = table_height(env)
    for name in list(env_.objects_dict) + list(env_.fixtures_dict):
        if name in exclude:
            continue
        fp = footprint(env, name)
        if fp.top > 2.0:  # walls, floors and other scene-sized fixtures
            continue
        if near is not None:
            dist = np.min(np.linalg.norm(np.atleast_2d(near)[:, :2] - fp.center, axis=1))
            if dist > radius + fp.radius:
                continue
        best = max(best, fp.top)
    return best


# The gripper is symmetric: yaw and yaw + pi close the fingers along one axis. Of the two, take
# the one in [-pi/4, 3pi/4): the Panda's last joint sits at ~pi/4 at LIBERO's home pose and turns
# by about minus the yaw, so this keeps it mid-range. In [-pi/2, pi/2) a yaw near -pi/2 (fingers
# along x, as side_swing's first rim side asks) drove it into its limit (2.9 rad) once the base
# had turned towards the side: LIBERO-Spatial task 1, 6 of 17 side_swing episodes failed so.
YAW_WINDOW_LOW = -np.pi / 4


def yaw_for_finger_axis(direction_xy: np.ndarray) -> float:
    """Gripper yaw (rad, in [-pi/4, 3pi/4)) that makes the fingers close along ``direction_xy``.

    At yaw 0 LIBERO's Panda closes its fingers along world y.
    """
    phi = float(np.arctan2(direction_xy[1], direction_xy[0]))
    yaw = phi - np.pi / 2
    return float((yaw - YAW_WINDOW_LOW) % np.pi + YAW_WINDOW_LOW)


def scene_boxes(env, exclude: tuple[str, ...] = ()) -> np.ndarray:
    """(n, 5, 3) oriented boxes of every collision geom except the robot's, the floor / table
    tops, and the subtrees of the ``exclude`` objects: per box its world centre, half sizes,
    and the three rows of its rotation (local to world, as columns of ``R``: row k is R[:, k]).

    Oriented, not world-aligned: a turned cabinet's drawer walls have world AABBs that cover
    the whole drawer, and would leave no room for a hand inside it."""
    sim, m, d = env.sim, env.sim.model, env.sim.data
    skip = set()
    for name in exclude:
        skip.update(collision_geoms(sim, body_id(env, name)))
    boxes = []
    for g in range(m.ngeom):
        if g in skip or (m.geom_contype[g] == 0 and m.geom_conaffinity[g] == 0):
            continue
        body = m.body_id2name(m.geom_bodyid[g]) or ""
        if body.startswith(("robot0", "gripper0", "mount0")) or m.geom_type[g] == 0:  # 0: plane
            continue
        pts = geom_corners(sim, [g])
        lo, hi = pts.min(0), pts.max(0)
        if np.any(hi[:2] - lo[:2] > 0.6):  # table tops, walls: too big to matter sideways
            continue
        R = d.geom_xmat[g].reshape(3, 3)
        center = d.geom_xpos[g] + R @ m.geom_aabb[g][:3]
        boxes.append(np.stack([center, m.geom_aabb[g][3:], *R.T]))
    return np.asarray(boxes).reshape(-1, 5, 3)


def blocked(boxes: np.ndarray, points: np.ndarray, margin: float = 0.01) -> np.ndarray:
    """Which of the (k, 3) ``points`` lie inside any of the oriented ``boxes`` (see
    :func:`scene_boxes`) grown by ``margin``."""
    pts = np.atleast_2d(points)
    if len(boxes) == 0:
        return np.zeros(len(pts), dtype=bool)
    rel = pts[:, None, :] - boxes[None, :, 0]  # (k, n, 3)
    local = np.einsum("knj,nij->kni", rel, boxes[:, 2:])  # coordinates along each box's axes
    inside = np.all(np.abs(local) < boxes[None, :, 1] + margin, axis=-1)
    return inside.any(axis=1)
