"""Trajectory diversity metrics (pure functions: arrays in, numbers out).

The paper's four metrics (Table 1) compare end-effector paths of a dataset's episodes:
  - mean pairwise distance between trajectories,
  - variance of final states,
  - variance of the normalised start-to-end direction,
  - variance of path length;
plus dynamic-time-warping (DTW) distance and state coverage (occupied voxels).

Trajectories are lists of (T_i, D) arrays of varying length. Where two trajectories are
compared point by point they are first resampled to ``n_points`` points evenly spaced in time.
"Variance" of a vector quantity is the total variance: the trace of its covariance,
sum_d Var[x_d] (population variance, ddof=0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np
import pandas as pd

Trajectories = Sequence[np.ndarray]
METRICS = (
    "mean_pairwise_distance",
    "final_state_variance",
    "direction_variance",
    "path_length_variance",
    "mean_pairwise_dtw",
    "state_coverage",
)


def resample(traj: np.ndarray, n_points: int = 50) -> np.ndarray:
    """Linear interpolation of a (T, D) trajectory to (n_points, D), evenly spaced in time."""
    traj = np.asarray(traj, dtype=np.float64)
    if len(traj) == 1:
        return np.repeat(traj, n_points, axis=0)
    t_old = np.linspace(0.0, 1.0, len(traj))
    t_new = np.linspace(0.0, 1.0, n_points)
    return np.stack([np.interp(t_new, t_old, traj[:, d]) for d in range(traj.shape[1])], axis=1)


def total_variance(x: np.ndarray) -> float:
    """trace Cov[x] = sum_d Var[x_d] over rows of x, shape (N, D) or (N,)."""
    x = np.asarray(x, dtype=np.float64)
    return float(np.var(x, axis=0).sum())


def trajectory_distance(a: np.ndarray, b: np.ndarray, n_points: int = 50) -> float:
    """Mean over time of the Euclidean distance between two resampled trajectories."""
    return float(np.linalg.norm(resample(a, n_points) - resample(b, n_points), axis=1).mean())


def mean_pairwise_distance(trajs: Trajectories, n_points: int = 50) -> float:
    """E_{i<j} d(tau_i, tau_j) with d the time-aligned mean point distance."""
    if len(trajs) < 2:
        return 0.0
    r = np.stack([resample(t, n_points) for t in trajs])  # (N, L, D)
    dists = [np.linalg.norm(r[i] - r[j], axis=1).mean() for i, j in combinations(range(len(r)), 2)]
    return float(np.mean(dists))


def final_state_variance(trajs: Trajectories) -> float:
    return total_variance(np.stack([np.asarray(t)[-1] for t in trajs]))


def direction_variance(trajs: Trajectories, eps: float = 1e-9) -> float:
    """Total variance of the unit vectors (x_T - x_0) / ||x_T - x_0||."""
    dirs = []
    for t in trajs:
        d = np.asarray(t[-1], dtype=np.float64) - np.asarray(t[0], dtype=np.float64)
        dirs.append(d / max(np.linalg.norm(d), eps))
    return total_variance(np.stack(dirs))


def path_length(traj: np.ndarray) -> float:
    """sum_t ||x_{t+1} - x_t||."""
    return float(np.linalg.norm(np.diff(np.asarray(traj, dtype=np.float64), axis=0), axis=1).sum())


def path_length_variance(trajs: Trajectories) -> float:
    return total_variance(np.array([path_length(t) for t in trajs]))


def dtw_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Dynamic time warping with Euclidean point cost:
    D[i, j] = c(a_i, b_j) + min(D[i-1, j], D[i, j-1], D[i-1, j-1]); returns D[n, m]."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    cost = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        # the diagonal and vertical moves vectorise over j; the horizontal move is a running min.
        row = cost[i - 1] + np.minimum(acc[i - 1, :-1], acc[i - 1, 1:])
        for j in range(1, m + 1):
            row[j - 1] = min(row[j - 1], cost[i - 1, j - 1] + acc[i, j - 1])
            acc[i, j] = row[j - 1]
    return float(acc[n, m])


def mean_pairwise_dtw(trajs: Trajectories, n_points: int = 50) -> float:
    """Mean DTW over pairs, on trajectories resampled to ``n_points`` (bounds the O(n m) cost)."""
    if len(trajs) < 2:
        return 0.0
    r = [resample(t, n_points) for t in trajs]
    return float(np.mean([dtw_distance(r[i], r[j]) for i, j in combinations(range(len(r)), 2)]))


def state_coverage(trajs: Trajectories, voxel_size: float = 0.02) -> int:
    """Number of distinct voxels (cubes of side ``voxel_size``) visited by any trajectory."""
    points = np.concatenate([np.asarray(t, dtype=np.float64) for t in trajs])
    return int(len(np.unique(np.floor(points / voxel_size).astype(np.int64), axis=0)))


def diversity_metrics(
    trajs: Trajectories, n_points: int = 50, voxel_size: float = 0.02, max_dtw_trajs: int = 40
) -> dict[str, float]:
    """All metrics of one set of trajectories. DTW uses the first ``max_dtw_trajs`` only."""
    return {
        "mean_pairwise_distance": mean_pairwise_distance(trajs, n_points),
        "final_state_variance": final_state_variance(trajs),
        "direction_variance": direction_variance(trajs),
        "path_length_variance": path_length_variance(trajs),
        "mean_pairwise_dtw": mean_pairwise_dtw(list(trajs)[:max_dtw_trajs], n_points),
        "state_coverage": float(state_coverage(trajs, voxel_size)),
    }


def diversity_table(
    trajs_by_source_task: Mapping[tuple[str, str], Trajectories], **kw
) -> pd.DataFrame:
    """Rows ``source, task, metric, value`` (ARCHITECTURE.md's diversity.parquet)."""
    rows = []
    for (source, task), trajs in trajs_by_source_task.items():
        for metric, value in diversity_metrics(trajs, **kw).items():
            rows.append({"source": source, "task": task, "metric": metric, "value": float(value)})
    return pd.DataFrame(rows, columns=["source", "task", "metric", "value"])


def diversity_ratios(table: pd.DataFrame, num: str = "dlr", den: str = "o2o") -> pd.DataFrame:
    """value(num) / value(den) per task and metric (how much more diverse DLR is than O2O)."""
    wide = table.pivot_table(index=["task", "metric"], columns="source", values="value")
    out = (wide[num] / wide[den].replace(0.0, np.nan)).rename("ratio").reset_index()
    return out
