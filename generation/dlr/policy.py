"""The small state-based networks of the generator: a Gaussian policy pi(a | s, z) and a critic.

Observation s = [proprio (8), object state (env_state_dim)]; the networks see features of it
(all of it, or the goal-relevant slice: :mod:`generation.dlr.features`), normalised with
statistics fitted on the demonstrations and frozen afterwards (so PPO's policy is the BC
policy's function).
The pattern z enters as a one-hot vector; ``num_patterns = 0`` gives the unconditioned policy
of the O2O baseline (same network, no z input).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from torch.distributions import Normal


def obs_vector(obs: dict) -> np.ndarray:
    """Env observation dict (single or batched) -> flat state vector(s)."""
    return np.concatenate([obs["state"], obs["env_state"]], axis=-1).astype(np.float32)


def mlp(inp: int, hidden: int, out: int, layers: int = 2) -> nn.Sequential:
    mods, d = [], inp
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), nn.Tanh()]
        d = hidden
    mods.append(nn.Linear(d, out))
    return nn.Sequential(*mods)


class Normaliser(nn.Module):
    """x -> (x - mean) / std with frozen statistics stored as buffers."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, x: np.ndarray) -> None:
        x = torch.as_tensor(x, dtype=torch.float32)
        self.mean.copy_(x.mean(0))
        self.std.copy_(torch.where(x.std(0) > 1e-6, x.std(0), torch.ones_like(x.std(0))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.std).clamp(-10.0, 10.0)


class StateFeatures(nn.Module):
    """s -> [s[index], s[r:r+3] - s[0:3] for r in relative]; the identity without a spec."""

    def __init__(self, obs_dim: int, spec: dict | None = None):
        super().__init__()
        self.spec = spec
        index = spec["index"] if spec else list(range(obs_dim))
        relative = spec["relative"] if spec else []
        if index and max(index) >= obs_dim or relative and max(relative) + 3 > obs_dim:
            raise ValueError(f"feature spec indexes beyond the {obs_dim}-D state")
        # derived from the spec (saved with the policy), so not part of the state dict
        self.register_buffer("index", torch.as_tensor(index, dtype=torch.long), persistent=False)
        self.register_buffer(
            "relative", torch.as_tensor(relative, dtype=torch.long), persistent=False
        )
        self.out_dim = len(index) + 3 * len(relative)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec is None:
            return x
        rel = [x[..., r : r + 3] - x[..., 0:3] for r in self.relative.tolist()]
        return torch.cat([x[..., self.index], *rel], dim=-1)


class GaussianPolicy(nn.Module):
    """pi(a | s, z) = N(tanh(f(s, z)), diag exp(log_std)^2), log_std state-independent."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int = 7,
        num_patterns: int = 0,
        hidden: int = 256,
        init_log_std: float = -1.0,
        features: dict | None = None,
    ):
        super().__init__()
        self.obs_dim, self.act_dim, self.num_patterns, self.hidden = (
            obs_dim,
            act_dim,
            num_patterns,
            hidden,
        )
        self.features = StateFeatures(obs_dim, features)
        self.norm = Normaliser(self.features.out_dim)
        self.net = mlp(self.features.out_dim + num_patterns, hidden, act_dim)
        self.log_std = nn.Parameter(torch.full((act_dim,), init_log_std))

    def spec(self) -> dict:
        return {
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "num_patterns": self.num_patterns,
            "hidden": self.hidden,
            "features": self.features.spec,
        }

    def embed(self, obs: torch.Tensor) -> torch.Tensor:
        """Normalised features of the state: what every network of the generator reads."""
        return self.norm(self.features(obs))

    def one_hot(self, z: torch.Tensor | int | None, batch: int) -> torch.Tensor:
        if self.num_patterns == 0:
            return torch.zeros(batch, 0)
        z = (
            torch.as_tensor(z).long().expand(batch)
            if not torch.is_tensor(z) or z.dim() == 0
            else z.long()
        )
        return nn.functional.one_hot(z, self.num_patterns).float()

    def dist(self, obs: torch.Tensor, z=None) -> Normal:
        x = torch.cat([self.embed(obs), self.one_hot(z, len(obs))], dim=-1)
        mean = torch.tanh(self.net(x))
        return Normal(mean, self.log_std.clamp(-5.0, 1.0).exp().expand_as(mean))

    @torch.no_grad()
    def act(self, obs: np.ndarray, z=None, deterministic: bool = False) -> np.ndarray:
        d = self.dist(torch.as_tensor(obs, dtype=torch.float32), z)
        a = d.mean if deterministic else d.sample()
        return a.clamp(-1.0, 1.0).numpy()


def frozen_embedding(policy: GaussianPolicy) -> nn.Sequential:
    """A copy of the policy's features and normaliser, for the critic and discriminator."""
    features = StateFeatures(policy.obs_dim, policy.features.spec)
    norm = Normaliser(features.out_dim)
    norm.load_state_dict(policy.norm.state_dict())
    return nn.Sequential(features, norm)


class Critic(nn.Module):
    """V(s, z): a fresh MLP over the same normalised observation and pattern one-hot."""

    def __init__(self, policy: GaussianPolicy, hidden: int = 256):
        super().__init__()
        self.num_patterns = policy.num_patterns
        self.embed = frozen_embedding(policy)
        self.net = mlp(policy.features.out_dim + policy.num_patterns, hidden, 1)
        nn.init.orthogonal_(self.net[-1].weight, 1.0)

    def forward(self, obs: torch.Tensor, z=None) -> torch.Tensor:
        oh = GaussianPolicy.one_hot(self, z, len(obs))
        return self.net(torch.cat([self.embed(obs), oh], dim=-1)).squeeze(-1)


def gaussian_kl(p: Normal, q: Normal) -> torch.Tensor:
    """KL(p || q) for diagonal Gaussians, summed over action dimensions (closed form)."""
    var_ratio = (p.scale / q.scale) ** 2
    t1 = ((p.loc - q.loc) / q.scale) ** 2
    return 0.5 * (var_ratio + t1 - 1.0 - torch.log(var_ratio)).sum(-1)


def save_policy(policy: GaussianPolicy, path) -> None:
    torch.save({"spec": policy.spec(), "state_dict": policy.state_dict()}, path)


def load_policy(path) -> GaussianPolicy:
    ck = torch.load(path, weights_only=False)
    policy = GaussianPolicy(**ck["spec"])
    policy.load_state_dict(ck["state_dict"])
    return policy
