"""π0-style policy: VLM prefix + action expert trained by flow matching on action chunks."""

from __future__ import annotations

from dataclasses import dataclass

from lerobot.configs import PreTrainedConfig

from pretraining.common.configuration_vla import VLABaseConfig


@PreTrainedConfig.register_subclass("dlr_pi0")
@dataclass
class DlrPi0Config(VLABaseConfig):
    """π0 recipe (Black et al. 2024) at small scale.

    The LM encodes ``[images, state, instruction]``; a smaller transformer (the action expert)
    reads the noisy action chunk plus the flow time and cross-attends to the LM's hidden states.
    Training regresses the velocity ``noise - actions`` at ``x_t = t * noise + (1 - t) * actions``
    with ``t ~ Beta(1.5, 1)`` (π0's schedule); inference integrates ``num_steps`` Euler steps
    from t = 1 (noise) to t = 0.

    Args:
        expert_hidden_size / expert_layers / expert_heads / expert_intermediate_size: the action
            expert's width, depth, heads and MLP width (``None``: the preset's).
        num_steps: Euler steps at inference.
    """

    chunk_size: int | None = None
    n_action_steps: int | None = None
    expert_hidden_size: int | None = None
    expert_layers: int | None = None
    expert_heads: int | None = None
    expert_intermediate_size: int | None = None
    num_steps: int = 10
    min_period: float = 4e-3
    max_period: float = 4.0
