"""Adaptation: full fine-tuning from a checkpoint and LoRA adapters saved on their own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    os.environ["HF_HUB_OFFLINE"] = "1"
    torch.set_num_threads(1)
    from pretraining.synthetic import make_synthetic_dataset

    root = tmp_path_factory.mktemp("adapt")
    return make_synthetic_dataset(root / "pre", episodes=3, seed=0), make_synthetic_dataset(
        root / "held", episodes=2, seed=5
    )


@pytest.fixture(scope="module")
def pretrained(data, tmp_path_factory):
    from pretraining.train import PretrainConfig, train

    out = tmp_path_factory.mktemp("pre") / "ckpt"
    return train(PretrainConfig(arch="openvla", preset="tiny", dataset_roots=[str(data[0])], output_dir=str(out),
                                steps=6, batch_size=4, warmup_steps=1, image_size=32, num_workers=0, lr=3e-3))  # fmt: skip


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def _action(path: Path, dataset: Path) -> torch.Tensor:
    from lerobot.datasets import LeRobotDataset

    from pretraining.factory import load_policy, load_processors

    policy = load_policy(path, device="cpu")
    pre, post = load_processors(path, device="cpu")
    frame = LeRobotDataset("local/held", root=dataset, video_backend="pyav")[3]
    batch = pre(
        {k: (v.unsqueeze(0) if isinstance(v, torch.Tensor) else [v]) for k, v in frame.items()}
    )
    with torch.no_grad():
        policy.reset()
        return post(policy.select_action(batch))


def test_full_adaptation_starts_from_the_pretrained_weights(data, pretrained, tmp_path):
    from adaptation.adapt import AdaptConfig, adapt

    cfg = AdaptConfig(method="full", steps=1, batch_size=2, lr=1e-9, warmup_steps=0)
    out = adapt(cfg, arch="openvla", preset="tiny", dataset_roots=[data[1]], out_dir=tmp_path / "full",
                pretrained=pretrained, image_size=32)  # fmt: skip
    before, after = _weights(pretrained), _weights(out)
    # one step at a negligible learning rate: the adapted weights are the pretrained ones
    for k in before:
        torch.testing.assert_close(after[k], before[k], atol=1e-5, rtol=0)
    scratch = adapt(cfg, arch="openvla", preset="tiny", dataset_roots=[data[1]], out_dir=tmp_path / "none",
                    pretrained=None, image_size=32)  # fmt: skip
    far = max((w - _weights(scratch)[k]).abs().max().item() for k, w in before.items())
    assert far > 1e-2  # from scratch is a different network


def test_lora_saves_an_adapter_alone_and_loads_merged(data, pretrained, tmp_path):
    from adaptation.adapt import AdaptConfig, adapt

    cfg = AdaptConfig(method="lora", steps=4, batch_size=2, lr=1e-2, warmup_steps=0, lora_r=4)
    out = adapt(cfg, arch="openvla", preset="tiny", dataset_roots=[data[1]], out_dir=tmp_path / "lora",
                pretrained=pretrained, image_size=32)  # fmt: skip
    files = {p.name for p in out.iterdir()}
    assert {
        "adapter_model.safetensors",
        "adapter_config.json",
        "dlr_adapter.json",
        "config.json",
    } <= files
    assert "model.safetensors" not in files
    adapter_bytes = (out / "adapter_model.safetensors").stat().st_size
    assert adapter_bytes < (pretrained / "model.safetensors").stat().st_size
    a = _action(out, data[1])
    assert a.shape[-1] == 7 and torch.isfinite(a).all()
    # the merged policy differs from its base: the adapter trained
    from pretraining.factory import load_policy

    merged = load_policy(out, device="cpu").state_dict()
    base = _weights(pretrained)
    assert any((merged[k] - v).abs().max() > 1e-6 for k, v in base.items() if k in merged)


def test_bad_pretrained_path_is_a_clear_error(data, tmp_path):
    from adaptation.adapt import AdaptConfig, adapt

    with pytest.raises(FileNotFoundError, match="run the pretraining stage first"):
        adapt(AdaptConfig(steps=1), arch="openvla", preset="tiny", dataset_roots=[data[1]],
              out_dir=tmp_path / "x", pretrained=tmp_path / "missing")  # fmt: skip
