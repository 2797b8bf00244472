"""Evaluation under LIBERO-PRO perturbations: its rows, the report's table and plot, and one
perturbed family run end to end with a tiny checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from test_policy_checkpoint import tiny_checkpoint

from evaluation.report import build_report
from evaluation.robustness import robustness_long, robustness_table
from evaluation.stats import difference_interval, with_rates

NOMINAL = ("task_a", "task_b")


def _rows(suite: str, tasks, successes: dict) -> pd.DataFrame:
    """10 episodes per task, seed 0; ``successes`` per (source, size)."""
    rows = [dict(arch="pi0", source=source, size=size, suite=suite, task=task, seed=0,
                 episodes=10, successes=k)
            for (source, size), k in successes.items() for task in tasks]  # fmt: skip
    return with_rates(pd.DataFrame(rows))


def nominal_results() -> pd.DataFrame:
    return _rows("libero_spatial", NOMINAL, {("none", 0): 2, ("dlr", 6): 8, ("dlr", 3): 5})


def perturbed_results(family: str = "swap", successes: dict | None = None) -> pd.DataFrame:
    successes = successes or {("none", 0): 1, ("dlr", 6): 4, ("dlr", 3): 5}
    rows = _rows(f"libero_spatial_{family}", ("copy_a", "copy_b"), successes)
    return rows.assign(base_suite="libero_spatial", perturbation=family,
                       base_task=rows["task"].map({"copy_a": "task_a", "copy_b": "task_b"}))  # fmt: skip


def test_drop_pairs_each_perturbed_task_with_its_nominal_twin() -> None:
    long = robustness_long(nominal_results(), perturbed_results())
    dlr = long[(long["source"] == "dlr") & (long["size"] == 6)].iloc[0]
    assert (dlr["episodes"], dlr["successes"]) == (20, 8)
    assert (dlr["nominal_episodes"], dlr["nominal_successes"]) == (20, 16)
    assert dlr["drop_points"] == pytest.approx(40.0)
    low, high = difference_interval(16, 20, 8, 20)
    assert (dlr["drop_ci_low"], dlr["drop_ci_high"]) == pytest.approx((100 * low, 100 * high))
    assert low > 0  # 16/20 against 8/20 is a clear drop

    display, numbers = robustness_table(long)
    assert len(display) == 2  # none and DLR at its largest size; n3 stays in the long frame
    shown = display.set_index("source").loc["DLR"]
    assert shown["suite"] == "Spatial" and shown["perturbation"] == "swap"
    assert shown["nominal %"] == "80.0 [58.4, 91.9]"
    assert shown["perturbed %"] == "40.0 [21.9, 61.3]"
    assert shown["drop (points)"].startswith("+40.0 [+")
    assert shown["n (nominal / perturbed)"] == "20 / 20"
    assert set(numbers["size"]) == {0, 6}


def test_a_perturbed_cell_without_its_nominal_episodes_has_no_drop() -> None:
    nominal = nominal_results()
    nominal = nominal[~((nominal["source"] == "dlr") & (nominal["task"] == "task_b"))]
    long = robustness_long(nominal, perturbed_results())
    dlr = long[(long["source"] == "dlr") & (long["size"] == 6)].iloc[0]
    assert pd.isna(dlr["nominal_success_rate"]) and pd.isna(dlr["drop_points"])
    display, _ = robustness_table(long)
    assert display.set_index("source").loc["DLR", "drop (points)"] == "-"


def test_report_shows_the_robustness_table_and_plot(smoke_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "smoke"
    shutil.copytree(smoke_run, run)
    results = pd.read_parquet(run / "evaluation" / "results.parquet")
    task = results["task"].iloc[0]
    frames = []
    for family, k in (("swap", 0), ("with_mug", 1)):
        rows = results.assign(suite=f"libero_spatial_{family}", successes=k, task=f"copy of {task}")
        frames.append(with_rates(rows).assign(base_suite="libero_spatial", perturbation=family,
                                              base_task=task))  # fmt: skip
    pd.concat(frames).to_parquet(run / "evaluation" / "robustness.parquet")
    (run / "evaluation" / "perturbations.json").write_text(
        '{"libero_spatial_swap": "swaps the start regions of objects"}'
    )
    outputs = build_report(run)
    assert {"robustness_md", "robustness_csv", "robustness_tex", "robustness_openvla"} <= set(
        outputs
    )
    index = (run / "report" / "report.md").read_text()
    assert "## Robustness under perturbations" in index and "robustness_openvla.png" in index
    assert "`libero_spatial_swap`: swaps the start regions of objects" in index
    table = pd.read_csv(run / "report" / "robustness.csv")
    assert set(table["perturbation"]) == {"swap", "with_mug"}
    assert (table["nominal_episodes"] == 2).all()  # smoke's 2 episodes per policy
    page = outputs["html"].read_text()
    assert "Robustness under perturbations" in page and "robustness_openvla.png" not in page


@pytest.mark.slow
def test_a_tiny_checkpoint_on_one_perturbed_family(tmp_path: Path) -> None:
    """LIBERO-Spatial task 0's swapped copy, one episode of 5 steps, rows with the twin."""
    from evaluation.closed_loop import read_cache
    from evaluation.perturbations import perturbation
    from evaluation.robustness import evaluate_perturbed

    ckpt = tiny_checkpoint(tmp_path)
    swap = perturbation("libero_spatial", "swap")
    rows = evaluate_perturbed(
        ckpt, swap, arch="openvla", source="none", size=0, tasks=[0], episodes_per_task=1,
        seeds=[0], out_dir=tmp_path / "eval", horizon=5, device="cpu",
    )  # fmt: skip
    assert rows["suite"].tolist() == ["libero_spatial_swap"] and rows["episodes"].tolist() == [1]
    stored = pd.read_parquet(tmp_path / "eval" / "robustness.parquet")
    assert stored["base_task"].tolist() == [
        "pick_up_the_black_bowl_between_the_plate_and_the_ramekin_and_place_it_on_the_plate"
    ]
    assert stored["perturbation"].tolist() == ["swap"]
    assert not (tmp_path / "eval" / "results.parquet").exists()  # nominal results untouched
    cache = tmp_path / "eval/episodes/openvla/none/n0/libero_spatial_swap/task0_seed0_h5.jsonl"
    assert read_cache(cache)[0]["length"] == 5
