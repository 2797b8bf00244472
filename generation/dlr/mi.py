"""The MI-bonus baseline (the paper's appendix): DIAYN-style diversity through the reward.

A discriminator q_psi(z | s) is trained online on the states each pattern's episodes visit
(cross-entropy, i.e. maximum likelihood of the episode's z), and PPO's reward becomes

    r_t = r_task + beta * (log q_psi(z | s_t) - log p(z))

with p(z) = 1/K, the prior z is sampled from: summed over the data, a variational lower bound
on beta * I(Z; S) (DIAYN's reward). Without the -log p(z) term every bonus is negative and
ending an episode early would pay. The paper's critique is visible here: on unseen states q falls back to roughly
the prior, so the bonus penalises exploration, and it pays equally for diverse failures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from generation.dlr.policy import GaussianPolicy, frozen_embedding, mlp


@dataclass
class MIConfig:
    beta: float = 0.01
    hidden: int = 128
    lr: float = 1e-3
    updates_per_iteration: int = 20
    batch_size: int = 256
    ppo: dict = field(default_factory=dict)  # overrides of generation.ppo for the MI run


class Discriminator(nn.Module):
    def __init__(self, policy: GaussianPolicy, cfg: MIConfig):
        super().__init__()
        self.num_patterns = policy.num_patterns
        self.embed = frozen_embedding(policy)
        self.net = mlp(policy.features.out_dim, cfg.hidden, policy.num_patterns)

    def log_q(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, K) log q(z | s)."""
        return F.log_softmax(self.net(self.embed(obs)), dim=-1)


class MIBonus:
    """The object PPO calls: ``reward`` before the update, ``update`` with the new data."""

    def __init__(self, policy: GaussianPolicy, cfg: MIConfig | None = None, seed: int = 0):
        if policy.num_patterns < 2:
            raise ValueError("the MI bonus needs a pattern-conditioned policy (num_patterns >= 2)")
        torch.manual_seed(seed)
        self.cfg = cfg or MIConfig()
        self.disc = Discriminator(policy, self.cfg)
        self.opt = torch.optim.Adam(self.disc.parameters(), lr=self.cfg.lr)

    @torch.no_grad()
    def reward(self, obs: torch.Tensor, z: torch.Tensor) -> np.ndarray:
        log_q = self.disc.log_q(obs).gather(1, z.long()[:, None]).squeeze(1)
        log_p = -math.log(self.disc.num_patterns)  # uniform prior over patterns
        return (self.cfg.beta * (log_q - log_p)).numpy()

    def update(self, obs: torch.Tensor, z: torch.Tensor) -> float:
        """A few steps of cross-entropy -log q(z | s) on the latest rollout."""
        loss = torch.tensor(0.0)
        for _ in range(self.cfg.updates_per_iteration):
            idx = torch.randint(len(obs), (min(self.cfg.batch_size, len(obs)),))
            loss = F.nll_loss(self.disc.log_q(obs[idx]), z[idx].long())
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
        return float(loss.detach())

    def state_dict(self) -> dict:
        return {"disc": self.disc.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, d: dict) -> None:
        self.disc.load_state_dict(d["disc"])
        self.opt.load_state_dict(d["opt"])
