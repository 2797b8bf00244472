"""π0-style flow-matching policy over a VLM prefix.

prefix  = LM([images, state, instruction])                     (B, L, D)
x_t     = t * noise + (1 - t) * actions,  t ~ Beta(1.5, 1)      (B, H, A)
v       = expert(x_t, t | prefix)                               (B, H, A)
loss    = || v - (noise - actions) ||^2  over non-padded steps
sample  : x_1 = noise;  x_{t+dt} = x_t + dt * v(x_t, t),  dt = -1 / num_steps
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from lerobot.policies.pretrained import PreTrainedPolicy
from lerobot.utils.constants import ACTION
from torch import Tensor, nn

from pretraining.common.policy_base import ChunkingPolicyMixin, action_dim
from pretraining.common.vlm_prefix import VLMPrefix
from pretraining.pi0.configuration_pi0 import DlrPi0Config


def sinusoidal_time_embedding(t: Tensor, dim: int, min_period: float, max_period: float) -> Tensor:
    """π0's sine-cosine embedding of the flow time t in [0, 1]; returns (B, dim)."""
    fraction = torch.linspace(0.0, 1.0, dim // 2, device=t.device, dtype=torch.float32)
    period = min_period * (max_period / min_period) ** fraction
    angle = t.float()[:, None] * (2 * math.pi / period)[None, :]
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)


class ActionExpert(nn.Module):
    """Transformer over the noisy chunk that cross-attends to the VLM's prefix states."""

    def __init__(self, cfg: DlrPi0Config, act_dim: int, prefix_width: int):
        super().__init__()
        width = cfg.expert_hidden_size
        self.cfg = cfg
        self.action_in = nn.Linear(act_dim, width)
        self.time_mlp = nn.Sequential(
            nn.Linear(2 * width, width), nn.SiLU(), nn.Linear(width, width)
        )
        self.position = nn.Parameter(torch.zeros(cfg.chunk_size, width))
        self.context_proj = nn.Linear(prefix_width, width)
        layer = nn.TransformerDecoderLayer(
            d_model=width,
            nhead=cfg.expert_heads,
            dim_feedforward=cfg.expert_intermediate_size,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.layers = nn.TransformerDecoder(layer, num_layers=cfg.expert_layers)
        self.norm = nn.LayerNorm(width)
        self.action_out = nn.Linear(width, act_dim)

    def forward(self, x_t: Tensor, t: Tensor, context: Tensor, context_mask: Tensor) -> Tensor:
        width = self.cfg.expert_hidden_size
        time = sinusoidal_time_embedding(t, width, self.cfg.min_period, self.cfg.max_period)
        tokens = self.action_in(x_t)
        time = time[:, None, :].expand_as(tokens).to(tokens.dtype)
        tokens = self.time_mlp(torch.cat([tokens, time], dim=-1)) + self.position[: x_t.shape[1]]
        memory = self.context_proj(context)
        hidden = self.layers(tokens, memory, memory_key_padding_mask=~context_mask)
        return self.action_out(self.norm(hidden))


class DlrPi0Policy(ChunkingPolicyMixin, PreTrainedPolicy):
    config_class = DlrPi0Config
    name = "dlr_pi0"

    def __init__(self, config: DlrPi0Config, **kwargs):
        super().__init__(config)
        config.validate_features()
        self.config = config
        self.vlm = VLMPrefix(config)
        self.action_dim = action_dim(self)
        self.expert = ActionExpert(config, self.action_dim, self.vlm.hidden_size)
        self.reset()

    def _context(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        prefix, mask = self.vlm.embed_prefix(batch)
        return self.vlm.run_lm(prefix, mask).last_hidden_state, mask

    def _sample_time(self, bsz: int, device: torch.device) -> Tensor:
        beta = torch.distributions.Beta(torch.tensor(1.5), torch.tensor(1.0))
        return (beta.sample((bsz,)) * 0.999 + 0.001).to(device)

    def forward(self, batch: dict[str, Tensor], reduction: str = "mean") -> tuple[Tensor, dict]:
        context, mask = self._context(batch)
        actions = batch[ACTION]
        if actions.ndim == 2:
            actions = actions.unsqueeze(1)
        actions = actions[:, : self.config.chunk_size].float()
        noise = torch.randn_like(actions)
        t = self._sample_time(actions.shape[0], actions.device)
        x_t = t[:, None, None] * noise + (1 - t[:, None, None]) * actions
        velocity = self.expert(x_t, t, context, mask).float()
        err = F.mse_loss(velocity, noise - actions, reduction="none").mean(-1)  # (B, H)
        weights = torch.ones_like(err)
        if "action_is_pad" in batch:
            weights = (~batch["action_is_pad"][:, : self.config.chunk_size]).float()
        per_sample = (err * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        if reduction == "none":
            return per_sample, {}
        return per_sample.mean(), {}

    @torch.no_grad()
    def predict_action_chunk(
        self, batch: dict[str, Tensor], noise: Tensor | None = None, **kwargs
    ) -> Tensor:
        """Integrate the flow from noise (t = 1) to actions (t = 0); returns (B, H, A)."""
        self.eval()
        context, mask = self._context(batch)
        bsz = context.shape[0]
        shape = (bsz, self.config.chunk_size, self.action_dim)
        x_t = noise if noise is not None else torch.randn(shape, device=context.device)
        x_t = x_t.to(device=context.device, dtype=torch.float32)
        dt = -1.0 / self.config.num_steps
        for step in range(self.config.num_steps):
            t = torch.full((bsz,), 1.0 + step * dt, device=context.device)
            x_t = x_t + dt * self.expert(x_t.to(context.dtype), t, context, mask).float()
        return x_t
