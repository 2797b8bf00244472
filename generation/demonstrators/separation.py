"""How far apart the strategies' end-effector paths are: pure functions, arrays in, numbers out.

Paths are resampled to ``n_points`` equally spaced by arc length (so pauses and speed do not
count, only the shape in space), then compared by the mean Euclidean distance between
corresponding points (metres).

- ``separation_ratio``: mean distance between paths of *different* strategies divided by the
  mean distance between paths of the *same* strategy. 1 means the strategies are
  indistinguishable; above ~1.5 they are clearly apart.
- ``nn_strategy_accuracy``: leave-one-out 1-nearest-neighbour classification of each path's
  strategy from the others (chance is 1 / n_strategies).
- ``shape_*``: the same on detrended paths (see ``path_distances``), which discounts how far
  apart the episodes' start and goal positions are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def resample_path(path: np.ndarray, n_points: int = 64) -> np.ndarray:
    """(T, D) path to (n_points, D), equally spaced along its arc length."""
    path = np.asarray(path, dtype=np.float64)
    if len(path) == 1:
        return np.repeat(path, n_points, axis=0)
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    if s[-1] < 1e-9:
        return np.repeat(path[:1], n_points, axis=0)
    q = np.linspace(0.0, s[-1], n_points)
    return np.stack([np.interp(q, s, path[:, d]) for d in range(path.shape[1])], axis=1)


def path_distances(
    paths: Sequence[np.ndarray], n_points: int = 64, detrend: bool = False
) -> np.ndarray:
    """(N, N) mean point-wise distance between arc-length-resampled paths.

    ``detrend`` subtracts from each path the straight line from its start to its end, leaving
    its shape (arc height, side of a swing, detours): where the scene layout differs a lot
    between episodes this compares how a path goes rather than where it starts and ends."""
    res = np.stack([resample_path(p, n_points) for p in paths])
    if detrend:
        w = np.linspace(0.0, 1.0, n_points)[None, :, None]
        res = res - ((1 - w) * res[:, :1] + w * res[:, -1:])
    diff = res[:, None] - res[None]
    return np.linalg.norm(diff, axis=-1).mean(-1)


def separation_ratio(dist: np.ndarray, labels: Sequence[int]) -> float:
    """Mean between-strategy over mean within-strategy distance (nan if either is undefined)."""
    labels = np.asarray(labels)
    same = labels[:, None] == labels[None]
    off_diag = ~np.eye(len(labels), dtype=bool)
    within, between = dist[same & off_diag], dist[~same]
    if within.size == 0 or between.size == 0:
        return float("nan")
    return float(between.mean() / max(within.mean(), 1e-9))


def nn_strategy_accuracy(dist: np.ndarray, labels: Sequence[int]) -> float:
    """Leave-one-out nearest-neighbour accuracy of predicting the strategy from the path."""
    labels = np.asarray(labels)
    d = dist.astype(np.float64).copy()
    np.fill_diagonal(d, np.inf)
    return float((labels[d.argmin(1)] == labels).mean())


def strategy_separation(
    paths: Sequence[np.ndarray], labels: Sequence[int], n_points: int = 64
) -> dict:
    """The figures for a set of eef paths (e.g. ``[ep.eef_path for ep in episodes]``), on the
    raw paths and on their shapes (``shape_``: start-to-end line removed)."""
    dist = path_distances(paths, n_points)
    shape = path_distances(paths, n_points, detrend=True)
    return {
        "separation_ratio": separation_ratio(dist, labels),
        "nn_strategy_accuracy": nn_strategy_accuracy(dist, labels),
        "shape_separation_ratio": separation_ratio(shape, labels),
        "shape_nn_accuracy": nn_strategy_accuracy(shape, labels),
    }
