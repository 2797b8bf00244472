"""Stage 2, Learn: behaviour cloning of pi(a | s, z) on pattern-labelled demonstrations.

Loss: the Gaussian negative log-likelihood  -log N(a_t; mu(s_t, z), sigma^2), averaged over
demonstration steps. With ``num_patterns = 0`` the same network ignores z: the unconditioned
BC policy that the O2O-RL baseline starts from.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from generation.data.episode import Episode
from generation.dlr.diversity import mean_pairwise_distance, trajectory_distance
from generation.dlr.policy import GaussianPolicy

log = logging.getLogger(__name__)


@dataclass
class BCConfig:
    hidden: int = 256
    epochs: int = 200
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-5
    init_log_std: float = -1.0
    # what the policies read: "all" (the whole state) or "goal" (proprio, the goal's objects,
    # joints, goal objects relative to the gripper): generation/dlr/features.py
    features: Literal["all", "goal"] = "goal"
    seed: int = 0


def demo_arrays(episodes: Sequence[Episode], patterns: Sequence[int] | None):
    """Stack (obs, action, z) over all steps; z is the episode's pattern (or -1 without)."""
    obs = np.concatenate([np.concatenate([e.states, e.env_states], 1) for e in episodes])
    act = np.concatenate([e.actions for e in episodes])
    z = np.concatenate(
        [np.full(len(e), -1 if patterns is None else patterns[i]) for i, e in enumerate(episodes)]
    )
    return obs.astype(np.float32), act.astype(np.float32), z.astype(np.int64)


def behaviour_clone(
    episodes: Sequence[Episode],
    patterns: Sequence[int] | None,
    num_patterns: int,
    cfg: BCConfig,
    features: dict | None = None,
) -> tuple[GaussianPolicy, list[float]]:
    """Fit pi(a | s, z) (``num_patterns > 0``) or pi(a | s) (``num_patterns = 0``) by max
    likelihood; ``features`` is a :func:`generation.dlr.features.feature_spec` (None: all)."""
    torch.manual_seed(cfg.seed)
    obs, act, z = demo_arrays(episodes, patterns if num_patterns else None)
    policy = GaussianPolicy(
        obs.shape[1], act.shape[1], num_patterns, cfg.hidden, cfg.init_log_std, features
    )
    with torch.no_grad():
        policy.norm.fit(policy.features(torch.as_tensor(obs)).numpy())
    obs_t, act_t, z_t = torch.as_tensor(obs), torch.as_tensor(act).clamp(-1, 1), torch.as_tensor(z)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    losses = []
    for epoch in range(cfg.epochs):
        perm, total = torch.randperm(len(obs_t)), 0.0
        for start in range(0, len(perm), cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            zb = z_t[idx] if num_patterns else None
            nll = -policy.dist(obs_t[idx], zb).log_prob(act_t[idx]).sum(-1).mean()
            opt.zero_grad()
            nll.backward()
            opt.step()
            total += float(nll.detach()) * len(idx)
        losses.append(total / len(perm))
        if epoch % 50 == 0 or epoch == cfg.epochs - 1:
            log.info("BC epoch %d: NLL %.3f", epoch, losses[-1])
    return policy, losses


def pattern_separation(paths_by_pattern: dict[int, list[np.ndarray]]) -> dict:
    """Does z change behaviour? Mean eef-path distance between patterns vs within patterns."""
    keys = sorted(paths_by_pattern)
    within = [
        mean_pairwise_distance(paths_by_pattern[k]) for k in keys if len(paths_by_pattern[k]) > 1
    ]
    between = []
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            both = paths_by_pattern[a] + paths_by_pattern[b]
            n = len(paths_by_pattern[a])
            between += [
                trajectory_distance(both[x], both[y]) for x in range(n) for y in range(n, len(both))
            ]
    w = float(np.mean(within)) if within else 0.0
    bt = float(np.mean(between)) if between else 0.0
    return {
        "within_pattern_distance": w,
        "between_pattern_distance": bt,
        "separation_ratio": bt / w if w > 0 else float("inf"),
    }
