"""Held-out action error: how closely an adapted policy predicts a demonstrator's actions on
episodes it never trained on, without a simulator.

Closed-loop success is the benchmark's measure, but at CPU scale (tiny models, a few hundred
steps) every policy may score 0 %, which ranks nothing. The error of the policy's first action
against the held-out demonstrator action, frame by frame, still separates pretraining sources:
lower is better. Per episode we average over frames; per task we report the mean over episodes
and its standard error (episodes are the independent units, frames are not).

Rows of ``evaluation/offline.parquet``: ``arch, source, size, suite, task, episodes, frames,
action_mse, action_mse_se, gripper_agreement`` (the fraction of frames whose gripper command
has the demonstrator's sign).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.results import merge_table

log = logging.getLogger(__name__)

OFFLINE_KEY = ("arch", "source", "size", "suite", "task")
OFFLINE_COLUMNS = (*OFFLINE_KEY, "episodes", "frames", "action_mse", "action_mse_se",
                   "gripper_agreement")  # fmt: skip


def predicted_actions(
    checkpoint: str | Path, dataset_root: str | Path, batch_size: int = 64, seed: int = 0
) -> pd.DataFrame:
    """Every frame of the dataset: the policy's first action from that frame's observation,
    next to the recorded one. Columns ``episode_index, task, sq_error, gripper_agree``."""
    import torch
    from lerobot.datasets import LeRobotDataset
    from torch.utils.data import DataLoader

    from evaluation.policy_runner import PolicyRunner

    root = Path(dataset_root)
    if not (root / "meta" / "info.json").is_file():
        raise FileNotFoundError(f"no LeRobot dataset at {root} (held-out demonstrations)")
    runner = PolicyRunner(checkpoint, device="cpu")
    dataset = LeRobotDataset(f"local/{root.name}", root=root, video_backend="pyav")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    torch.manual_seed(seed)  # flow-matching policies sample their actions
    rows = []
    with torch.inference_mode():
        for batch in loader:
            runner.reset()  # a fresh action chunk for every frame: no queue across frames
            inputs = {k: v for k, v in batch.items() if k.startswith("observation.")}
            inputs["task"] = list(batch["task"])
            pred = runner.postprocessor(runner.policy.select_action(runner.preprocessor(inputs)))
            pred = pred.detach().cpu().reshape(len(batch["action"]), -1)[:, :7].clamp(-1, 1)
            true = batch["action"].float()
            rows.append(
                pd.DataFrame(
                    {
                        "episode_index": batch["episode_index"].numpy(),
                        "task": list(batch["task"]),
                        "sq_error": ((pred - true) ** 2).mean(-1).numpy(),
                        "gripper_agree": (
                            torch.sign(pred[:, -1]) == torch.sign(true[:, -1])
                        ).numpy(),
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


def summarise(frames: pd.DataFrame, task_index: dict[str, int]) -> pd.DataFrame:
    """Per task: mean over episodes of the per-episode MSE, its standard error, agreement."""
    per_episode = frames.groupby(["task", "episode_index"]).agg(
        mse=("sq_error", "mean"), agree=("gripper_agree", "mean"), frames=("sq_error", "size")
    )
    out = []
    for task, eps in per_episode.groupby(level="task"):
        n = len(eps)
        out.append(
            {
                "task": task_index.get(task, -1),
                "episodes": n,
                "frames": int(eps["frames"].sum()),
                "action_mse": float(eps["mse"].mean()),
                "action_mse_se": float(eps["mse"].std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan,
                "gripper_agreement": float(eps["agree"].mean()),
            }
        )
    return pd.DataFrame(out)


def evaluate_offline(
    checkpoint: str | Path,
    *,
    arch: str,
    source: str,
    size: int,
    suite: str,
    dataset_root: str | Path,
    out_dir: str | Path,
    seed: int = 0,
) -> pd.DataFrame:
    """Score one adapted checkpoint on the held-out dataset; merge its rows into
    ``out_dir/offline.parquet`` and return them."""
    from generation.envs.suites import list_tasks

    frames = predicted_actions(checkpoint, dataset_root, seed=seed)
    language = {t.language: t.index for t in list_tasks(suite)}
    rows = summarise(frames, language).assign(arch=arch, source=source, size=int(size), suite=suite)
    rows = rows[list(OFFLINE_COLUMNS)]
    merge_table(Path(out_dir) / "offline.parquet", rows, OFFLINE_KEY)
    return rows


def pool_offline(offline: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Pool tasks (and whatever else ``by`` leaves out): the episode-weighted mean of the
    per-task MSEs and gripper agreements, and the standard error of that mean from the
    per-task SEs (independent tasks): sqrt(sum (se_i n_i)^2) / sum n_i."""
    w = offline["episodes"]
    df = offline.assign(
        mse_w=offline["action_mse"] * w,
        agree_w=offline["gripper_agreement"] * w,
        var_w=(offline["action_mse_se"].fillna(0) * w) ** 2,
    )
    pooled = df.groupby(by)[["episodes", "mse_w", "agree_w", "var_w"]].sum().reset_index()
    pooled["action_mse"] = pooled["mse_w"] / pooled["episodes"]
    pooled["gripper_agreement"] = pooled["agree_w"] / pooled["episodes"]
    pooled["se"] = np.sqrt(pooled["var_w"]) / pooled["episodes"]
    return pooled.drop(columns=["mse_w", "agree_w", "var_w"])


def offline_table(offline: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(display, numbers): arch x source x size rows, per suite the episode-weighted mean
    action MSE over tasks with a 95% interval (1.96 standard errors)."""
    if offline.empty:
        return pd.DataFrame(), pd.DataFrame()
    pooled = pool_offline(offline, ["arch", "source", "size", "suite"])
    display_rows, number_rows = [], []
    from evaluation.report import SOURCE_LABELS, SOURCE_ORDER, SUITE_LABELS, _ordered

    for arch in sorted(pooled["arch"].unique()):
        sub = pooled[pooled["arch"] == arch]
        for source in _ordered(sub["source"].tolist(), SOURCE_ORDER):
            for size in sorted(sub[sub["source"] == source]["size"].unique()):
                cells = sub[(sub["source"] == source) & (sub["size"] == size)].set_index("suite")
                shown = {"arch": arch, "source": SOURCE_LABELS.get(source, source), "size": size}
                numbers = {"arch": arch, "source": source, "size": int(size)}
                for suite, c in cells.iterrows():
                    label = SUITE_LABELS.get(suite, suite)
                    shown[f"{label} MSE"] = f"{c['action_mse']:.4f} ± {1.96 * c['se']:.4f}"
                    shown[f"{label} gripper"] = f"{100 * c['gripper_agreement']:.0f}%"
                    numbers |= {
                        f"{suite}_action_mse": float(c["action_mse"]),
                        f"{suite}_action_mse_ci": float(1.96 * c["se"]),
                        f"{suite}_gripper_agreement": float(c["gripper_agreement"]),
                        f"{suite}_episodes": int(c["episodes"]),
                    }
                display_rows.append(shown)
                number_rows.append(numbers)
    return pd.DataFrame(display_rows), pd.DataFrame(number_rows)
