"""Optional Weights & Biases logging: off by default, checked before any work, offline-capable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


def _cfg(dataset: Path, out: Path, **kw):
    from pretraining.train import PretrainConfig

    base = dict(
        arch="openvla", preset="tiny", dataset_roots=[str(dataset)], output_dir=str(out), steps=2,
        batch_size=4, warmup_steps=1, image_size=32, log_every=1, num_workers=0, seed=0,
    )  # fmt: skip
    return PretrainConfig(**{**base, **kw})


def test_bad_wandb_settings_fail_before_any_work(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"pretraining.wandb: unknown key\(s\) \['projet'\]"):
        _cfg(tmp_path, tmp_path / "out", wandb={"projet": "x"})
    with pytest.raises(ValueError, match="pretraining.wandb needs a project"):
        _cfg(tmp_path, tmp_path / "out", wandb={"mode": "offline"})
    assert _cfg(tmp_path, tmp_path / "out").wandb is None  # off by default


def test_offline_wandb_run_logs_losses_and_config(
    tiny_dataset: Path, tmp_path: Path, monkeypatch
) -> None:
    from pretraining.train import train

    monkeypatch.setenv("WANDB_MODE", "offline")  # the suite's default is "disabled"
    monkeypatch.setenv("WANDB_SILENT", "true")
    options = {"project": "dlr-test", "mode": "offline", "dir": str(tmp_path), "tags": ["ci"]}
    cfg = _cfg(tiny_dataset, tmp_path / "out", wandb=options)
    train(cfg)
    (run_file,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    records = _records(run_file)
    history = [
        {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
        for r in records["history"]
    ]
    assert [h["_step"] for h in history] == [1, 2]
    assert all(np.isfinite(h["train/loss"]) and "train/lr" in h for h in history)
    config = {u.key: json.loads(u.value_json) for u in records["config"][0].config.update}
    assert config["dataset_roots"] == [str(tiny_dataset)] and config["wandb"]["tags"] == ["ci"]
    assert len(records["exit"]) == 1  # the run was finished
    assert _cfg(tiny_dataset, tmp_path / "other").hash() == cfg.hash()  # logging is not the run


def _records(path: Path) -> dict[str, list]:
    """The records of an offline W&B run file, by kind (wandb's own reader and protobufs)."""
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal import datastore

    store = datastore.DataStore()
    store.open_for_scan(str(path))
    out: dict[str, list] = {}
    while (data := store.scan_data()) is not None:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        out.setdefault(record.WhichOneof("record_type"), []).append(record)
    return out
