"""Behaviour shared by our VLA policies: action queue, optimiser groups, chunk prediction API."""

from __future__ import annotations

from collections import deque

import torch
from lerobot.policies.pretrained import PreTrainedPolicy
from lerobot.utils.constants import ACTION
from torch import Tensor


class ChunkingPolicyMixin:
    """``select_action`` pops from a queue refilled by ``predict_action_chunk``."""

    config: object

    def reset(self) -> None:
        self._action_queue: deque[Tensor] = deque(maxlen=self.config.n_action_steps)

    def get_optim_params(self) -> list[torch.nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    @torch.no_grad()
    def select_action(self, batch: dict[str, Tensor], **kwargs) -> Tensor:
        self.eval()
        if not getattr(self, "_action_queue", None):
            chunk = self.predict_action_chunk(batch, **kwargs)[:, : self.config.n_action_steps]
            self._action_queue = deque(chunk.transpose(0, 1), maxlen=self.config.n_action_steps)
        return self._action_queue.popleft()


def action_dim(policy: PreTrainedPolicy) -> int:
    return int(policy.config.output_features[ACTION].shape[0])
