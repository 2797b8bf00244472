"""Held-out action error: per-frame predictions of a real tiny checkpoint, the per-task
summary's arithmetic, and the report's table and plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_policy_checkpoint import tiny_checkpoint

from evaluation.offline import OFFLINE_COLUMNS, evaluate_offline, offline_table, summarise


def test_predictions_match_closed_loop_actions(tmp_path: Path) -> None:
    import torch
    from lerobot.datasets import LeRobotDataset

    from evaluation.offline import predicted_actions
    from evaluation.policy_runner import PolicyRunner

    ckpt = tiny_checkpoint(tmp_path)
    frames = predicted_actions(ckpt, tmp_path / "data", batch_size=5)
    assert len(frames) == 24 and frames["episode_index"].nunique() == 4
    # frame 7's error is that of the action the closed-loop runner takes from its observation
    item = LeRobotDataset("local/data", root=tmp_path / "data", video_backend="pyav")[7]
    obs = {
        "state": item["observation.state"].numpy(),
        "env_state": item["observation.environment_state"].numpy(),
        "image": (item["observation.images.image"].permute(1, 2, 0).numpy() * 255).round()
        .astype(np.uint8),
    }  # fmt: skip
    runner = PolicyRunner(ckpt, device="cpu")
    runner.reset()
    with torch.inference_mode():
        action = runner.act(obs, item["task"])
    expected = float(((action - item["action"].numpy()) ** 2).mean())
    assert frames["sq_error"].iloc[7] == pytest.approx(expected, rel=1e-3, abs=1e-5)


def test_evaluate_offline_merges_rows(tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path)
    kwargs = dict(arch="openvla", suite="libero_object", dataset_root=tmp_path / "data",
                  out_dir=tmp_path / "eval")  # fmt: skip
    evaluate_offline(ckpt, source="none", size=0, **kwargs)
    evaluate_offline(ckpt, source="dlr", size=4, **kwargs)
    rows = evaluate_offline(ckpt, source="dlr", size=4, **kwargs)  # rerun: replaces, no dupes
    table = pd.read_parquet(tmp_path / "eval" / "offline.parquet")
    assert list(table.columns) == list(OFFLINE_COLUMNS)
    assert table["source"].tolist() == ["dlr", "none"] and len(rows) == 1
    assert (table["episodes"] == 4).all() and (table["frames"] == 24).all()
    assert (table["task"] == -1).all()  # "pick up the soup" is no LIBERO-Object instruction
    assert (table["action_mse"] > 0).all() and table["gripper_agreement"].between(0, 1).all()


def test_summary_and_pooled_table_arithmetic() -> None:
    frames = pd.DataFrame(
        {
            "task": ["a"] * 4 + ["b"] * 2,
            "episode_index": [0, 0, 1, 1, 2, 3],
            "sq_error": [1.0, 3.0, 4.0, 4.0, 0.5, 1.5],
            "gripper_agree": [True, False, True, True, True, True],
        }
    )
    s = summarise(frames, {"a": 0, "b": 1}).set_index("task")
    assert s.loc[0, "action_mse"] == pytest.approx(3.0)  # episodes 2.0 and 4.0
    assert s.loc[0, "action_mse_se"] == pytest.approx(np.std([2.0, 4.0], ddof=1) / np.sqrt(2))
    assert s.loc[0, "gripper_agreement"] == pytest.approx(0.75)
    assert s.loc[1, "action_mse"] == pytest.approx(1.0) and s.loc[1, "frames"] == 2
    rows = s.reset_index().assign(arch="pi0", source="dlr", size=8, suite="libero_spatial")
    display, numbers = offline_table(rows)
    # tasks pooled by episodes: (3.0 * 2 + 1.0 * 2) / 4; SE = sqrt(sum (se_i * n_i)^2) / N
    assert numbers.loc[0, "libero_spatial_action_mse"] == pytest.approx(2.0)
    se = np.sqrt((s.loc[0, "action_mse_se"] * 2) ** 2 + (s.loc[1, "action_mse_se"] * 2) ** 2) / 4
    assert numbers.loc[0, "libero_spatial_action_mse_ci"] == pytest.approx(1.96 * se)
    assert display.loc[0, "Spatial MSE"].startswith("2.0000 ± ")


def test_report_has_the_offline_table(tmp_path: Path) -> None:
    from evaluation.report import build_report

    rows = []
    for source, size, mse in (("none", 0, 0.3), ("o2o", 4, 0.2), ("o2o", 8, 0.15),
                              ("dlr", 4, 0.18), ("dlr", 8, 0.1)):  # fmt: skip
        rows.append({"arch": "openvla", "source": source, "size": size, "suite": "libero_spatial",
                     "task": 0, "episodes": 3, "frames": 300, "action_mse": mse,
                     "action_mse_se": 0.01, "gripper_agreement": 0.9})  # fmt: skip
    (tmp_path / "evaluation").mkdir()
    pd.DataFrame(rows).to_parquet(tmp_path / "evaluation" / "offline.parquet")
    outputs = build_report(tmp_path)
    assert {"offline_md", "offline_csv", "offline_tex", "offline_openvla"} <= set(outputs)
    md = (tmp_path / "report" / "offline.md").read_text()
    assert "| openvla | DLR | 8 | 0.1000 ± 0.0196 | 90% |" in md
    assert "Held-out action error" in outputs["report"].read_text()
