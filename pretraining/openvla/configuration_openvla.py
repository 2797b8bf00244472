"""OpenVLA-style policy: a VLM that writes actions as tokens, 256 bins per action dimension."""

from __future__ import annotations

from dataclasses import dataclass, field

from lerobot.configs import NormalizationMode, PreTrainedConfig

from pretraining.common.configuration_vla import VLABaseConfig


@PreTrainedConfig.register_subclass("dlr_openvla")
@dataclass
class DlrOpenVLAConfig(VLABaseConfig):
    """OpenVLA recipe (Kim et al. 2024) at small scale.

    Actions are min-max normalised to [-1, 1] (the schema's actions already live there),
    discretised into ``n_action_bins`` uniform bins per dimension and decoded greedily, one
    dimension at a time, by the same causal LM that reads the image and the instruction.
    ``chunk_size`` > 1 decodes several future actions (``chunk_size * action_dim`` tokens).
    """

    n_action_bins: int = 256
    normalization_mapping: dict[str, NormalizationMode] = field(
        default_factory=lambda: {
            "VISUAL": NormalizationMode.IDENTITY,
            "STATE": NormalizationMode.MEAN_STD,
            "ENV": NormalizationMode.MEAN_STD,
            "ACTION": NormalizationMode.MIN_MAX,
        }
    )
