"""OpenVLA-style policy: next-token prediction of discretised actions after the VLM prefix.

Training (teacher forcing): ``[prefix, <act>, b_1, ..., b_{n-1}]`` -> logits for
``b_1 ... b_n`` where ``b_i`` is the bin of the i-th action value (flattened over chunk and
dimension) and ``n = chunk_size * action_dim``; loss = cross-entropy over the 256 bins.
Inference: greedy decoding of ``n`` bins with the LM's KV cache, bins -> bin centres in [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lerobot.policies.pretrained import PreTrainedPolicy
from lerobot.utils.constants import ACTION
from torch import Tensor, nn

from pretraining.common.policy_base import ChunkingPolicyMixin, action_dim
from pretraining.common.vlm_prefix import VLMPrefix
from pretraining.openvla.configuration_openvla import DlrOpenVLAConfig


def actions_to_bins(actions: Tensor, n_bins: int) -> Tensor:
    """Uniform bins over [-1, 1]; values outside are clipped to the edge bins."""
    scaled = (actions.clamp(-1.0, 1.0) + 1.0) / 2.0 * n_bins
    return scaled.long().clamp(0, n_bins - 1)


def bins_to_actions(bins: Tensor, n_bins: int) -> Tensor:
    return (bins.float() + 0.5) / n_bins * 2.0 - 1.0


class DlrOpenVLAPolicy(ChunkingPolicyMixin, PreTrainedPolicy):
    config_class = DlrOpenVLAConfig
    name = "dlr_openvla"

    def __init__(self, config: DlrOpenVLAConfig, **kwargs):
        super().__init__(config)
        config.validate_features()
        self.config = config
        self.vlm = VLMPrefix(config)
        width = self.vlm.hidden_size
        self.action_dim = action_dim(self)
        self.n_action_tokens = config.chunk_size * self.action_dim
        # Bin embeddings plus one "start of action" token; a slot embedding tells the LM which
        # (step, dimension) it is writing.
        self.bin_embedding = nn.Embedding(config.n_action_bins + 1, width)
        self.slot_embedding = nn.Parameter(torch.zeros(self.n_action_tokens, width))
        self.bin_head = nn.Linear(width, config.n_action_bins)
        self.reset()

    def _action_inputs(self, bins: Tensor) -> Tensor:
        """Teacher-forcing inputs: start token followed by all but the last bin."""
        start = torch.full_like(bins[:, :1], self.config.n_action_bins)
        tokens = torch.cat([start, bins[:, :-1]], dim=1)
        return self.bin_embedding(tokens) + self.slot_embedding[: tokens.shape[1]]

    def forward(self, batch: dict[str, Tensor], reduction: str = "mean") -> tuple[Tensor, dict]:
        prefix, mask = self.vlm.embed_prefix(batch)
        actions = batch[ACTION]
        if actions.ndim == 2:
            actions = actions.unsqueeze(1)
        bins = actions_to_bins(actions[:, : self.config.chunk_size], self.config.n_action_bins)
        bins = bins.flatten(1)  # (B, chunk * action_dim)
        act_embeds = self._action_inputs(bins).to(prefix.dtype)
        act_mask = torch.ones(bins.shape, dtype=torch.bool, device=bins.device)
        out = self.vlm.run_lm(torch.cat([prefix, act_embeds], 1), torch.cat([mask, act_mask], 1))
        hidden = out.last_hidden_state[:, prefix.shape[1] :]
        logits = self.bin_head(hidden).float()
        ce = F.cross_entropy(logits.transpose(1, 2), bins, reduction="none")  # (B, n)
        weights = torch.ones_like(ce)
        if "action_is_pad" in batch:
            pad = batch["action_is_pad"][:, : self.config.chunk_size]
            weights = (~pad).float().repeat_interleave(self.action_dim, dim=1)
        per_sample = (ce * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        accuracy = ((logits.argmax(-1) == bins).float() * weights).sum() / weights.sum().clamp_min(
            1
        )
        info = {"token_accuracy": accuracy.item()}
        if reduction == "none":
            return per_sample, info
        return per_sample.mean(), info

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict[str, Tensor], **kwargs) -> Tensor:
        """Greedy decoding of ``chunk_size * action_dim`` bins; returns (B, chunk, action_dim)."""
        self.eval()
        prefix, mask = self.vlm.embed_prefix(batch)
        bsz = prefix.shape[0]
        token = torch.full((bsz, 1), self.config.n_action_bins, device=prefix.device)
        embeds = torch.cat([prefix, self._embed_step(token, 0).to(prefix.dtype)], dim=1)
        mask = torch.cat([mask, torch.ones(bsz, 1, dtype=torch.bool, device=mask.device)], 1)
        past = None
        bins: list[Tensor] = []
        for i in range(self.n_action_tokens):
            out = self.vlm.run_lm(embeds, mask, past_key_values=past, use_cache=True)
            past = out.past_key_values
            token = self.bin_head(out.last_hidden_state[:, -1:]).argmax(-1)  # (B, 1)
            bins.append(token)
            if i + 1 < self.n_action_tokens:
                embeds = self._embed_step(token, i + 1).to(prefix.dtype)
                mask = torch.cat([mask, torch.ones_like(token, dtype=torch.bool)], 1)
        all_bins = torch.cat(bins, dim=1).view(bsz, self.config.chunk_size, self.action_dim)
        return bins_to_actions(all_bins, self.config.n_action_bins)

    def _embed_step(self, token: Tensor, slot: int) -> Tensor:
        return self.bin_embedding(token) + self.slot_embedding[slot]
