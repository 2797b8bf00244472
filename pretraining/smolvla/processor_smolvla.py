"""Processors of ``dlr_smolvla``: SmolVLA's pipeline with a tokenizer resolved locally."""

from __future__ import annotations

from typing import Any

import torch
from lerobot.processor import NewLineTaskProcessorStep, PolicyAction, PolicyProcessorPipeline

from pretraining.common.processor_vla import make_vla_pre_post_processors
from pretraining.smolvla.configuration_smolvla import DlrSmolVLAConfig


def make_dlr_smolvla_pre_post_processors(
    config: DlrSmolVLAConfig,
    dataset_stats: dict[str, dict[str, torch.Tensor]] | None = None,
) -> tuple[
    PolicyProcessorPipeline[dict[str, Any], dict[str, Any]],
    PolicyProcessorPipeline[PolicyAction, PolicyAction],
]:
    """Our VLA pipeline plus SmolVLA's two changes: a newline ends the task, padding from config."""
    return make_vla_pre_post_processors(
        config,
        dataset_stats,
        task_steps=[NewLineTaskProcessorStep()],
        padding=config.pad_language_to,
    )
