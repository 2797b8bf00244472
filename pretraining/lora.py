"""Starting from a checkpoint, and LoRA (PEFT) fine-tuning, for the adaptation stage.

A LoRA run saves only its adapter (``adapter_model.safetensors`` + ``adapter_config.json``),
the policy's ``config.json``, and ``dlr_adapter.json`` naming the base checkpoint.
``load_policy`` sees the adapter and rebuilds base + adapter, merged, for inference. When
there is no pretrained base (source ``none``) the randomly initialised base is saved as
``<run>/base`` first, so the adapter always has a base to sit on.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

ADAPTER_META = "dlr_adapter.json"
# Attention and MLP projections of the vision encoder and language model (HF naming).
DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "out_proj", "gate_proj", "up_proj",
                   "down_proj", "fc1", "fc2"]  # fmt: skip


def load_weights(policy: torch.nn.Module, checkpoint: str | Path) -> None:
    """Copy a saved policy's weights into ``policy`` (same architecture and preset)."""
    from safetensors.torch import load_file

    path = Path(checkpoint) / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(
            f"no model.safetensors in {checkpoint}: init_from must be a folder written by "
            "pretraining (save_pretrained)"
        )
    state = load_file(str(path))
    missing, unexpected = policy.load_state_dict(state, strict=False)
    own = policy.state_dict()
    bad = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if unexpected or bad or len(missing) > 0.05 * len(own):
        raise ValueError(
            f"checkpoint {checkpoint} does not fit this policy: {len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(bad)} mis-shaped tensors; "
            "adapt with the same arch and preset it was pretrained with"
        )
    logger.info("initialised from %s (%d tensors)", checkpoint, len(state))


def save_lora_base(policy, cfg, out_dir: Path, is_main: bool) -> Path:
    """The base the adapter sits on: the init checkpoint, or this run's random init."""
    if cfg.init_from:
        return Path(cfg.init_from).resolve()
    base = (out_dir / "base").resolve()
    if is_main and not (base / "model.safetensors").is_file():
        policy.save_pretrained(base)
    return base


def apply_lora(policy: torch.nn.Module, lora: dict[str, Any], base_dir: Path):
    """Wrap ``policy`` with LoRA adapters; action heads (names with 'action') train fully."""
    from peft import LoraConfig, get_peft_model

    known = {"r", "alpha", "dropout", "target_modules", "modules_to_save"}
    unknown = set(lora) - known
    if unknown:
        raise ValueError(f"unknown LoRA option(s) {sorted(unknown)}; valid: {sorted(known)}")
    leaf_names = {n.split(".")[-1] for n, m in policy.named_modules()}
    targets = [t for t in lora.get("target_modules") or DEFAULT_TARGETS if t in leaf_names]
    if not targets:
        raise ValueError(f"none of the LoRA target modules exist in {type(policy).__name__}")
    heads = lora.get("modules_to_save")
    if heads is None:
        heads = sorted(
            {n.split(".")[-1] for n, m in policy.named_modules()
             if "action" in n.split(".")[-1] and isinstance(m, (torch.nn.Linear, torch.nn.Embedding))}
        )  # fmt: skip
    config = LoraConfig(
        r=int(lora.get("r", 8)),
        lora_alpha=int(lora.get("alpha", 16)),
        lora_dropout=float(lora.get("dropout", 0.0)),
        target_modules=targets,
        modules_to_save=heads or None,
    )
    model = get_peft_model(policy, config)
    model.peft_config["default"].base_model_name_or_path = str(base_dir)  # peft resets it on wrap
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    logger.info(
        "LoRA on %s (+ full %s): %d of %d parameters train", targets, heads, trainable, total
    )
    return model


def save_adapter_meta(peft_model, policy_cfg, folder: Path) -> None:
    policy_cfg._save_pretrained(folder)  # config.json, so PreTrainedConfig.from_pretrained works
    base = peft_model.peft_config["default"].base_model_name_or_path
    (folder / ADAPTER_META).write_text(json.dumps({"base": str(base)}, indent=2))


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_META).is_file()


def load_adapter_policy(path: str | Path, load_base):
    """Base policy (via ``load_base(path)``) + the adapter at ``path``, merged for inference."""
    from peft import PeftModel

    base_path = json.loads((Path(path) / ADAPTER_META).read_text())["base"]
    if not Path(base_path).is_dir():
        raise FileNotFoundError(
            f"the LoRA adapter at {path} needs its base checkpoint {base_path}, which is gone"
        )
    base = load_base(base_path)
    merged = PeftModel.from_pretrained(base, str(path)).merge_and_unload()
    merged.eval()
    return merged
