"""Stage 3, Reinforce: PPO from a BC policy with a sparse task reward and a KL leash to init.

Read top to bottom like CleanRL's ppo_continuous_action.py:
  1. rollout ``num_steps`` steps in ``num_envs`` worker-process envs,
  2. (MI baseline only) add the discriminator bonus beta * log q(z|s) to the rewards,
  3. GAE advantages,
  4. ``update_epochs`` epochs of minibatch updates of
        L = L_clip(ratio, A) + vf_coef * (V - R)^2 - ent_coef * H[pi] + kl_coef * KL(pi || pi_init)
     stopped early when the approximate KL(pi_old || pi) exceeds ``target_kl``,
  5. log a row of learning curves and checkpoint (an interrupted run resumes from it).

Reward: the environment pays 1 at the step the task succeeds and 0 otherwise; with discount
gamma the return of an episode from its start is exactly R(tau) = gamma^(T-1) * 1[success],
the paper's sparse reward (no shaping, no diversity bonus). Episodes cut by the horizon are
bootstrapped with V(final state); success ends an episode for real.
The pattern z is fixed for the whole run (``pattern=k``), absent (``None``, O2O), or sampled
per episode (``"sample"``, the MI baseline).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from generation.dlr.policy import Critic, GaussianPolicy, gaussian_kl, obs_vector
from generation.envs.libero_env import EnvConfig
from generation.envs.suites import TaskSpec
from generation.envs.vector import SubprocVectorEnv

log = logging.getLogger(__name__)


@dataclass
class PPOConfig:
    total_env_steps: int = 20_000  # per run (per pattern for DLR)
    num_envs: int = 2
    # Defaults measured to work on LIBERO-Object task 0 (O2O from BC on 90 scripted demos, 2
    # envs): training success rose from 17% (first 12k env steps) to 33% (37k-61k), KL-to-init
    # ~0.3. A batch of 2048 steps holds ~10 episodes; 512 held ~3, too few for a sparse reward.
    num_steps: int = 1024  # steps per env per iteration
    gamma: float = 0.99
    gae_lambda: float = 0.95
    actor_lr: float = 1e-4
    critic_lr: float = 1e-3
    update_epochs: int = 4
    num_minibatches: int = 8
    clip_coef: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    kl_coef: float = 0.1  # weight of KL(pi || pi_init) in the loss
    target_kl: float | None = 0.1  # stop an iteration's epochs when KL(pi_old || pi) exceeds it
    critic_warmup_iters: int = 1  # first iterations fit the fresh critic only
    # Optional floor on the BC policy's sigma (BC fits ~0.02 on rotations) for more
    # exploration; None keeps BC's. Measured on LIBERO-Object task 0 (36 demos): with a 0.1
    # floor PPO's first 6 iterations succeeded in 1/43 episodes, BC at its own sigma in 3/12.
    min_init_std: float | None = None
    critic_hidden: int = 256
    checkpoint_every: int = 1
    seed: int = 0

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_iterations(self) -> int:
        return max(1, self.total_env_steps // self.batch_size)


CURVE_COLUMNS = [
    "iteration",
    "global_step",
    "episodes",
    "success_rate",
    "episode_return",
    "kl_to_init",
    "entropy",
    "approx_kl",
    "value_loss",
    "bonus",
    "wall_s",
]


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _write_curves(rows: list[dict], out_dir: Path) -> None:
    tmp = out_dir / f".curves.csv.tmp-{os.getpid()}"
    pd.DataFrame(rows, columns=CURVE_COLUMNS).to_csv(tmp, index=False)
    os.replace(tmp, out_dir / "curves.csv")


def plot_curves(curves: pd.DataFrame, path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.2))
    for ax, col in zip(
        axes, ["success_rate", "episode_return", "kl_to_init", "entropy"], strict=True
    ):
        ax.plot(curves["global_step"], curves[col], marker=".")
        ax.set_xlabel("env steps")
        ax.set_title(col)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@dataclass
class PPOResult:
    policy: GaussianPolicy
    curves: pd.DataFrame
    finished: bool  # False when stopped by ``max_iterations`` before the budget was spent


def train_ppo(
    init_policy: GaussianPolicy,
    task: TaskSpec,
    pattern: int | str | None,
    cfg: PPOConfig,
    out_dir: Path,
    env_config: EnvConfig | None = None,
    bonus=None,
    max_iterations: int | None = None,
) -> PPOResult:
    """PPO from ``init_policy``; resumes from ``out_dir/checkpoint.pt`` when it exists.

    ``bonus`` (MI baseline) has ``reward(obs, z) -> (N,)`` and ``update(obs, z)``.
    ``max_iterations`` stops this call after that many iterations (the run stays resumable).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    K = init_policy.num_patterns

    # ---- networks: actor from BC, frozen reference pi_init, fresh critic
    actor = copy.deepcopy(init_policy)
    if cfg.min_init_std is not None:
        with torch.no_grad():
            actor.log_std.clamp_(min=math.log(cfg.min_init_std))
    reference = copy.deepcopy(actor).requires_grad_(False)  # pi_init, the KL anchor
    critic = Critic(init_policy, cfg.critic_hidden)
    actor_opt = torch.optim.Adam(actor.parameters(), lr=cfg.actor_lr, eps=1e-5)
    critic_opt = torch.optim.Adam(critic.parameters(), lr=cfg.critic_lr, eps=1e-5)
    start_iter, global_step, rows = 0, 0, []
    ckpt_path = out_dir / "checkpoint.pt"
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=False)
        actor.load_state_dict(ck["actor"])
        critic.load_state_dict(ck["critic"])
        actor_opt.load_state_dict(ck["actor_opt"])
        critic_opt.load_state_dict(ck["critic_opt"])
        start_iter, global_step, rows = ck["iteration"], ck["global_step"], ck["curves"]
        torch.set_rng_state(ck["torch_rng"])
        if bonus is not None and "bonus" in ck:
            bonus.load_state_dict(ck["bonus"])
        rng = np.random.default_rng(cfg.seed + start_iter)
        log.info("resuming %s from iteration %d (%d env steps)", out_dir, start_iter, global_step)
    if start_iter >= cfg.num_iterations:
        return PPOResult(actor, pd.DataFrame(rows, columns=CURVE_COLUMNS), True)

    def sample_z(n: int) -> np.ndarray:
        if pattern == "sample":
            return rng.integers(K, size=n)
        return np.full(n, -1 if pattern is None else int(pattern))

    def z_arg(z: np.ndarray):  # what the networks take: None without patterns
        return torch.as_tensor(z) if K else None

    # ---- rollout storage
    N, S = cfg.num_envs, cfg.num_steps
    envs = SubprocVectorEnv(
        task,
        env_config or EnvConfig(),
        N,
        seed=cfg.seed + 7919 * start_iter,
        init_state_indices=list(range(task.n_init_states)),
    )
    obs_dim = actor.obs_dim
    b_obs = torch.zeros(S, N, obs_dim)
    b_act = torch.zeros(S, N, actor.act_dim)
    b_logp, b_rew, b_done, b_val = (torch.zeros(S, N) for _ in range(4))
    b_z = torch.zeros(S, N, dtype=torch.long)
    t_start = time.time() - (rows[-1]["wall_s"] if rows else 0.0)
    iteration = start_iter
    try:
        obs_np, _ = envs.reset()
        next_obs = torch.as_tensor(obs_vector(obs_np))
        next_done = torch.zeros(N)
        z_env = sample_z(N)
        stop_at = (
            cfg.num_iterations
            if max_iterations is None
            else min(cfg.num_iterations, start_iter + max_iterations)
        )
        for iteration in range(start_iter, stop_at):
            # ---- 1. rollout
            ep_success, ep_return = [], []
            for step in range(S):
                global_step += N
                b_obs[step], b_done[step], b_z[step] = next_obs, next_done, torch.as_tensor(z_env)
                with torch.no_grad():
                    dist = actor.dist(next_obs, z_arg(z_env))
                    action = dist.sample()
                    b_logp[step] = dist.log_prob(action).sum(-1)
                    b_val[step] = critic(next_obs, z_arg(z_env))
                b_act[step] = action
                obs_np, reward, terminated, truncated, infos = envs.step(
                    action.clamp(-1, 1).numpy()
                )
                reward = torch.as_tensor(reward)
                for i, info in enumerate(infos):
                    if "episode" not in info:
                        continue
                    ep = info["episode"]
                    ep_success.append(float(ep["success"]))
                    ep_return.append(cfg.gamma ** (ep["length"] - 1) * float(ep["success"]))
                    if truncated[i]:  # horizon cut, not a real end: bootstrap V(s_T)
                        final = torch.as_tensor(obs_vector(ep["final_obs"]))[None]
                        with torch.no_grad():
                            reward[i] += cfg.gamma * critic(final, z_arg(z_env[i : i + 1]))[0]
                    z_env[i] = sample_z(1)[0]
                b_rew[step] = reward
                next_obs = torch.as_tensor(obs_vector(obs_np))
                next_done = torch.as_tensor(terminated | truncated, dtype=torch.float32)

            # ---- 2. MI baseline: discriminator bonus beta * log q(z|s)
            bonus_mean = 0.0
            if bonus is not None:
                flat_obs, flat_z = b_obs.reshape(S * N, -1), b_z.reshape(-1)
                r_bonus = torch.as_tensor(bonus.reward(flat_obs, flat_z), dtype=torch.float32).view(
                    S, N
                )
                b_rew += r_bonus
                bonus_mean = float(r_bonus.mean())
                bonus.update(flat_obs, flat_z)

            # ---- 3. GAE: delta_t = r_t + gamma V(s_{t+1}) (1 - done_{t+1}) - V(s_t)
            with torch.no_grad():
                next_value = critic(next_obs, z_arg(z_env))
                adv = torch.zeros(S, N)
                last = torch.zeros(N)
                for t in reversed(range(S)):
                    nonterminal = 1.0 - (next_done if t == S - 1 else b_done[t + 1])
                    nv = next_value if t == S - 1 else b_val[t + 1]
                    delta = b_rew[t] + cfg.gamma * nv * nonterminal - b_val[t]
                    last = delta + cfg.gamma * cfg.gae_lambda * nonterminal * last
                    adv[t] = last
                returns = adv + b_val

            # ---- 4. policy and value updates
            f_obs, f_act, f_logp = (
                b_obs.reshape(S * N, -1),
                b_act.reshape(S * N, -1),
                b_logp.reshape(-1),
            )
            f_adv, f_ret, f_z = adv.reshape(-1), returns.reshape(-1), b_z.reshape(-1)
            warmup = iteration < cfg.critic_warmup_iters
            mb_size = max(1, (S * N) // cfg.num_minibatches)
            approx_kls, kls_init, entropies, v_losses = [], [], [], []
            for _epoch in range(cfg.update_epochs):
                perm = torch.randperm(S * N)
                for start in range(0, S * N, mb_size):
                    mb = perm[start : start + mb_size]
                    zb = f_z[mb] if K else None
                    v_loss = 0.5 * ((critic(f_obs[mb], zb) - f_ret[mb]) ** 2).mean()
                    critic_opt.zero_grad()
                    (cfg.vf_coef * v_loss).backward()
                    nn.utils.clip_grad_norm_(critic.parameters(), cfg.max_grad_norm)
                    critic_opt.step()
                    v_losses.append(float(v_loss.detach()))

                    dist = actor.dist(f_obs[mb], zb)
                    logratio = dist.log_prob(f_act[mb]).sum(-1) - f_logp[mb]
                    ratio = logratio.exp()
                    with torch.no_grad():  # k3 estimator of KL(pi_old || pi)
                        approx_kls.append(float(((ratio - 1) - logratio).mean()))
                    a = f_adv[mb]
                    a = (a - a.mean()) / (a.std() + 1e-8) if len(mb) > 1 else a
                    pg_loss = torch.max(
                        -a * ratio, -a * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef)
                    ).mean()
                    entropy = dist.entropy().sum(-1).mean()
                    kl_init = gaussian_kl(dist, reference.dist(f_obs[mb], zb)).mean()
                    entropies.append(float(entropy.detach()))
                    kls_init.append(float(kl_init.detach()))
                    if warmup:
                        continue
                    loss = pg_loss - cfg.ent_coef * entropy + cfg.kl_coef * kl_init
                    actor_opt.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(actor.parameters(), cfg.max_grad_norm)
                    actor_opt.step()
                if not warmup and cfg.target_kl is not None and np.mean(approx_kls) > cfg.target_kl:
                    break

            # ---- 5. learning curves and checkpoint
            with torch.no_grad():
                kl_now = float(
                    gaussian_kl(
                        actor.dist(f_obs, f_z if K else None),
                        reference.dist(f_obs, f_z if K else None),
                    ).mean()
                )
            rows.append(
                {
                    "iteration": iteration + 1,
                    "global_step": global_step,
                    "episodes": len(ep_success),
                    "success_rate": float(np.mean(ep_success)) if ep_success else math.nan,
                    "episode_return": float(np.mean(ep_return)) if ep_return else math.nan,
                    "kl_to_init": kl_now,
                    "entropy": float(np.mean(entropies)),
                    "approx_kl": float(np.mean(approx_kls)),
                    "value_loss": float(np.mean(v_losses)),
                    "bonus": bonus_mean,
                    "wall_s": time.time() - t_start,
                }
            )
            log.info(
                "%s it %d/%d step %d: success %.2f (%d eps) KL-init %.4f",
                out_dir.name,
                iteration + 1,
                cfg.num_iterations,
                global_step,
                rows[-1]["success_rate"],
                len(ep_success),
                kl_now,
            )
            _write_curves(rows, out_dir)
            last_iter = iteration + 1 == cfg.num_iterations
            if (iteration + 1) % cfg.checkpoint_every == 0 or last_iter or iteration + 1 == stop_at:
                _atomic_save(
                    {
                        "actor": actor.state_dict(),
                        "critic": critic.state_dict(),
                        "actor_opt": actor_opt.state_dict(),
                        "critic_opt": critic_opt.state_dict(),
                        "iteration": iteration + 1,
                        "global_step": global_step,
                        "curves": rows,
                        "torch_rng": torch.get_rng_state(),
                        "config": asdict(cfg),
                        **({"bonus": bonus.state_dict()} if bonus is not None else {}),
                    },
                    ckpt_path,
                )
    finally:
        envs.close()
    curves = pd.DataFrame(rows, columns=CURVE_COLUMNS)
    if len(curves):
        plot_curves(curves, out_dir / "curves.png", title=f"{task.key} {out_dir.name}")
    finished = bool(rows) and rows[-1]["iteration"] >= cfg.num_iterations
    return PPOResult(actor, curves, finished)
