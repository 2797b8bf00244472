"""The report's generation tables come from the generator's manifests and curves alone."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from evaluation.generation_tables import generation_success, generation_tasks, pooled_success
from evaluation.report import build_report


def _manifest(d: Path, result: dict, seconds: float, config: dict | None = None, status="complete"):
    d.mkdir(parents=True, exist_ok=True)
    m = {"status": status, "result": result, "wall_time_s": seconds, "config": config or {}}
    (d / "manifest.json").write_text(json.dumps(m))


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    t = tmp_path / "generation" / "libero_object" / "3"
    _manifest(t / "demos", {"episodes": 30}, 10.0)
    _manifest(t / "discover", {"episode_nmi": 0.8, "episode_ari": 0.7, "pattern_sizes": [9, 11, 10]}, 2.0)  # fmt: skip
    _manifest(
        t / "learn",
        {"success_pattern_0": 0.5, "success_pattern_1": 0.25, "success_o2o": 0.75, "separation_ratio": 1.5},
        5.0,
        {"learn": {"eval_episodes": 4}},
    )  # fmt: skip
    for sub, secs in (("dlr/pattern_0", 3.0), ("dlr/pattern_1", 4.0), ("o2o", 6.0)):
        _manifest(t / "reinforce" / sub, {}, secs)
        pd.DataFrame({"success_rate": [0.25, 0.5, 0.75], "episodes": [4, 4, 8]}).to_csv(
            t / "reinforce" / sub / "curves.csv", index=False
        )
    # an iteration in which no episode finished logs a NaN success rate (tiny budgets)
    pd.DataFrame({"success_rate": [float("nan")], "episodes": [0]}).to_csv(
        t / "reinforce" / "o2o" / "curves.csv", index=False
    )
    _manifest(t / "reinforce" / "mi", {}, 99.0, status="running")  # unfinished: not counted
    _manifest(t / "rollouts" / "dlr", {"0": {"attempted": 4, "succeeded": 2, "success_rate": 0.5, "kept": 2},
                                       "1": {"attempted": 8, "succeeded": 2, "success_rate": 0.25, "kept": 2}}, 7.0)  # fmt: skip
    _manifest(t / "rollouts" / "o2o", {"None": {"attempted": 5, "succeeded": 4, "success_rate": 0.8, "kept": 4}}, 8.0)  # fmt: skip
    return tmp_path


def test_task_table(run_dir: Path) -> None:
    row = generation_tasks(run_dir).iloc[0]
    assert (row["suite"], row["task"], row["demos"]) == ("libero_object", 3, 30)
    assert row["episode_nmi"] == 0.8 and row["pattern_sizes"] == "9 / 11 / 10"
    assert row["reinforce_s"] == 13.0  # the three complete PPO runs, not the running one
    assert row["rollouts_s"] == 15.0 and row["bc_separation_ratio"] == 1.5


def test_success_before_and_after_reinforce(run_dir: Path) -> None:
    s = generation_success(run_dir).set_index(["source", "pattern"])
    assert s.loc[("dlr", "1"), "bc_success"] == 0.25 and s.loc[("dlr", "1"), "bc_episodes"] == 4
    assert s.loc[("dlr", "1"), "ppo_first_iter"] == "1/4"
    assert s.loc[("dlr", "1"), "ppo_last_iter"] == "6/8"
    assert s.loc[("o2o", "-"), "bc_success"] == 0.75 and s.loc[("o2o", "-"), "kept"] == 4
    assert s.loc[("o2o", "-"), "ppo_last_iter"] == "0/0"
    pooled = pooled_success(generation_success(run_dir)).set_index("source")
    assert pooled.loc["dlr", "bc_successes"] == 3  # 0.5 * 4 + 0.25 * 4
    assert pooled.loc["dlr", "rollout_success"] == pytest.approx(4 / 12)
    assert pooled.loc["o2o", "rollout_success"] == pytest.approx(0.8)


def test_report_section(run_dir: Path) -> None:
    outputs = build_report(run_dir)
    assert {
        "generation_tasks_md",
        "generation_success_csv",
        "generation_success_pooled_tex",
    } <= set(outputs)
    assert "## Generation (Discover, Learn, Reinforce)" in outputs["report"].read_text()
