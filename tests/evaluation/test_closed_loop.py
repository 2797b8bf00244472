"""Closed-loop evaluation with tiny scripted policies (no trained model needed)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evaluation.closed_loop import evaluate, merge_results, read_cache
from evaluation.stats import RESULT_COLUMNS

HORIZON = 20
KW = dict(
    arch="scripted", source="none", size=0, suite="libero_object", tasks=[0],
    episodes_per_task=2, seeds=[0], num_workers=1, image_size=32, horizon=HORIZON,
)  # fmt: skip


class CountingPolicy:
    """Random actions; counts calls and resets. ``fail_at``: raise once on that call."""

    def __init__(self, fail_at: int | None = None):
        self.calls = 0
        self.resets = 0
        self.fail_at = fail_at
        self.rng = np.random.default_rng(0)

    def reset(self) -> None:
        self.resets += 1

    def __call__(self, batch: dict) -> np.ndarray:
        assert batch["observation.images.image"].shape == (1, 3, 32, 32)
        assert batch["observation.state"].shape == (1, 8)
        assert batch["observation.environment_state"].shape == (1, 84)
        assert isinstance(batch["task"][0], str)
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            self.fail_at = None
            raise RuntimeError("simulated worker crash")
        return self.rng.uniform(-2, 2, size=(1, 7))  # out of range on purpose: clipped


def test_evaluate_rows_and_resume(tmp_path: Path) -> None:
    policy = CountingPolicy()
    df = evaluate(policy, out_dir=tmp_path, video_episodes=1, **KW)
    assert list(df.columns[: len(RESULT_COLUMNS)]) == list(RESULT_COLUMNS)
    row = df.iloc[0]
    assert len(df) == 1 and row["episodes"] == 2 and row["successes"] == 0
    assert row["task"] and row["seed"] == 0 and row["size"] == 0
    assert row["success_rate"] == 0.0 and row["ci_low"] == 0.0
    assert row["ci_high"] == pytest.approx(0.6576, abs=1e-3)  # Wilson 0/2
    assert row["mean_length"] == HORIZON
    assert policy.calls == 2 * HORIZON and policy.resets == 2
    on_disk = pd.read_parquet(tmp_path / "results.parquet")
    assert len(on_disk) == 1 and on_disk["episodes"].iloc[0] == 2
    cache = tmp_path / "episodes/scripted/none/n0/libero_object/task0_seed0_h20.jsonl"
    assert [r["init_state_index"] for r in read_cache(cache)] == [0, 1]
    videos = list((tmp_path / "videos").rglob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 0

    # resume: everything is cached, so nothing runs again and the rows are the same
    again = CountingPolicy()
    df2 = evaluate(again, out_dir=tmp_path, **KW)
    assert again.calls == 0
    pd.testing.assert_frame_equal(df, df2)
    assert len(read_cache(cache)) == 2


def test_crash_is_retried_and_logged(tmp_path: Path) -> None:
    policy = CountingPolicy(fail_at=HORIZON + 5)  # crashes in the second episode, once
    df = evaluate(policy, out_dir=tmp_path, **KW)
    assert df["episodes"].iloc[0] == 2
    # the first episode was cached before the crash and not redone
    assert policy.calls == 2 * HORIZON + 5
    log = (tmp_path / "episodes/scripted/none/n0/libero_object/errors.log").read_text()
    assert "simulated worker crash" in log


def test_persistent_crash_raises_after_retries(tmp_path: Path) -> None:
    def broken(batch: dict) -> np.ndarray:
        raise RuntimeError("always broken")

    with pytest.raises(RuntimeError, match="kept crashing"):
        evaluate(broken, out_dir=tmp_path, max_retries=1, **{**KW, "episodes_per_task": 1})
    assert not (tmp_path / "results.parquet").exists()


def test_merge_results_by_key(tmp_path: Path) -> None:
    base = dict(arch="a", source="dlr", size=10, suite="s", task="t", episodes=2,
                successes=1, success_rate=0.5, ci_low=0.1, ci_high=0.9)  # fmt: skip
    path = tmp_path / "results.parquet"
    merge_results(path, pd.DataFrame([{**base, "seed": 0}, {**base, "seed": 1}]))
    merged = merge_results(path, pd.DataFrame([{**base, "seed": 1, "successes": 2}]))
    assert len(merged) == 2
    assert merged.set_index("seed").loc[1, "successes"] == 2
    with pytest.raises(ValueError, match="lack column"):
        merge_results(path, pd.DataFrame([{"arch": "a"}]))


class DiesOnce:
    """Kills its worker process on its first call ever (a marker file remembers it)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __call__(self, batch: dict) -> np.ndarray:
        if not self.marker.exists():
            self.marker.touch()
            os._exit(3)  # a segfault-like death: no exception reaches the pool
        return np.zeros((1, 7))


@pytest.mark.slow
def test_dead_worker_is_replaced_and_its_episodes_rerun(tmp_path: Path) -> None:
    policy = DiesOnce(tmp_path / "died")
    kw = {**KW, "num_workers": 2, "horizon": 3, "tasks": [0, 1]}
    df = evaluate(policy, out_dir=tmp_path, **kw)
    assert (tmp_path / "died").exists()
    assert (df["episodes"] == 2).all()
    log = (tmp_path / "episodes/scripted/none/n0/libero_object/errors.log").read_text()
    assert "BrokenProcessPool" in log or "terminated abruptly" in log


def test_progress_counts_episodes_from_caches(tmp_path: Path) -> None:
    """The bar counts the groups' episodes that workers wrote to their caches, no others."""
    import json
    from dataclasses import replace

    from evaluation.closed_loop import EpisodeGroup, _Progress

    cache = tmp_path / "task0_seed0.jsonl"
    base = EpisodeGroup("libero_object", 0, 0, (0, 1), str(cache), image_size=32)
    progress = _Progress([base, replace(base, init_state_indices=(2, 3))], "test")
    assert progress.bar.total == 4
    rows = [{"init_state_index": i, "success": i == 1} for i in (0, 1, 7)]  # 7: cached before
    cache.write_text("".join(json.dumps(r) + "\n" for r in rows))
    progress.poll()
    assert (progress.bar.n, progress.successes) == (2, 1)
    progress.episode({"init_state_index": 2, "success": True})
    assert (progress.bar.n, progress.successes) == (3, 2)
    progress.bar.close()
