"""Pre/post-processing shared by our VLAs: normalise, tokenize the instruction, unnormalise."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from lerobot.configs import PreTrainedConfig
from lerobot.processor import (
    PolicyAction,
    PolicyProcessorPipeline,
    ProcessorStep,
    make_default_policy_processor_steps,
    make_policy_processor_pipelines,
)

from pretraining.text import DlrTokenizerProcessorStep


def make_vla_pre_post_processors(
    config: PreTrainedConfig,
    dataset_stats: dict[str, dict[str, torch.Tensor]] | None = None,
    *,
    task_steps: Sequence[ProcessorStep] = (),
    padding: str = "max_length",
) -> tuple[
    PolicyProcessorPipeline[dict[str, Any], dict[str, Any]],
    PolicyProcessorPipeline[PolicyAction, PolicyAction],
]:
    """rename, batch, [``task_steps``], tokenize, to device, normalise; then unnormalise, to CPU.

    ``config`` needs ``tokenizer_name`` and ``tokenizer_max_length``. ``task_steps`` edit the
    instruction before it is tokenized; ``padding`` is the tokenizer's padding strategy.
    """
    steps = make_default_policy_processor_steps(config, dataset_stats)
    input_steps = [
        steps.rename_observations,
        steps.add_batch_dim,
        *task_steps,
        DlrTokenizerProcessorStep(
            tokenizer_name=config.tokenizer_name,
            max_length=config.tokenizer_max_length,
            padding=padding,
            padding_side="right",
        ),
        steps.to_device,
        steps.normalize,
    ]
    output_steps = [steps.unnormalize, steps.to_cpu]
    return make_policy_processor_pipelines(input_steps=input_steps, output_steps=output_steps)
