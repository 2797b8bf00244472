"""Mode occupancy: which ways of solving a task a set of rollouts uses (the direct test of
collapse). Pure functions: arrays in, numbers out.

Each rollout gets two labels:
  - ``vae``: the fitted Discover VAE's pattern (majority vote of its state labels), the same
    labelling that DLR's patterns were cloned from;
  - ``strategy``: the scripted demonstrators' strategy of the nearest demonstration
    (1-NN on end-effector paths resampled by arc length, as ``separation.py`` measures).
Per group of rollouts: the label histogram and its entropy in nats (log 3 = three modes used
equally, 0 = one mode). For DLR, ``leakage`` is the share of pattern-k rollouts that the VAE
labels as another pattern.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from generation.demonstrators.separation import resample_path


def nearest_strategy(
    paths: Sequence[np.ndarray],
    demo_paths: Sequence[np.ndarray],
    demo_strategies: Sequence[int],
    n_points: int = 64,
) -> np.ndarray:
    """The strategy of each path's nearest demonstration (mean point-wise distance between
    arc-length-resampled paths)."""
    if not len(paths):
        return np.zeros(0, dtype=np.int64)
    a = np.stack([resample_path(p, n_points) for p in paths])
    b = np.stack([resample_path(p, n_points) for p in demo_paths])
    dist = np.linalg.norm(a[:, None] - b[None], axis=-1).mean(-1)
    return np.asarray(demo_strategies)[dist.argmin(1)]


def entropy(counts: Sequence[int] | np.ndarray) -> float:
    """Shannon entropy (nats) of a histogram; nan for an empty one."""
    c = np.asarray(counts, dtype=np.float64)
    if c.sum() <= 0:
        return float("nan")
    p = c[c > 0] / c.sum()
    return float(max(0.0, -(p * np.log(p)).sum()))  # no -0.0 for one mode


def summarise(counts: pd.DataFrame, n_labels: dict[str, int]) -> pd.DataFrame:
    """Per group of the long ``counts`` table (columns: task, source, pattern, stage,
    iteration, labeler, label, count), the histogram as shares, n, entropy, its maximum
    log(n_labels) and, where the group's pattern is a VAE pattern, the leakage."""
    keys = ["task", "source", "pattern", "stage", "iteration", "labeler"]
    rows = []
    for key, g in counts.groupby(keys, sort=False, dropna=False):
        row = dict(zip(keys, key, strict=True))
        k = n_labels[row["labeler"]]
        hist = np.zeros(k, dtype=np.int64)
        for label, c in zip(g["label"], g["count"], strict=True):
            hist[int(label)] += int(c)
        n = int(hist.sum())
        row |= {
            "n": n,
            "shares": " / ".join(f"{h / n:.2f}" for h in hist) if n else "",
            "entropy": entropy(hist),
            "max_entropy": float(np.log(k)),
        }
        pattern = row["pattern"]
        if row["labeler"] == "vae" and row["source"] in ("dlr", "mi") and pattern >= 0:
            row["leakage"] = 1.0 - hist[int(pattern)] / n if n else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def count_rows(labels: np.ndarray, **group) -> list[dict]:
    """Long-table rows (``group`` keys + label, count) for one group's labels."""
    values, counts = np.unique(np.asarray(labels, dtype=np.int64), return_counts=True)
    return [group | {"label": int(v), "count": int(c)} for v, c in zip(values, counts, strict=True)]
