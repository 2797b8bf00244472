"""Trajectory diversity metrics (pure functions: arrays in, numbers out).

The paper's four metrics (Table 1) compare end-effector paths of a dataset's episodes:
  - mean pairwise distance between trajectories,
  - variance of final states,
  - variance of the normalised start-to-end direction,
  - variance of path length;
plus dynamic-time-warping (DTW) distance and state coverage (occupied voxels).
A DLR/O2O ratio comes with a bootstrap 95% CI (:func:`bootstrap_ratios`), pooled over a
task's episodes and per init state (each source's metric averaged over the init states both
sources share, so scene layouts cannot make one source look more diverse).

Trajectories are lists of (T_i, D) arrays of varying length. Where two trajectories are
compared point by point they are first resampled to ``n_points`` points evenly spaced in time.
"Variance" of a vector quantity is the total variance: the trace of its covariance,
sum_d Var[x_d] (population variance, ddof=0).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np
import pandas as pd

# dtaidistance logs every distance matrix at INFO
logging.getLogger("be.kuleuven.dtai.distance").setLevel(logging.WARNING)

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
    """Dynamic time warping as dtaidistance computes it: the square root of the smallest sum,
    over monotone alignments of the two (T, D) paths, of squared point distances."""
    from dtaidistance import dtw_ndim

    return float(
        dtw_ndim.distance_fast(np.asarray(a, dtype=np.double), np.asarray(b, dtype=np.double))
    )


def mean_pairwise_dtw(trajs: Trajectories, n_points: int = 50) -> float:
    """Mean DTW over pairs, on trajectories resampled to ``n_points`` (bounds the O(n m) cost)."""
    return PathSet(trajs, n_points).metrics()["mean_pairwise_dtw"]


def state_coverage(trajs: Trajectories, voxel_size: float = 0.02) -> int:
    """Number of distinct voxels (cubes of side ``voxel_size``) visited by any trajectory."""
    points = np.concatenate([np.asarray(t, dtype=np.float64) for t in trajs])
    return int(len(np.unique(np.floor(points / voxel_size).astype(np.int64), axis=0)))


class PathSet:
    """Per-episode quantities of a set of trajectories, computed once, so that the metrics of
    any multiset of its episodes (a bootstrap resample, one init state's episodes) are cheap:
    pairwise distances are looked up, not recomputed."""

    def __init__(self, trajs: Trajectories, n_points: int = 50, voxel_size: float = 0.02):
        from dtaidistance import dtw_ndim

        trajs = [np.asarray(t, dtype=np.float64) for t in trajs]
        if not trajs:
            raise ValueError("PathSet needs at least one trajectory")
        r = np.stack([resample(t, n_points) for t in trajs])  # (N, L, D)
        self.n = len(trajs)
        self.pair_distance = np.linalg.norm(r[:, None] - r[None], axis=-1).mean(-1)
        self.pair_dtw = (
            dtw_ndim.distance_matrix_fast(list(r), compact=False)
            if self.n > 1
            else np.zeros((1, 1))
        )
        np.fill_diagonal(self.pair_dtw, 0.0)  # dtaidistance leaves inf on the diagonal
        self.finals = np.stack([t[-1] for t in trajs])
        d = self.finals - np.stack([t[0] for t in trajs])
        self.directions = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
        self.lengths = np.array([path_length(t) for t in trajs])
        # voxel keys per episode: 21 bits per axis covers +-20 km at 2 cm
        keys = []
        for t in trajs:
            v = np.floor(t / voxel_size).astype(np.int64) + (1 << 20)
            keys.append(np.unique((v[:, 0] << 42) | (v[:, 1] << 21) | v[:, 2]))
        self.voxels = keys

    @staticmethod
    def _pair_mean(mat: np.ndarray, idx: np.ndarray) -> float:
        """Mean over ordered pairs a != b of positions in ``idx`` (duplicates count as pairs)."""
        n = len(idx)
        if n < 2:
            return 0.0
        return float(mat[np.ix_(idx, idx)].sum() / (n * (n - 1)))

    def metrics(self, idx: Sequence[int] | np.ndarray | None = None) -> dict[str, float]:
        """Every metric of :data:`METRICS` over episodes ``idx`` (all by default)."""
        idx = np.arange(self.n) if idx is None else np.asarray(idx, dtype=np.int64)
        return {
            "mean_pairwise_distance": self._pair_mean(self.pair_distance, idx),
            "final_state_variance": total_variance(self.finals[idx]),
            "direction_variance": total_variance(self.directions[idx]),
            "path_length_variance": total_variance(self.lengths[idx]),
            "mean_pairwise_dtw": self._pair_mean(self.pair_dtw, idx),
            "state_coverage": float(len(np.unique(np.concatenate([self.voxels[i] for i in idx])))),
        }


def diversity_metrics(
    trajs: Trajectories, n_points: int = 50, voxel_size: float = 0.02
) -> dict[str, float]:
    """All metrics of one set of trajectories."""
    return PathSet(trajs, n_points, voxel_size).metrics()


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


def _state_groups(init_states: Sequence[int]) -> dict[int, np.ndarray]:
    init_states = np.asarray(init_states)
    return {int(s): np.flatnonzero(init_states == s) for s in dict.fromkeys(init_states.tolist())}


def per_state_metrics(
    paths: PathSet, groups: Mapping[int, np.ndarray], states: Sequence[int]
) -> dict[str, float]:
    """Each metric averaged over ``states`` (a multiset), computed within each state's episodes."""
    per = [paths.metrics(groups[s]) for s in states]
    return {m: float(np.mean([p[m] for p in per])) for m in METRICS}


def bootstrap_ratios(
    num: tuple[Trajectories, Sequence[int]],
    den: tuple[Trajectories, Sequence[int]],
    n_boot: int = 1000,
    seed: int = 0,
    n_points: int = 50,
    voxel_size: float = 0.02,
) -> pd.DataFrame:
    """value(num) / value(den) of every metric, with percentile bootstrap 95% CIs.

    ``num`` and ``den`` are (trajectories, init-state index of each). Two scopes:
      - ``pooled``: metrics over all of a source's episodes; resamples episodes with
        replacement, each source independently;
      - ``per_init_state``: metrics within each init state where both sources have two or
        more episodes, averaged over those states; resamples the shared states (the same draw for both sources:
        a paired bootstrap over scene layouts).
    Rows: scope, metric, num_value, den_value, ratio, ci_low, ci_high, n_num, n_den, n_states.
    """
    rng = np.random.default_rng(seed)
    sets = [PathSet(t, n_points, voxel_size) for t, _ in (num, den)]
    groups = [_state_groups(s) for _, s in (num, den)]
    # within-state spread needs two episodes of each source there
    shared = [s for s in groups[0] if len(groups[0][s]) > 1 and len(groups[1].get(s, [])) > 1]
    rows = []

    def ratio(a: float, b: float) -> float:
        return a / b if b else float("nan")

    # pooled
    point = [p.metrics() for p in sets]
    boots = {m: [] for m in METRICS}
    for _ in range(n_boot):
        draws = [p.metrics(rng.integers(p.n, size=p.n)) for p in sets]
        for m in METRICS:
            boots[m].append(ratio(draws[0][m], draws[1][m]))
    scopes = [("pooled", point, boots, len(set(groups[0]) | set(groups[1])))]
    # per init state
    if shared:
        point_s = [per_state_metrics(p, g, shared) for p, g in zip(sets, groups, strict=True)]
        boots_s = {m: [] for m in METRICS}
        for _ in range(n_boot):
            draw = [shared[i] for i in rng.integers(len(shared), size=len(shared))]
            vals = [per_state_metrics(p, g, draw) for p, g in zip(sets, groups, strict=True)]
            for m in METRICS:
                boots_s[m].append(ratio(vals[0][m], vals[1][m]))
        scopes.append(("per_init_state", point_s, boots_s, len(shared)))
    for scope, pt, bs, n_states in scopes:
        for m in METRICS:
            lo, hi = (
                np.nanpercentile(bs[m], [2.5, 97.5])
                if np.isfinite(bs[m]).any()
                else (
                    np.nan,
                    np.nan,
                )
            )
            rows.append(
                {
                    "scope": scope,
                    "metric": m,
                    "num_value": pt[0][m],
                    "den_value": pt[1][m],
                    "ratio": ratio(pt[0][m], pt[1][m]),
                    "ci_low": float(lo),
                    "ci_high": float(hi),
                    "n_num": sets[0].n,
                    "n_den": sets[1].n,
                    "n_states": n_states,
                }
            )
    return pd.DataFrame(rows)
