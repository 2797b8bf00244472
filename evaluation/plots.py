"""Report plots: success and held-out error against pretraining size, PPO learning curves,
and t-SNE / pairwise distances of end-effector trajectories.

Every figure takes its colours, markers and labels from :mod:`evaluation.display`, puts its
legend outside the data, and says how many episodes stand behind each point.
"""

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

from evaluation import display  # noqa: E402
from evaluation.stats import pool, suite_average  # noqa: E402
from generation.manifest import atomic_write  # noqa: E402

log = logging.getLogger(__name__)

DODGE = 0.12  # x offset between sources at one size, in units of the gap between sizes


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` atomically (its format from the suffix) and close it."""
    path = Path(path)
    try:
        with atomic_write(path) as tmp:  # the format from the real suffix, not the temp name's
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix[1:])
    finally:
        plt.close(fig)
    return path


def _legend_outside(ax) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize=8)


def _n_text(counts) -> str:
    """``n=2`` or ``n=2-10``: episodes behind each point of a line."""
    lo, hi = int(np.min(counts)), int(np.max(counts))
    return f"n={lo}" if lo == hi else f"n={lo}-{hi}"


def _size_positions(sizes) -> dict[int, float]:
    """Evenly spaced x positions for the pretraining sizes (0 = none first): sizes of a run
    can span 3 to 3000, and a log axis has no place for 0."""
    return {size: float(i) for i, size in enumerate(sorted(set(int(s) for s in sizes)))}


def _size_axis(ax, positions: dict[int, float]) -> None:
    ax.set_xticks(list(positions.values()))
    ax.set_xticklabels(["0\n(none)" if s == 0 else str(s) for s in positions])
    ax.set_xlim(-0.5, max(positions.values()) + 0.5)
    ax.set_xlabel("pretraining episodes (one tick per dataset size)")
    ax.grid(axis="y", alpha=0.3)


def _dodged(sources: list[str]) -> dict[str, float]:
    """An x offset per pretrained source so that equal values at one size stay apart."""
    pretrained = [s for s in sources if s != "none"]
    mid = (len(pretrained) - 1) / 2
    return {"none": 0.0} | {s: DODGE * (i - mid) for i, s in enumerate(pretrained)}


def _errorbar_lines(ax, points: pd.DataFrame, value: str, low: str, high: str, unit: str) -> None:
    """A line per source over size positions, a point and error bar per size, ``none`` as a
    single point with a thin reference line; n (episodes per point) in each legend label."""
    positions = _size_positions(points["size"])
    sources = display.ordered(points["source"])
    offsets = _dodged(sources)
    for source in sources:
        line = points[points["source"] == source].sort_values("size")
        x = np.array([positions[int(s)] for s in line["size"]]) + offsets[source]
        y = line[value].to_numpy()
        yerr = np.vstack([y - line[low].to_numpy(), line[high].to_numpy() - y])
        color = display.source_color(source)
        label = f"{display.source_label(source)} ({_n_text(line['episodes'])}{unit})"
        if source == "none":
            label = f"none, no pretraining ({_n_text(line['episodes'])}{unit})"
            ax.axhline(y[0], color=color, ls=":", lw=1, alpha=0.7, zorder=1)
        ax.errorbar(x, y, yerr=yerr, color=color, marker=display.source_marker(source),
                    ls="-" if source != "none" else "none", capsize=3, ms=6, label=label,
                    clip_on=False, zorder=3)  # fmt: skip
    _size_axis(ax, positions)


# --------------------------------------------------------------------------- scaling
def scaling_points(results: pd.DataFrame) -> pd.DataFrame:
    """arch x source x size: mean success over suites (tasks, seeds pooled) with a pooled CI."""
    per_suite = pool(results, ["arch", "source", "size", "suite"])
    return suite_average(per_suite, ["arch", "source", "size"])


def scaling_curves(results: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """One PNG per arch: closed-loop success % against pretraining size, a line per source
    with Wilson 95% error bars, sources side by side at each size."""
    points = scaling_points(results)
    out = {}
    for arch in sorted(points["arch"].unique()):
        sub = points[points["arch"] == arch].copy()
        for c in ("success_rate", "ci_low", "ci_high"):
            sub[c] = 100 * sub[c]
        suites = sorted(results.loc[results["arch"] == arch, "suite"].unique())
        fig, ax = plt.subplots(figsize=(6, 3.6))
        _errorbar_lines(ax, sub, "success_rate", "ci_low", "ci_high", " episodes per point")
        ax.set_ylim(-3, 103)
        ax.set_ylabel("success rate (%), Wilson 95% CI")
        where = ", ".join(display.suite_label(s) for s in suites)
        mean = " (mean over suites)" if len(suites) > 1 else ""
        ax.set_title(f"{arch}: closed-loop success on {where}{mean}", fontsize=10)
        _legend_outside(ax)
        out[arch] = save_figure(fig, out_dir / f"scaling_{arch}.png")
    return out


def offline_curves(offline: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """One PNG per arch: held-out action MSE against pretraining size (mean over suites and
    tasks, episode-weighted), a line per source with 95% error bars (1.96 SE)."""
    from evaluation.offline import pool_offline

    points = pool_offline(offline, ["arch", "source", "size"])
    points["low"] = points["action_mse"] - 1.96 * points["se"]
    points["high"] = points["action_mse"] + 1.96 * points["se"]
    out = {}
    for arch in sorted(points["arch"].unique()):
        sub = points[points["arch"] == arch]
        fig, ax = plt.subplots(figsize=(6, 3.6))
        _errorbar_lines(ax, sub, "action_mse", "low", "high", " held-out episodes")
        ax.set_ylim(bottom=0)
        ax.set_ylabel("action MSE (actions in [-1, 1])\nlower is better")
        ax.set_title(f"{arch}: held-out action error, 95% CI", fontsize=10)
        _legend_outside(ax)
        out[arch] = save_figure(fig, out_dir / f"offline_{arch}.png")
    return out


def _yerr(value: pd.Series, low: pd.Series, high: pd.Series, scale: float = 1.0) -> np.ndarray:
    """Error-bar lengths below and above ``value`` (NaN where a side is missing)."""
    v, lo, hi = (scale * np.asarray(c, dtype=float) for c in (value, low, high))
    return np.abs(np.vstack([v - lo, hi - v]))


def robustness_plots(table: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """One PNG per arch from :func:`evaluation.robustness.robustness_table`'s numbers: per
    nominal suite, success on each perturbation family (filled) beside the nominal success of
    the same tasks and seeds (hollow), and the drop in points, Wilson / Newcombe 95% CIs."""
    out = {}
    for arch in sorted(table["arch"].unique()):
        sub = table[table["arch"] == arch]
        suites = sorted(sub["base_suite"].unique())
        fig, axes = plt.subplots(len(suites), 2, figsize=(11, 3.6 * len(suites)), squeeze=False)
        for (ax, ax_drop), suite in zip(axes, suites, strict=True):
            cells = sub[sub["base_suite"] == suite]
            families = sorted(cells["perturbation"].unique())
            sources = display.ordered(cells["source"])
            width = 0.7 / len(sources)
            for i, source in enumerate(sources):
                line = cells[cells["source"] == source]
                x = np.array([families.index(f) for f in line["perturbation"]], dtype=float)
                x += (i - (len(sources) - 1) / 2) * width
                style = dict(
                    color=display.source_color(source),
                    ls="none",
                    capsize=2,
                    ms=5,
                    marker=display.source_marker(source),
                    clip_on=False,
                )
                nominal = 100 * line["nominal_success_rate"].to_numpy(dtype=float)
                ax.errorbar(
                    x - 0.2 * width,
                    nominal,
                    mfc="white",
                    **style,
                    yerr=_yerr(
                        line["nominal_success_rate"],
                        line["nominal_ci_low"],
                        line["nominal_ci_high"],
                        100,
                    ),
                )
                perturbed = 100 * line["success_rate"].to_numpy(dtype=float)
                ax.plot(  # a thin line joins each nominal point to its perturbed one
                    np.vstack([x - 0.2 * width, x + 0.2 * width]),
                    np.vstack([nominal, perturbed]),
                    color=style["color"],
                    lw=1,
                    alpha=0.6,
                )
                label = f"{display.source_label(source)} ({_n_text(line['episodes'])} episodes)"
                ax.errorbar(
                    x + 0.2 * width,
                    perturbed,
                    yerr=_yerr(line["success_rate"], line["ci_low"], line["ci_high"], 100),
                    label=label,
                    **style,
                )
                ax_drop.errorbar(
                    x,
                    line["drop_points"].to_numpy(dtype=float),
                    label=label,
                    **style,
                    yerr=_yerr(line["drop_points"], line["drop_ci_low"], line["drop_ci_high"]),
                )
            for a in (ax, ax_drop):
                a.set_xticks(range(len(families)))
                a.set_xticklabels(families, rotation=20)
                a.grid(axis="y", alpha=0.3)
            ax.set_ylim(-3, 103)
            ax.set_ylabel("success rate (%), Wilson 95% CI")
            label = display.suite_label(suite)
            ax.set_title(f"{label}: nominal (hollow) and perturbed (filled)", fontsize=10)
            ax_drop.axhline(0, color="black", lw=0.8)
            ax_drop.set_ylim(-103, 103)
            ax_drop.set_ylabel("nominal - perturbed\n(points, Newcombe 95% CI)")
            ax_drop.set_title(f"{label}: drop, same tasks, init-state indices, seeds", fontsize=10)
            _legend_outside(ax_drop)
        fig.suptitle(f"{arch}: closed-loop success under LIBERO-PRO perturbations", fontsize=11)
        fig.tight_layout()
        out[arch] = save_figure(fig, out_dir / f"robustness_{arch}.png")
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
    """t-SNE of all sources' paths in one embedding; a panel per source, coloured by pattern
    (episodes without one in grey), one legend for all panels."""
    from sklearn.manifold import TSNE

    sources = [s for s in display.ordered(trajs) if len(trajs[s].paths)]
    if sum(len(trajs[s].paths) for s in sources) < 3:
        return None
    x = np.concatenate([trajs[s].paths.reshape(len(trajs[s].paths), -1) for s in sources])
    perplexity = float(min(30.0, max(1.0, (len(x) - 1) / 3)))
    tsne = TSNE(n_components=2, perplexity=perplexity, random_state=seed, init="pca")
    emb = tsne.fit_transform(x)
    fig, axes = plt.subplots(
        1, len(sources), figsize=(3.6 * len(sources), 3.6), squeeze=False, sharex=True, sharey=True
    )
    start, shown = 0, {}
    for ax, source in zip(axes[0], sources, strict=True):
        ts = trajs[source]
        part = emb[start : start + len(ts.paths)]
        start += len(ts.paths)
        for pattern in np.unique(ts.pattern_ids):
            mask = ts.pattern_ids == pattern
            label = display.pattern_label(int(pattern))
            shown[label] = ax.scatter(part[mask, 0], part[mask, 1], s=14, label=label,
                                      color=display.pattern_color(int(pattern)))  # fmt: skip
        ax.set_title(f"{display.source_label(source)} (n={len(ts.paths)} episodes)", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    order = sorted(shown, key=lambda lab: (lab != "no pattern", lab))
    fig.legend([shown[k] for k in order], order, loc="upper left", bbox_to_anchor=(1.0, 0.9),
               frameon=False, fontsize=8)  # fmt: skip
    fig.suptitle("t-SNE of end-effector paths (resampled to 50 points), coloured by pattern")
    fig.tight_layout()
    return save_figure(fig, path)


def _blocks(ts: TrajectorySet, order: np.ndarray) -> list[float]:
    """Where (task, pattern) changes along the sorted episodes: lines between DLR's blocks."""
    keys = list(zip(ts.tasks[order].astype(str), ts.pattern_ids[order], strict=True))
    return [i - 0.5 for i in range(1, len(keys)) if keys[i] != keys[i - 1]]


def pairwise_plot(trajs: Mapping[str, TrajectorySet], path: Path) -> Path | None:
    """A pairwise-distance matrix per source, episodes sorted by task then pattern."""
    sources = [s for s in display.ordered(trajs) if len(trajs[s].paths) >= 2]
    if not sources:
        return None
    orders = {s: _order(trajs[s]) for s in sources}
    mats = {s: pairwise_distances(trajs[s].paths[orders[s]]) for s in sources}
    vmax = max(float(m.max()) for m in mats.values()) or 1.0
    fig, axes = plt.subplots(1, len(sources), figsize=(3.8 * len(sources), 3.6), squeeze=False)
    for ax, source in zip(axes[0], sources, strict=True):
        image = ax.imshow(mats[source], cmap="viridis", vmin=0, vmax=vmax)
        for edge in _blocks(trajs[source], orders[source]):
            ax.axhline(edge, color="white", lw=0.6)
            ax.axvline(edge, color="white", lw=0.6)
        n = len(mats[source])
        ax.set_title(f"{display.source_label(source)} (n={n} episodes)", fontsize=10)
        ax.set_xlabel("episode (by task, then pattern)")
        ax.set_ylabel("episode")
    fig.colorbar(image, ax=list(axes[0]), shrink=0.8, label="mean end-effector distance (m)")
    return save_figure(fig, path)
