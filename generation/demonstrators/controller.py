"""Waypoint following for LIBERO's OSC_POSE controller, with human-like imperfection.

A :class:`Waypoint` is an end-effector goal (position, gripper yaw about the vertical, gripper
command). :class:`WaypointController` turns the pose error into a 7-D delta action with a
saturated P-law: position error in metres / 0.05 (one action unit moves the OSC target 5 cm),
rotation error (world-frame axis-angle) in radians / 0.5. The gripper points straight down;
the orientation is actively held, otherwise the arm drifts.

Human-likeness (:class:`HumanNoise`): Ornstein-Uhlenbeck noise on the motion dimensions (smooth,
correlated wobble rather than white jitter), random short pauses between waypoints, and
per-episode jitter of waypoint positions (applied by the planners).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

POS_SCALE = 0.05  # metres of OSC target per action unit
ROT_SCALE = 0.5  # radians of OSC target per action unit
OPEN, CLOSE = -1.0, 1.0

# Gripper pointing down, fingers closing along world y: LIBERO's Panda home orientation.
_DOWN = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])


def down_rotation(yaw: float) -> np.ndarray:
    """Rotation matrix of a gripper pointing down, turned by ``yaw`` about world z."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ _DOWN


@dataclass
class Waypoint:
    """An end-effector goal.

    pos: world position of the grip site; yaw: gripper yaw (rad); grip: -1 open / +1 close.
    tol: position tolerance (m) that counts as reached; speed: cap on |position action|;
    min_steps: steps to stay at least (e.g. while the fingers close); max_steps: give up after.
    noise: scale of the OU noise here (0 for precise phases); label: for logs and tests.
    tilt: world-frame rotation vector applied after pointing down with ``yaw``: leans the hand
    (far grasps lean the fingertips outwards, see ``pick_place.lean``).
    """

    pos: np.ndarray
    yaw: float
    grip: float = OPEN
    tol: float = 0.012
    speed: float = 1.0
    min_steps: int = 0
    max_steps: int = 80
    noise: float = 1.0
    label: str = ""
    yaw_tol: float = 0.12
    tilt: np.ndarray | None = None

    def __post_init__(self):
        self.pos = np.asarray(self.pos, dtype=np.float64).copy()
        self.tilt = np.zeros(3) if self.tilt is None else np.asarray(self.tilt, dtype=np.float64)

    def rotation(self) -> np.ndarray:
        """The gripper orientation this waypoint asks for (world frame)."""
        if not self.tilt.any():
            return down_rotation(self.yaw)
        return Rotation.from_rotvec(self.tilt).as_matrix() @ down_rotation(self.yaw)


@dataclass
class HumanNoise:
    """Imperfections of a human teleoperator.

    ou_theta/ou_sigma: mean reversion and step std of the OU process on the six motion
    dimensions (action units); pause_prob: chance of a pause before a waypoint;
    pause_steps: its length range.
    """

    ou_theta: float = 0.15
    ou_sigma: float = 0.06
    pause_prob: float = 0.2
    pause_steps: tuple[int, int] = (3, 10)
    enabled: bool = True
    _state: np.ndarray = field(default_factory=lambda: np.zeros(6), repr=False)

    def reset(self) -> None:
        self._state = np.zeros(6)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        if not self.enabled:
            return np.zeros(6)
        self._state += -self.ou_theta * self._state + self.ou_sigma * rng.standard_normal(6)
        self._state[3:] *= 0.5  # wrist wobble is smaller than arm wobble
        return self._state.copy()

    def pause_length(self, rng: np.random.Generator) -> int:
        if not self.enabled or rng.random() >= self.pause_prob:
            return 0
        return int(rng.integers(self.pause_steps[0], self.pause_steps[1] + 1))


class WaypointController:
    """Saturated P-control of the grip site's pose towards a :class:`Waypoint`."""

    def __init__(self, kp_pos: float = 2.5, kp_rot: float = 2.0):
        self.kp_pos = kp_pos
        self.kp_rot = kp_rot

    def action(self, eef_pos: np.ndarray, eef_rot: np.ndarray, wp: Waypoint) -> np.ndarray:
        err = wp.pos - eef_pos
        a_pos = self.kp_pos * err / POS_SCALE
        n = np.linalg.norm(a_pos)
        if n > wp.speed:
            a_pos *= wp.speed / n
        rot_err = Rotation.from_matrix(wp.rotation() @ eef_rot.T).as_rotvec()
        a_rot = np.clip(self.kp_rot * rot_err / ROT_SCALE, -1.0, 1.0)
        return np.concatenate([a_pos, a_rot, [wp.grip]])

    @staticmethod
    def reached(eef_pos: np.ndarray, eef_rot: np.ndarray, wp: Waypoint) -> bool:
        if np.linalg.norm(wp.pos - eef_pos) > wp.tol:
            return False
        rot_err = Rotation.from_matrix(wp.rotation() @ eef_rot.T).magnitude()
        return rot_err < wp.yaw_tol
