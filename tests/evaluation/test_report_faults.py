"""Corrupt inputs: one line naming the file, exit code 2, and no half-written report."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.cli import main


@pytest.fixture
def run(smoke_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(smoke_run, tmp_path / "smoke"))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing_column"])
def test_report_on_bad_results_names_the_file_and_writes_nothing(run, capsys, damage):
    results = run / "evaluation" / "results.parquet"
    if damage == "garbage":
        results.write_bytes(b"not a parquet file at all")
    elif damage == "truncated":
        _truncate(results)
    else:
        pd.read_parquet(results).drop(columns=["successes"]).to_parquet(results)
    assert main(["report", str(run)]) == 2
    line = _one_error_line(capsys)
    assert str(results) in line and "rerun the evaluation stage" in line
    if damage == "missing_column":
        assert "missing column(s) successes" in line
    assert not (run / "report").exists()
    assert [p.name for p in run.iterdir() if ".tmp-" in p.name] == []


def test_a_truncated_dataset_keeps_the_last_report_whole(run, capsys):
    assert main(["report", str(run)]) == 0
    before = {p.name: p.read_bytes() for p in (run / "report").iterdir()}
    capsys.readouterr()
    data = sorted((run / "datasets" / "dlr" / "full" / "data").rglob("*.parquet"))[0]
    _truncate(data)
    assert main(["report", str(run)]) == 2
    line = _one_error_line(capsys)
    assert str(data) in line and "unreadable" in line
    assert {p.name: p.read_bytes() for p in (run / "report").iterdir()} == before


def test_push_dry_run_refuses_a_dataset_whose_data_was_truncated(run, capsys):
    root = run / "datasets" / "o2o" / "full"
    data = sorted((root / "data").rglob("*.parquet"))[0]
    _truncate(data)
    assert main(["push", str(root), "--repo-id", "me/x", "--dry-run"]) == 2
    assert str(data) in _one_error_line(capsys)


def test_a_dataset_missing_episodes_is_named(run):
    from generation.integrity import CorruptFileError, check_dataset

    root = run / "datasets" / "dlr" / "full"
    data = sorted((root / "data").rglob("*.parquet"))[0]
    df = pd.read_parquet(data)
    df[df.episode_index != df.episode_index.max()].to_parquet(data)
    with pytest.raises(CorruptFileError, match="but meta/info.json claims"):
        check_dataset(root)


def test_a_truncated_checkpoint_fails_once_before_evaluation(tmp_path):
    import torch
    from safetensors.torch import save_file

    from benchmarks.config import validate_recipe
    from benchmarks.runner import run_evaluation
    from generation.integrity import CorruptFileError, check_safetensors

    recipe = validate_recipe(
        {"name": "t", "stages": ["evaluation"],
         "pretraining": {"sources": ["dlr"], "sizes": ["full"]}}
    )  # fmt: skip
    weights = None
    for arch_source in ("none/n0", "dlr/full"):
        out = tmp_path / "adaptation" / "openvla" / arch_source / "libero_spatial"
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        save_file({"w": torch.zeros(64, 64)}, out / "model.safetensors")
        check_safetensors(out / "model.safetensors")
        weights = out / "model.safetensors"
    _truncate(weights)
    with pytest.raises(CorruptFileError, match=r"model.safetensors: truncated \(\d+ bytes"):
        run_evaluation(recipe, tmp_path)
    assert not (tmp_path / "evaluation").exists()  # no episode was started
