"""Processors of ``dlr_smolvla``: SmolVLA's pipeline with a tokenizer resolved locally."""

from __future__ import annotations

from typing import Any

import torch
from lerobot.processor import (
    NewLineTaskProcessorStep,
    PolicyAction,
    PolicyProcessorPipeline,
    make_default_policy_processor_steps,
    make_policy_processor_pipelines,
)

from pretraining.smolvla.configuration_smolvla import DlrSmolVLAConfig
from pretraining.text import DlrTokenizerProcessorStep


def make_dlr_smolvla_pre_post_processors(
    config: DlrSmolVLAConfig,
    dataset_stats: dict[str, dict[str, torch.Tensor]] | None = None,
) -> tuple[
    PolicyProcessorPipeline[dict[str, Any], dict[str, Any]],
    PolicyProcessorPipeline[PolicyAction, PolicyAction],
]:
    steps = make_default_policy_processor_steps(config, dataset_stats)
    input_steps = [
        steps.rename_observations,
        steps.add_batch_dim,
        NewLineTaskProcessorStep(),
        DlrTokenizerProcessorStep(
            tokenizer_name=config.tokenizer_name,
            padding=config.pad_language_to,
            padding_side="right",
            max_length=config.tokenizer_max_length,
        ),
        steps.to_device,
        steps.normalize,
    ]
    output_steps = [steps.unnormalize, steps.to_cpu]
    return make_policy_processor_pipelines(input_steps=input_steps, output_steps=output_steps)
