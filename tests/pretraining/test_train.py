"""The Accelerate loop: learning, resume parity, skip, NaN stop, loading of checkpoints."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

ARCHS = ["openvla", "pi0", "smolvla"]
STEPS = {"openvla": 60, "pi0": 40, "smolvla": 40}
LR = {"openvla": 5e-3, "pi0": 3e-3, "smolvla": 3e-3}


def _cfg(dataset: Path, out: Path, arch: str, **kw):
    from pretraining.train import PretrainConfig

    base = dict(
        arch=arch, preset="tiny", dataset_roots=[str(dataset)], output_dir=str(out),
        steps=STEPS[arch], batch_size=8, lr=LR[arch], warmup_steps=3, image_size=32,
        save_every=20, log_every=1, num_workers=0, seed=0,
    )  # fmt: skip
    base.update(kw)
    return PretrainConfig(**base)


def _losses(out: Path) -> list[float]:
    with (out / "train_log.csv").open() as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def _batch(dataset: Path, out: Path):
    from lerobot.datasets import LeRobotDataset

    from pretraining.factory import load_processors

    pre, post = load_processors(out, device="cpu")
    frame = LeRobotDataset(f"local/{dataset.name}", root=dataset, video_backend="pyav")[5]
    return pre(frame), post


@pytest.fixture(scope="module")
def trained(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each tiny architecture trained once on the synthetic dataset (shared by the tests)."""
    from pretraining.train import train

    return {arch: train(_cfg(tiny_dataset, tmp_path_factory.mktemp(arch), arch)) for arch in ARCHS}


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_arch_learns(trained: dict[str, Path], arch: str) -> None:
    out = trained[arch]
    losses = _losses(out)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, losses
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["steps_done"] == STEPS[arch]
    assert manifest["num_parameters"] <= 10_000_000
    assert (out / "model.safetensors").exists() and (out / "config.json").exists()


@pytest.mark.parametrize("arch", ARCHS)
def test_checkpoint_loads_with_make_policy(
    trained: dict[str, Path], tiny_dataset: Path, arch: str
) -> None:
    """lerobot's make_policy and our load_policy give the same deterministic actions."""
    from lerobot.configs import PreTrainedConfig
    from lerobot.datasets import LeRobotDatasetMetadata
    from lerobot.policies.factory import make_policy

    from pretraining.factory import load_policy

    out = trained[arch]
    ours = load_policy(out, device="cpu")
    cfg = PreTrainedConfig.from_pretrained(str(out))
    cfg.pretrained_path = out
    cfg.device = "cpu"
    meta = LeRobotDatasetMetadata(f"local/{tiny_dataset.name}", root=tiny_dataset)
    theirs = make_policy(cfg, ds_meta=meta)
    theirs.eval()
    batch, post = _batch(tiny_dataset, out)
    torch.manual_seed(0)
    a = ours.predict_action_chunk(batch)
    torch.manual_seed(0)
    b = theirs.predict_action_chunk(batch)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    ours.reset()
    action = post(ours.select_action(batch))
    assert action.shape == (1, 7) and torch.isfinite(action).all()


@pytest.mark.parametrize("arch", ["openvla", "pi0"])
def test_save_load_round_trip(tiny_dataset: Path, tmp_path: Path, arch: str) -> None:
    from lerobot.datasets import LeRobotDatasetMetadata
    from lerobot.policies.factory import make_policy, make_pre_post_processors

    from pretraining.factory import load_policy, make_config

    meta = LeRobotDatasetMetadata(f"local/{tiny_dataset.name}", root=tiny_dataset)
    cfg = make_config(arch, "tiny", image_size=32, device="cpu")
    policy = make_policy(cfg, ds_meta=meta).eval()
    pre, post = make_pre_post_processors(cfg, dataset_stats=meta.stats)
    policy.save_pretrained(tmp_path)
    pre.save_pretrained(tmp_path)
    post.save_pretrained(tmp_path)
    loaded = load_policy(tmp_path, device="cpu")
    batch, _ = _batch(tiny_dataset, tmp_path)
    torch.manual_seed(1)
    a = policy.predict_action_chunk(batch)
    torch.manual_seed(1)
    b = loaded.predict_action_chunk(batch)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_resume_continues_same_run(tiny_dataset: Path, tmp_path: Path) -> None:
    """8 steps in one go == 4 steps, 'killed', then resumed for 4 more (losses and weights)."""
    from safetensors.torch import load_file

    from pretraining.train import train

    kw = dict(steps=8, save_every=4, log_every=1, batch_size=8)
    full = train(_cfg(tiny_dataset, tmp_path / "full", "pi0", **kw))
    part = _cfg(tiny_dataset, tmp_path / "part", "pi0", stop_after=4, **kw)
    train(part)
    manifest = json.loads((tmp_path / "part" / "manifest.json").read_text())
    assert manifest["status"] == "running" and manifest["steps_done"] == 4
    resumed = train(_cfg(tiny_dataset, tmp_path / "part", "pi0", **kw))
    assert _losses(full) == pytest.approx(_losses(resumed), rel=1e-5, abs=1e-6)
    w_full, w_res = load_file(full / "model.safetensors"), load_file(resumed / "model.safetensors")
    for key, value in w_full.items():
        torch.testing.assert_close(value, w_res[key], rtol=1e-5, atol=1e-6)


def test_complete_run_is_skipped_and_other_config_refused(
    trained: dict[str, Path], tiny_dataset: Path
) -> None:
    from pretraining.train import train

    out = trained["openvla"]
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    train(_cfg(tiny_dataset, out, "openvla", num_workers=3, save_every=7))  # hash-neutral fields
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="another config"):
        train(_cfg(tiny_dataset, out, "openvla", lr=1e-4))


def test_nan_loss_stops_and_keeps_checkpoint(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pretraining.train as train_mod

    real = train_mod.forward_loss
    calls = {"n": 0}

    def flaky(model, batch):
        calls["n"] += 1
        loss, info = real(model, batch)
        return (loss * float("nan") if calls["n"] == 6 else loss), info

    monkeypatch.setattr(train_mod, "forward_loss", flaky)
    cfg = _cfg(tiny_dataset, tmp_path / "nan", "openvla", steps=10, save_every=2)
    with pytest.raises(train_mod.NonFiniteLossError, match="Non-finite loss .* step 6"):
        train_mod.train(cfg)
    assert (tmp_path / "nan" / "checkpoints" / "step_4" / "model.safetensors").exists()
    manifest = json.loads((tmp_path / "nan" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "step_4" in manifest["error"]


def test_mixture_of_two_datasets(tiny_dataset: Path, tiny_dataset_b: Path, tmp_path: Path) -> None:
    from pretraining.data import load_mixture
    from pretraining.factory import make_config

    cfg = make_config("openvla", "tiny", device="cpu")
    mixture, _, stats = load_mixture([str(tiny_dataset), str(tiny_dataset_b)], cfg)
    assert len(mixture) == 96 + 48
    assert stats["action"]["mean"].shape == (7,)


def test_fast_dataset_items_equal_lerobot(tiny_dataset: Path) -> None:
    from lerobot.datasets import LeRobotDataset

    from pretraining.fast_dataset import FastDeltaDataset

    delta = {"action": [i / 20 for i in range(10)], "observation.state": [0.0]}
    ds = LeRobotDataset("local/a", root=tiny_dataset, video_backend="pyav", delta_timestamps=delta)
    fast = FastDeltaDataset(ds)
    assert not fast.fallback
    for idx in [0, 5, 20, 23, 24, len(ds) - 1]:
        ref, got = ds[idx], fast[idx]
        assert ref.keys() == got.keys()
        for key, value in ref.items():
            if isinstance(value, torch.Tensor):
                assert value.dtype == got[key].dtype and torch.equal(value, got[key]), key
            else:
                assert value == got[key]


def test_optimiser_comes_from_the_policy_preset_and_manifest_is_portable(
    trained: dict[str, Path], tiny_dataset: Path, tmp_path: Path
) -> None:
    """``optimizer_*`` of the policy config reach AdamW; the manifest names no absolute path."""
    from pretraining.train import train

    out = tmp_path / "adapted"
    overrides = {"optimizer_betas": (0.8, 0.9), "optimizer_weight_decay": 0.25}
    cfg = _cfg(tiny_dataset, out, "openvla", steps=1, warmup_steps=0, save_every=1,
               policy_overrides=overrides, init_from=str(trained["openvla"].resolve()))  # fmt: skip
    train(cfg)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["optimizer"]["betas"] == [0.8, 0.9]
    assert manifest["optimizer"]["weight_decay"] == 0.25 and manifest["optimizer"]["lr"] == cfg.lr
    text = (out / "manifest.json").read_text()
    assert str(tmp_path) not in text and "host" not in manifest
    assert (out / manifest["config"]["init_from"]).resolve() == trained["openvla"].resolve()
    state = torch.load(
        next((out / "checkpoints").glob("step_*")) / "optimizer.bin", weights_only=False
    )
    assert state["param_groups"][0]["betas"] == (0.8, 0.9)
