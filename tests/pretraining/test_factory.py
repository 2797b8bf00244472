"""Architecture names, presets and sizes."""

from __future__ import annotations

import pytest


def test_list_archs() -> None:
    from pretraining.factory import list_archs

    assert list_archs() == ["openvla", "pi0", "smolvla"]


def test_bad_arch_and_preset_name_valid_options() -> None:
    from pretraining.factory import make_config
    from pretraining.train import PretrainConfig

    with pytest.raises(ValueError, match="openvla, pi0, smolvla"):
        make_config("rt2")
    with pytest.raises(ValueError, match="base, tiny"):
        make_config("pi0", "huge")
    with pytest.raises(ValueError, match="openvla, pi0, smolvla"):
        PretrainConfig(arch="rt2", dataset_roots=["x"])
    with pytest.raises(ValueError, match="Unknown config field"):
        make_config("openvla", "tiny", not_a_field=1)


def test_policy_type_alias() -> None:
    from pretraining.factory import make_config

    assert make_config("dlr_openvla").type == "dlr_openvla"
    assert make_config("pi0").type == "dlr_pi0"


@pytest.mark.parametrize("arch", ["openvla", "pi0", "smolvla"])
def test_preset_sizes(tiny_dataset, arch: str) -> None:
    """tiny <= 10M parameters, base >= 100M parameters."""
    from lerobot.datasets import LeRobotDatasetMetadata
    from lerobot.policies.factory import make_policy

    from pretraining.factory import count_parameters, make_config

    meta = LeRobotDatasetMetadata(f"local/{tiny_dataset.name}", root=tiny_dataset)
    tiny = count_parameters(make_policy(make_config(arch, "tiny", device="cpu"), ds_meta=meta))
    base = count_parameters(make_policy(make_config(arch, "base", device="cpu"), ds_meta=meta))
    assert tiny <= 10_000_000 < 100_000_000 <= base


def test_lerobot_plugin_discovery() -> None:
    """lerobot's CLIs find our policy types through the installed lerobot_policy_dlr plugin."""
    import importlib.metadata

    names = {d.metadata["Name"] for d in importlib.metadata.distributions()}
    if "lerobot_policy_dlr" not in names:
        pytest.skip("plugin not installed: pip install -e plugins/lerobot_policy_dlr --no-deps")
    from lerobot.configs import PreTrainedConfig
    from lerobot.utils.import_utils import register_third_party_plugins

    register_third_party_plugins()
    assert {"dlr_openvla", "dlr_pi0", "dlr_smolvla"} <= set(PreTrainedConfig.get_known_choices())


def test_pretrained_backbones_load_instead_of_random_init(tiny_dataset, tmp_path) -> None:
    """vision_pretrained_path / lm_pretrained_path load local transformers checkpoints."""
    import torch
    from lerobot.datasets import LeRobotDatasetMetadata
    from lerobot.policies.factory import make_policy
    from transformers import LlamaConfig, LlamaModel, SiglipVisionConfig, SiglipVisionModel

    from pretraining.factory import make_config
    from pretraining.text import load_tokenizer

    tokenizer = load_tokenizer()
    vision = SiglipVisionModel(
        SiglipVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                           num_attention_heads=2, image_size=32, patch_size=8)
    )  # fmt: skip
    lm = LlamaModel(
        LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                    num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2)
    )  # fmt: skip
    vision.save_pretrained(tmp_path / "vision")
    lm.save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    cfg = make_config(
        "pi0", "tiny", image_size=32, device="cpu",
        vision_pretrained_path=str(tmp_path / "vision"), lm_pretrained_path=str(tmp_path / "lm"),
    )  # fmt: skip
    assert cfg.tokenizer_name == str(tmp_path / "lm")
    meta = LeRobotDatasetMetadata(f"local/{tiny_dataset.name}", root=tiny_dataset)
    policy = make_policy(cfg, ds_meta=meta)
    torch.testing.assert_close(
        policy.vlm.lm.embed_tokens.weight, lm.embed_tokens.weight, rtol=0, atol=0
    )
    got = policy.vlm.vision.embeddings.patch_embedding.weight
    torch.testing.assert_close(got, vision.vision_model.embeddings.patch_embedding.weight)


@pytest.mark.slow
def test_lerobot_train_cli_runs_our_policy(tiny_dataset, tmp_path) -> None:
    """`lerobot-train --policy.type=dlr_openvla --policy.preset=tiny` trains 2 steps (needs the
    plugin installed)."""
    import importlib.metadata
    import os
    import subprocess
    import sys
    from pathlib import Path

    names = {d.metadata["Name"] for d in importlib.metadata.distributions()}
    if "lerobot_policy_dlr" not in names:
        pytest.skip("plugin not installed: pip install -e plugins/lerobot_policy_dlr --no-deps")
    cli = Path(sys.executable).with_name("lerobot-train")
    cmd = [
        str(cli), "--policy.type=dlr_openvla", "--policy.preset=tiny", "--policy.image_size=32",
        "--policy.push_to_hub=false", "--policy.device=cpu", f"--dataset.repo_id=local/{tiny_dataset.name}",
        f"--dataset.root={tiny_dataset}", "--dataset.video_backend=pyav", "--steps=2",
        "--batch_size=4", "--num_workers=0", "--save_freq=2", "--log_freq=1",
        f"--output_dir={tmp_path / 'out'}", "--wandb.enable=false",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, env=env, cwd=tmp_path, capture_output=True, timeout=600)
    ckpt = tmp_path / "out" / "checkpoints" / "last" / "pretrained_model"
    from pretraining.factory import load_policy

    config = load_policy(ckpt, device="cpu").config
    assert config.type == "dlr_openvla" and config.preset == "tiny" and config.image_size == 32


@pytest.mark.parametrize("arch", ["openvla", "pi0", "smolvla"])
def test_presets_from_lerobot_cli_arguments(arch: str, tmp_path) -> None:
    """`--policy.preset=base` as lerobot-train parses it (draccus); explicit sizes win."""
    from dataclasses import make_dataclass

    import draccus
    from lerobot.configs import PreTrainedConfig

    from pretraining.factory import PRESETS, make_config, register_all

    Args = make_dataclass("Args", [("policy", PreTrainedConfig)])  # lerobot-train's `--policy.*`
    register_all()

    def parse(*args: str) -> PreTrainedConfig:
        return draccus.parse(
            Args, args=[f"--policy.type=dlr_{arch}", "--policy.device=cpu", *args]
        ).policy

    base, tiny = PRESETS[arch]["base"], PRESETS[arch]["tiny"]
    cfg = parse("--policy.preset=base", f"--policy.image_size={tiny['image_size']}")
    assert cfg.preset == "base" and cfg.image_size == tiny["image_size"]  # given: kept
    assert all(getattr(cfg, k) == v for k, v in base.items() if k != "image_size")
    default = parse()
    assert default.preset == "tiny" and all(getattr(default, k) == v for k, v in tiny.items())
    assert default == make_config(arch, "tiny", device="cpu")
    cfg._save_pretrained(tmp_path)  # a checkpoint's config.json keeps every size
    assert PreTrainedConfig.from_pretrained(tmp_path) == cfg
    with pytest.raises(Exception) as err:  # draccus wraps the config's own error
        parse("--policy.preset=huge")
    assert "Unknown preset 'huge' for dlr_" in str(err.value.__cause__)
    assert "valid: base, tiny" in str(err.value.__cause__)
