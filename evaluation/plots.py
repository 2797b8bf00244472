"""Report plots: scaling curves from results, t-SNE and pairwise distances from datasets."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from evaluation.stats import pool, suite_average  # noqa: E402

log = logging.getLogger(__name__)

SOURCE_ORDER = ("none", "o2o", "dlr", "mi")
SOURCE_COLORS = {"none": "0.4", "o2o": "tab:blue", "dlr": "tab:red", "mi": "tab:green"}


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path


def _sources(values) -> list[str]:
    present = list(dict.fromkeys(values))
    return [s for s in SOURCE_ORDER if s in present] + sorted(
        s for s in present if s not in SOURCE_ORDER
    )


# --------------------------------------------------------------------------- scaling
def scaling_points(results: pd.DataFrame) -> pd.DataFrame:
    """arch x source x size: mean success over suites (tasks, seeds pooled) with a pooled CI."""
    per_suite = pool(results, ["arch", "source", "size", "suite"])
    return suite_average(per_suite, ["arch", "source", "size"])


def scaling_curves(results: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """One PNG per arch: success vs pretraining size, a line and CI band per source.

    ``none`` (no pretraining, size 0) is drawn as a dashed horizontal reference.
    """
    points = scaling_points(results)
    out = {}
    for arch in sorted(points["arch"].unique()):
        sub = points[points["arch"] == arch]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        sizes = sorted(s for s in sub["size"].unique() if s > 0)
        for source in _sources(sub["source"]):
            line = sub[sub["source"] == source].sort_values("size")
            color = SOURCE_COLORS.get(source)
            rate, lo, hi = (100 * line[c].to_numpy() for c in ("success_rate", "ci_low", "ci_high"))
            if source == "none" or (line["size"] == 0).all():
                if sizes:
                    ax.axhline(rate[0], color=color, ls="--", label=source)
                    ax.axhspan(lo[0], hi[0], color=color, alpha=0.15)
                continue
            ax.plot(line["size"], rate, marker="o", color=color, label=source)
            ax.fill_between(line["size"], lo, hi, color=color, alpha=0.2)
        if sizes and sizes[-1] / max(sizes[0], 1) >= 10:
            ax.set_xscale("log")
        ax.set_xlabel("pretraining episodes")
        ax.set_ylabel("success % (mean over suites)")
        ax.set_title(f"{arch}: scaling with pretraining data")
        ax.set_ylim(bottom=0)
        ax.legend()
        out[arch] = _save(fig, out_dir / f"scaling_{arch}.png")
    return out


def offline_curves(offline: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """One PNG per arch: held-out action MSE vs pretraining size (mean over suites and tasks,
    episode-weighted), a line per source with 95% error bars; ``none`` dashed."""
    from evaluation.offline import pool_offline

    points = pool_offline(offline, ["arch", "source", "size"])
    points["ci"] = 1.96 * points["se"]
    out = {}
    for arch in sorted(points["arch"].unique()):
        sub = points[points["arch"] == arch]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for source in _sources(sub["source"]):
            line = sub[sub["source"] == source].sort_values("size")
            color = SOURCE_COLORS.get(source)
            if (line["size"] <= 0).all():
                ax.axhline(line["action_mse"].iloc[0], color=color, ls="--", label=source)
                continue
            ax.errorbar(line["size"], line["action_mse"], yerr=line["ci"], marker="o", color=color,
                        capsize=3, label=source)  # fmt: skip
        ax.set_xlabel("pretraining episodes")
        ax.set_ylabel("held-out action MSE (lower is better)")
        ax.set_title(f"{arch}: held-out action error")
        ax.legend()
        out[arch] = _save(fig, out_dir / f"offline_{arch}.png")
    return out


# --------------------------------------------------------------------------- trajectories
@dataclass
class TrajectorySet:
    """End-effector paths of one dataset, resampled to a common length."""

    paths: np.ndarray  # (N, L, 3)
    pattern_ids: np.ndarray  # (N,)
    tasks: np.ndarray  # (N,) task names


def resample(path: np.ndarray, n_points: int) -> np.ndarray:
    """Linear interpolation of a (T, D) path to (n_points, D), evenly spaced in time."""
    t_old = np.linspace(0.0, 1.0, len(path))
    t_new = np.linspace(0.0, 1.0, n_points)
    return np.stack([np.interp(t_new, t_old, path[:, d]) for d in range(path.shape[1])], axis=1)


def load_trajectories(
    roots: Mapping[str, Path], n_points: int = 50, max_episodes: int = 300, seed: int = 0
) -> dict[str, TrajectorySet]:
    """Read eef paths (``observation.state[:, :3]``) and pattern ids of each source's dataset.

    At most ``max_episodes`` episodes per source (a fixed random subset) keep t-SNE cheap.
    """
    from generation.data.reader import read_episode_meta, read_frames
    from generation.data.schema import STATE_KEY

    out = {}
    for source, root in roots.items():
        meta = read_episode_meta(root)
        if len(meta) > max_episodes:
            meta = meta.sample(max_episodes, random_state=seed).sort_values("episode_index")
        frames = read_frames(root, columns=["index", "episode_index", STATE_KEY])
        by_episode = dict(tuple(frames.groupby("episode_index")))
        paths = []
        for index in meta["episode_index"]:
            states = np.stack(by_episode[index][STATE_KEY].to_numpy())
            paths.append(resample(states[:, :3].astype(np.float64), n_points))
        out[source] = TrajectorySet(
            paths=np.stack(paths) if paths else np.zeros((0, n_points, 3)),
            pattern_ids=meta["pattern_id"].to_numpy(dtype=np.int64),
            tasks=meta["task_name"].to_numpy(dtype=object),
        )
        log.info("read %d trajectories of %s from %s", len(paths), source, root)
    return out


def pairwise_distances(paths: np.ndarray) -> np.ndarray:
    """(N, N) mean over time of the point distance between time-aligned paths."""
    diff = paths[:, None] - paths[None]  # (N, N, L, 3)
    return np.linalg.norm(diff, axis=-1).mean(axis=-1)


def _order(ts: TrajectorySet) -> np.ndarray:
    """Episodes sorted by task, then pattern: DLR's patterns show up as diagonal blocks."""
    return np.lexsort((ts.pattern_ids, ts.tasks.astype(str)))


def tsne_plot(trajs: Mapping[str, TrajectorySet], path: Path, seed: int = 0) -> Path | None:
    """t-SNE of all sources' paths in one embedding; a panel per source, coloured by pattern."""
    from sklearn.manifold import TSNE

    sources = [s for s in _sources(trajs) if len(trajs[s].paths)]
    if sum(len(trajs[s].paths) for s in sources) < 3:
        return None
    x = np.concatenate([trajs[s].paths.reshape(len(trajs[s].paths), -1) for s in sources])
    perplexity = float(min(30.0, max(1.0, (len(x) - 1) / 3)))
    emb = TSNE(n_components=2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(
        x
    )
    fig, axes = plt.subplots(
        1, len(sources), figsize=(4 * len(sources), 3.8), squeeze=False, sharex=True, sharey=True
    )
    start = 0
    for ax, source in zip(axes[0], sources, strict=True):
        ts = trajs[source]
        part = emb[start : start + len(ts.paths)]
        start += len(ts.paths)
        for pattern in np.unique(ts.pattern_ids):
            mask = ts.pattern_ids == pattern
            label = "none" if pattern < 0 else f"pattern {pattern}"
            ax.scatter(part[mask, 0], part[mask, 1], s=10, label=label)
        ax.set_title(f"{source} ({len(ts.paths)} episodes)")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=7, markerscale=1.5)
    fig.suptitle("t-SNE of end-effector trajectories")
    return _save(fig, path)


def pairwise_plot(trajs: Mapping[str, TrajectorySet], path: Path) -> Path | None:
    """A pairwise-distance matrix per source, episodes sorted by task then pattern."""
    sources = [s for s in _sources(trajs) if len(trajs[s].paths) >= 2]
    if not sources:
        return None
    mats = {s: pairwise_distances(trajs[s].paths[_order(trajs[s])]) for s in sources}
    vmax = max(float(m.max()) for m in mats.values()) or 1.0
    fig, axes = plt.subplots(1, len(sources), figsize=(4 * len(sources), 3.8), squeeze=False)
    for ax, source in zip(axes[0], sources, strict=True):
        image = ax.imshow(mats[source], cmap="viridis", vmin=0, vmax=vmax)
        ax.set_title(f"{source}: sorted by task, pattern")
        ax.set_xlabel("episode")
        ax.set_ylabel("episode")
    fig.colorbar(image, ax=list(axes[0]), shrink=0.8, label="mean eef distance (m)")
    return _save(fig, path)
