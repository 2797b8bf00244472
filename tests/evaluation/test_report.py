"""The report from synthetic results, diversity metrics and tiny datasets (no model, no env)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evaluation.report import build_report, diversity_table, success_table
from evaluation.stats import with_rates

SUITES = ("libero_spatial", "libero_object", "libero_goal", "libero_10")


def synthetic_results() -> pd.DataFrame:
    """pi0 only; 2 tasks x 2 seeds x 10 episodes per suite; dlr at sizes 10 and 40."""
    rows = []
    runs = [("none", 0, 0), ("o2o", 10, 2), ("o2o", 40, 2), ("dlr", 10, 3), ("dlr", 40, 5)]
    for source, size, successes in runs:
        for s, suite in enumerate(SUITES):
            for task in ("task_a", "task_b"):
                for seed in (0, 1):
                    rows.append(dict(arch="pi0", source=source, size=size, suite=suite,
                                     task=task, seed=seed, episodes=10,
                                     successes=min(10, successes + s)))  # fmt: skip
    return with_rates(pd.DataFrame(rows))


def synthetic_diversity() -> pd.DataFrame:
    rows = []
    for source, scale in (("o2o", 1.0), ("dlr", 2.5)):
        for task in ("task_a", "task_b"):
            for metric, value in (("mean_pairwise_distance", 10.0), ("final_state_variance", 0.1)):
                rows.append(dict(source=source, task=task, metric=metric, value=value * scale))
    return pd.DataFrame(rows)


def write_dataset(root: Path, source: str, n_patterns: int, seed: int) -> None:
    from generation.data.episode import Episode
    from generation.data.schema import DatasetSpec
    from generation.data.writer import write_episodes

    rng = np.random.default_rng(seed)
    episodes = []
    for i in range(6):
        pattern = i % n_patterns
        t = 8 + i % 3
        direction = np.array([1.0, -1.0 if pattern else 1.0, 0.5])
        states = np.zeros((t, 8), np.float32)
        states[:, :3] = np.linspace(0, 1, t)[:, None] * direction + rng.normal(0, 0.01, (t, 3))
        episodes.append(
            Episode(
                suite="libero_90", task_index=0, task_name="task_a", language="do task a",
                init_state=np.zeros(5), actions=np.zeros((t, 7)), states=states,
                env_states=np.zeros((t, 84)), success=True, source=source,
                pattern_id=pattern if source == "dlr" else -1,
                images={"image": np.zeros((t, 16, 16, 3), np.uint8)},
            )
        )  # fmt: skip
    write_episodes(episodes, root, spec=DatasetSpec(image_size=16), progress=False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    (run / "evaluation").mkdir()
    synthetic_results().to_parquet(run / "evaluation" / "results.parquet")
    synthetic_diversity().to_parquet(run / "evaluation" / "diversity.parquet")
    write_dataset(run / "datasets" / "dlr" / "full", "dlr", n_patterns=2, seed=0)
    write_dataset(run / "datasets" / "o2o" / "full", "o2o", n_patterns=1, seed=1)
    return run


def test_success_table_numbers() -> None:
    display, numbers = success_table(synthetic_results())
    assert list(display.columns) == [
        "arch",
        "source",
        "size",
        "Spatial",
        "Object",
        "Goal",
        "Long",
        "Avg",
    ]
    assert display["source"].tolist() == ["none", "O2O-RL", "DLR"]  # paper order
    dlr = numbers[numbers["source"] == "dlr"].iloc[0]
    assert dlr["size"] == 40  # the largest pretraining size
    # DLR on Object: 5 + 1 = 6 successes of 10, for 2 tasks x 2 seeds -> 24 / 40
    assert dlr["libero_object_success_rate"] == pytest.approx(0.6)
    assert dlr["libero_object_episodes"] == 40
    assert dlr["avg_success_rate"] == pytest.approx((0.5 + 0.6 + 0.7 + 0.8) / 4)


def test_diversity_ratio() -> None:
    table = diversity_table(synthetic_diversity()).set_index("metric")
    assert list(table.columns) == ["o2o", "dlr", "dlr/o2o"]
    assert table.loc["mean_pairwise_distance", "dlr"] == pytest.approx(25.0)
    assert table.loc["final_state_variance", "dlr/o2o"] == pytest.approx(2.5)


def test_build_report_writes_everything(run_dir: Path) -> None:
    outputs = build_report(run_dir)
    expected = {f"{t}_{ext}" for t in ("success", "diversity") for ext in ("md", "csv", "tex")}
    expected |= {"scaling_pi0", "tsne", "pairwise_distances", "report"}
    assert expected <= set(outputs)
    for path in outputs.values():
        assert path.is_file() and path.stat().st_size > 0
        assert path.parent == run_dir / "report"
    success_md = (run_dir / "report" / "success.md").read_text()
    dlr_row = next(line for line in success_md.splitlines() if "| DLR |" in line)
    cells = [c.strip() for c in dlr_row.strip("|").split("|")]
    assert cells[:3] == ["pi0", "DLR", "40"]
    assert cells[4] == "60.0 [44.6, 73.7]"  # Object: 24/40, Wilson 95%
    index = (run_dir / "report" / "report.md").read_text()
    for name in ("scaling_pi0.png", "tsne.png", "pairwise_distances.png", "60.0 [44.6, 73.7]"):
        assert name in index
    assert "Skipped" not in index
    tex = (run_dir / "report" / "success.tex").read_text()
    assert r"\begin{tabular}" in tex and "60.0 [44.6, 73.7]" in tex
    assert "2.5" in (run_dir / "report" / "diversity.md").read_text()


def test_report_with_missing_inputs(tmp_path: Path) -> None:
    outputs = build_report(tmp_path)
    assert set(outputs) == {"report"}
    index = outputs["report"].read_text()
    assert index.count("Skipped") == 4
