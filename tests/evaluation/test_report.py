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
        "n per suite",
    ]
    assert display["n per suite"].tolist() == ["40", "40", "40"]  # 2 tasks x 2 seeds x 10
    assert display["source"].tolist() == ["none", "O2O-RL", "DLR"]  # paper order
    dlr = numbers[numbers["source"] == "dlr"].iloc[0]
    assert dlr["size"] == 40  # the largest pretraining size
    # DLR on Object: 5 + 1 = 6 successes of 10, for 2 tasks x 2 seeds -> 24 / 40
    assert dlr["libero_object_success_rate"] == pytest.approx(0.6)
    assert dlr["libero_object_episodes"] == 40
    assert dlr["avg_success_rate"] == pytest.approx((0.5 + 0.6 + 0.7 + 0.8) / 4)


def test_diversity_table_units_and_uncertainty() -> None:
    df = synthetic_diversity()
    df.loc[(df["task"] == "task_b") & (df["source"] == "dlr"), "value"] *= 2  # tasks disagree
    display, numbers = diversity_table(df)
    assert list(display.columns) == ["metric", "unit", "O2O-RL", "DLR", "DLR / O2O-RL"]
    row = numbers.set_index("metric").loc["mean_pairwise_distance"]
    assert row["unit"] == "m" and row["dlr_tasks"] == 2
    assert row["dlr_mean"] == pytest.approx(37.5)  # tasks 25 and 50
    assert row["dlr_se"] == pytest.approx(np.std([25, 50], ddof=1) / np.sqrt(2))
    assert row["dlr/o2o"] == pytest.approx(3.75)
    assert (row["dlr/o2o_min"], row["dlr/o2o_max"]) == pytest.approx((2.5, 5.0))
    shown = display.set_index("metric").loc["mean pairwise distance"]
    assert shown["DLR"] == "37.5 ± 12" and shown["DLR / O2O-RL"] == "3.75 (tasks 2.5-5)"
    one_task = diversity_table(df[df["task"] == "task_a"])[0].set_index("metric")
    assert one_task.loc["final-state variance", "DLR"] == "0.25"  # no error with one task


def test_build_report_writes_everything(run_dir: Path) -> None:
    outputs = build_report(run_dir)
    expected = {f"{t}_{ext}" for t in ("success", "diversity") for ext in ("md", "csv", "tex")}
    expected |= {"scaling_pi0", "tsne", "pairwise_distances", "report", "html"}
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
    assert "| 2.5 |" in (run_dir / "report" / "diversity.md").read_text()


def test_report_with_missing_inputs(tmp_path: Path) -> None:
    outputs = build_report(tmp_path)
    assert set(outputs) == {"report", "html"}
    index = outputs["report"].read_text()
    assert index.count("Skipped") == 3  # success (and scaling), diversity, trajectories
    assert "No kept datasets" in outputs["html"].read_text()


def test_plot_helpers() -> None:
    from evaluation import display
    from evaluation.plots import _dodged, _n_text, _size_positions

    offsets = _dodged(["none", "o2o", "dlr"])
    assert offsets["none"] == 0 and offsets["o2o"] == -offsets["dlr"] != 0  # side by side
    assert _n_text([2, 2]) == "n=2" and _n_text([2, 10]) == "n=2-10"
    assert _size_positions([300, 0, 30, 3]) == {0: 0.0, 3: 1.0, 30: 2.0, 300: 3.0}
    colors = [display.pattern_color(p) for p in range(-1, 6)]
    assert len(set(colors)) == len(colors)  # "no pattern" and patterns 0-5 all differ
    assert not set(colors[1:]) & set(display.SOURCE_COLORS.values())


def test_learning_curves_and_media(smoke_run: Path, tmp_path: Path) -> None:
    import av

    from evaluation.generation_tables import learning_curves
    from evaluation.report_media import encode_webm, episode_frames, pick_episodes

    curves = learning_curves(smoke_run)
    runs = curves.groupby(["source", "pattern"]).size()
    assert runs.to_dict() == {("dlr", 0): 4, ("dlr", 1): 4, ("dlr", 2): 4, ("o2o", -1): 12}

    meta = pd.DataFrame({"episode_index": range(6), "pattern_id": [0, 0, 0, 1, 1, 1],
                         "task_name": ["a", "a", "b", "a", "a", "a"],
                         "success": [False, True, True, False, False, True]})  # fmt: skip
    picked = pick_episodes(meta, per_group=2)
    assert picked["episode_index"].tolist() == [1, 2, 5, 3]  # successes first, tasks spread

    frames = episode_frames(smoke_run / "datasets" / "dlr" / "full", 1)
    assert frames.shape == (13, 32, 32, 3) and frames.std() > 0
    path = tmp_path / "clip.webm"
    path.write_bytes(encode_webm(frames))
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 13 and decoded[0].shape == (32, 32, 3)


def test_html_shows_tables_and_figures_added_later(smoke_run: Path, tmp_path: Path) -> None:
    """A table or figure another module writes into report/ appears in index.html as is."""
    import shutil

    from evaluation.html_report import write_html_report

    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    build_report(run)
    (run / "report" / "occupancy.md").write_text("| source | modes |\n|---|---|\n| dlr | 3 |\n")
    shutil.copy(run / "report" / "tsne.png", run / "report" / "occupancy.png")
    page = write_html_report(run, clips_per_group=0).read_text()
    assert "<h3" in page and ">occupancy</h3>" in page and "<td>dlr</td>" in page
    assert page.count("data:image/png") == len(list((run / "report").glob("*.png")))
    assert page.count("<table>") > 5 and "data:video/webm" not in page


def test_evaluation_clips_say_success_from_the_episode_cache(tmp_path: Path) -> None:
    from evaluation.report_media import evaluation_clips
    from evaluation.video import write_video

    policy = Path("openvla/dlr/n6/libero_spatial")
    frames = np.zeros((5, 16, 16, 3), np.uint8)
    frames[:, 4:8, 4:8] = 255
    write_video(tmp_path / "videos" / policy / "task0_seed0_init1.mp4", frames)
    cache = tmp_path / "episodes" / policy / "task0_seed0_h100.jsonl"
    cache.parent.mkdir(parents=True)
    cache.write_text('{"init_state_index": 0, "success": false}\n'
                     '{"init_state_index": 1, "success": true}\n')  # fmt: skip
    (clip,) = evaluation_clips(tmp_path)
    assert clip.group == "openvla DLR n6"
    assert clip.caption == "Spatial, task0 seed0 init1 success"
    assert clip.webm[:4] == b"\x1a\x45\xdf\xa3"  # an EBML (WebM) header
