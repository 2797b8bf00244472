"""Adaptation: fine-tune a pretrained policy (or a fresh one, source ``none``) on demonstrations
of held-out suites, with one fixed budget for every source so that only pretraining differs.

Full fine-tuning and LoRA share the pretraining loop (``pretraining.train``): adaptation is a
training run that starts from a checkpoint (``init_from``) and optionally trains LoRA adapters
only. LoRA runs save the adapter alone; ``pretraining.factory.load_policy`` merges it onto its
base for evaluation.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)


class AdaptConfig(BaseModel):
    """The ``adaptation`` section of a recipe (the budget is the same for every source)."""

    model_config = ConfigDict(extra="forbid")

    suites: list[
        Literal["libero_spatial", "libero_object", "libero_goal", "libero_10", "libero_90"]
    ] = ["libero_spatial"]
    method: Literal["full", "lora"] = "full"
    steps: int = Field(200, ge=1)
    batch_size: int = Field(8, ge=1, description="global: split over a launcher's processes")
    lr: float = Field(1e-4, gt=0)
    warmup_steps: int = Field(20, ge=0)
    lora_r: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_targets: list[str] | None = Field(None, description="default: attention/MLP projections")
    num_workers: int = Field(0, ge=0)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    seed: int = 0


def adapt(cfg: AdaptConfig, **kwargs) -> Path:
    """Adapt ``pretrained`` (None: from scratch) to ``dataset_roots``; returns the checkpoint.
    Keyword arguments as in :func:`adapt_config`."""
    from pretraining.train import train

    return train(adapt_config(cfg, **kwargs))


def adapt_config(
    cfg: AdaptConfig,
    *,
    arch: str,
    preset: str,
    dataset_roots: list[str | Path],
    out_dir: str | Path,
    pretrained: str | Path | None,
    image_size: int | None = None,
    policy_overrides: dict | None = None,
):
    """The training run that adapts ``pretrained`` (a ``PretrainConfig``)."""
    from pretraining.train import PretrainConfig

    if pretrained is not None and not (Path(pretrained) / "config.json").is_file():
        raise FileNotFoundError(
            f"pretrained checkpoint {pretrained} has no config.json: run the pretraining stage first"
        )
    lora = None
    if cfg.method == "lora":
        lora = {"r": cfg.lora_r, "alpha": cfg.lora_alpha, "dropout": cfg.lora_dropout}
        if cfg.lora_targets:
            lora["target_modules"] = cfg.lora_targets
    return PretrainConfig(
        arch=arch,
        preset=preset,
        dataset_roots=[str(r) for r in dataset_roots],
        output_dir=str(out_dir),
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        warmup_steps=min(cfg.warmup_steps, max(cfg.steps - 1, 0)),
        mixed_precision=cfg.mixed_precision,
        seed=cfg.seed,
        image_size=image_size,
        save_every=max(cfg.steps // 2, 1),
        log_every=max(min(10, cfg.steps // 4), 1),
        num_workers=cfg.num_workers,
        init_from=str(Path(pretrained).resolve()) if pretrained else None,
        lora=lora,
        policy_overrides=policy_overrides or {},
    )
