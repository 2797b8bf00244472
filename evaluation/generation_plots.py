"""Figures of the generator: PPO learning curves and mode occupancy over training.

Pure functions of the tables in :mod:`evaluation.generation_tables` (frames in, PNG out).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from evaluation import display
from evaluation.plots import save_figure
from evaluation.stats import wilson_interval

PATTERN_STYLES = ["-", "--", ":", "-."]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(source: str, pattern: int) -> str:
    name = display.source_label(source)
    return name if pattern < 0 else f"{name} {display.pattern_label(pattern)}"


def learning_curves_plot(curves: pd.DataFrame, path: Path) -> Path | None:
    """Per task a row: PPO's training success pooled over a trailing window of iterations
    (Wilson 95% band), KL to init, entropy."""
    if curves.empty:
        return None
    plt = _plt()
    tasks = list(dict.fromkeys(curves["task"]))
    fig, axes = plt.subplots(len(tasks), 3, figsize=(15, 3.6 * len(tasks)), squeeze=False)
    for row, task in zip(axes, tasks, strict=True):
        for (source, pattern), g in curves[curves["task"] == task].groupby(["source", "pattern"]):
            color = display.source_color(source)
            style = PATTERN_STYLES[max(int(pattern), 0) % len(PATTERN_STYLES)]
            label = f"{_label(source, int(pattern))} (n={int(g['episodes'].sum())} eps)"
            x = g["iteration"]
            # an iteration finishes few episodes: pool a trailing window of ~1/10 of the run
            w = max(1, len(g) // 10)
            s_w = g["successes"].rolling(w, min_periods=1).sum().astype(int)
            n_w = g["episodes"].rolling(w, min_periods=1).sum().astype(int)
            ci = np.array([wilson_interval(a, b) for a, b in zip(s_w, n_w, strict=True)])
            rate = np.where(n_w > 0, s_w / n_w.clip(lower=1), np.nan)
            row[0].plot(x, 100 * rate, style, color=color, label=f"{label}, window {w}")
            row[0].fill_between(x, 100 * ci[:, 0], 100 * ci[:, 1], color=color, alpha=0.08)
            for ax, column in ((row[1], "kl_to_init"), (row[2], "entropy")):
                if column in g:
                    ax.plot(x, g[column], style, color=color, marker=".")
        for ax, title, unit in zip(
            row,
            ["training success, trailing window", "KL(pi || pi_init)", "policy entropy"],
            ["success (%), Wilson 95% band", "nats per state", "nats"],
            strict=True,
        ):
            ax.set_title(f"{task}: {title}")
            ax.set_xlabel("PPO iteration")
            ax.set_ylabel(unit)
            ax.grid(alpha=0.3)
        row[0].set_ylim(-3, 103)
        row[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.18), ncol=3)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)


def occupancy_plot(summary: pd.DataFrame, path: Path) -> Path | None:
    """Strategy entropy of successful episodes: BC's (iteration 0), PPO's over windows of
    training, the final rollouts (star); per source and pattern. One panel per labeler
    (demonstrator strategy, VAE pattern) and task."""
    if summary.empty:
        return None
    plt = _plt()
    tasks = list(dict.fromkeys(summary["task"]))
    labelers = [x for x in ("strategy", "vae") if x in set(summary["labeler"])]
    fig, axes = plt.subplots(
        len(tasks), len(labelers), figsize=(6.5 * len(labelers), 3.8 * len(tasks)), squeeze=False
    )
    for row, task in zip(axes, tasks, strict=True):
        for ax, labeler in zip(row, labelers, strict=True):
            s = summary[(summary["task"] == task) & (summary["labeler"] == labeler)]
            for (source, pattern), g in s.groupby(["source", "pattern"]):
                g = g.sort_values(["stage", "iteration"])  # "ppo" before "rollouts"
                color = display.source_color(source)
                style = PATTERN_STYLES[max(int(pattern), 0) % len(PATTERN_STYLES)]
                ppo = g[g["stage"].isin(["bc", "ppo"])].sort_values("iteration")  # BC at 0
                ax.plot(ppo["iteration"], ppo["entropy"], style, color=color, marker=".",
                        label=_label(source, int(pattern)))  # fmt: skip
                final = g[g["stage"] == "rollouts"]
                ax.scatter(final["iteration"], final["entropy"], color=color, marker="*", s=80)
            if len(s):
                ax.axhline(s["max_entropy"].iloc[0], color="0.5", lw=0.8, ls=":")
            ax.set_title(
                f"{task}: {'demonstrator strategy' if labeler == 'strategy' else 'VAE pattern'}"
            )
            ax.set_xlabel("PPO iteration (0: BC; points pool a window; star: final rollouts)")
            ax.set_ylabel("entropy of successful episodes (nats)")
            ax.set_ylim(bottom=-0.05)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
