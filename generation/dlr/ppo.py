"""Stage 3, Reinforce: PPO from a BC policy with a sparse task reward and a KL leash to init.

Read top to bottom like CleanRL's ppo_continuous_action.py:
  1. rollout ``num_steps`` steps in ``num_envs`` worker-process envs,
  2. (MI baseline only) add the discriminator bonus beta * log q(z|s) to the rewards,
  3. GAE advantages,
  4. ``update_epochs`` epochs of minibatch updates of one loss with one optimiser,
        L = L_clip(ratio, A) + vf_coef * 1/2 (V - R)^2 - ent_coef * H[pi] + kl_coef * KL(pi || pi_init)
     (actor and critic are separate networks, so vf_coef scales the critic's step only through
     its share of the clipped gradient norm and Adam's first steps); an epoch whose approximate
     KL(pi_old || pi) exceeds ``target_kl`` ends the iteration's updates,
  5. log a row of learning curves, snapshot finished episodes every ``snapshot_every``
     iterations (mode occupancy over training) and checkpoint (an interrupted run resumes).

Reward: the environment pays 1 at the step the task succeeds and 0 otherwise; with discount
gamma the return of an episode from its start is exactly R(tau) = gamma^(T-1) * 1[success],
the paper's sparse reward (no shaping, no diversity bonus). The horizon is terminal: a failed
episode's return is exactly 0 (no bootstrap from V at the time limit, which would pay failures
for the critic's optimism; the critic does not see t, so near the horizon it is biased high,
the price of the paper's objective).
The pattern z is fixed for the whole run (``pattern=k``), absent (``None``, O2O), or sampled
per episode (``"sample"``, the MI baseline). ``kl_coef = 0`` is ordinary PPO (the O2O baseline).
"""

from __future__ import annotations

import copy
import logging
import math
import pickle
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from generation.dlr.policy import Critic, GaussianPolicy, gaussian_kl, obs_vector
from generation.envs.libero_env import EnvConfig
from generation.envs.suites import TaskSpec
from generation.envs.vector import SubprocVectorEnv
from generation.manifest import atomic_pickle, atomic_write

log = logging.getLogger(__name__)


@dataclass
class PPOConfig:
    total_env_steps: int = 20_000  # per run (per pattern for DLR); set by the generation budgets
    num_envs: int = 2  # set by generation.num_envs
    num_steps: int = 1024  # steps per env per iteration: batch = num_envs * num_steps
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
    kl_coef: float = 0.1  # weight of KL(pi || pi_init) in the loss; 0: ordinary PPO
    target_kl: float | None = 0.1  # no more epochs this iteration once an epoch's KL exceeds it
    critic_warmup_iters: int = 1  # first iterations fit the fresh critic only
    # Optional floor on the BC policy's sigma (BC fits ~0.02 on rotations) for more
    # exploration; None keeps BC's. Measured on LIBERO-Object task 0 (36 demos): with a 0.1
    # floor PPO's first 6 iterations succeeded in 1/43 episodes, BC at its own sigma in 3/12.
    min_init_std: float | None = None
    critic_hidden: int = 256
    checkpoint_every: int = 1
    snapshot_every: int = 0  # keep finished episodes of iteration 1 and every n-th (0: none)
    seed: int = 0  # set by generation.seed

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
    "epochs",
    "wall_s",
]


def _atomic_save(obj, path: Path) -> None:
    with atomic_write(path) as tmp:
        torch.save(obj, tmp)


def _write_curves(rows: list[dict], out_dir: Path) -> None:
    with atomic_write(out_dir / "curves.csv") as tmp:
        pd.DataFrame(rows, columns=CURVE_COLUMNS).to_csv(tmp, index=False)


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
    try:
        with atomic_write(path) as tmp:  # the format from the real suffix, not the temp name's
            fig.savefig(tmp, dpi=100, format=Path(path).suffix[1:])
    finally:
        plt.close(fig)


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    next_value: torch.Tensor,
    next_done: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over a (S, N) rollout; returns (advantages, returns).

    ``dones[t]`` marks that s_t starts a new episode (the previous one ended at t - 1), so
    delta_t = r_t + gamma V(s_{t+1}) (1 - done_{t+1}) - V(s_t): an episode's end, success or
    horizon, is terminal. With lam = 1 the returns are the discounted Monte-Carlo returns.
    """
    S = rewards.shape[0]
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[0])
    for t in reversed(range(S)):
        nonterminal = 1.0 - (next_done if t == S - 1 else dones[t + 1])
        nv = next_value if t == S - 1 else values[t + 1]
        delta = rewards[t] + gamma * nv * nonterminal - values[t]
        last = delta + gamma * lam * nonterminal * last
        adv[t] = last
    return adv, adv + values


def stop_early(epoch_kls: list[float], target_kl: float | None) -> bool:
    """CleanRL's rule: no more epochs once *this* epoch's mean approx-KL exceeds the target
    (a running mean over all epochs would lag behind a policy that is running away)."""
    return target_kl is not None and float(np.mean(epoch_kls)) > target_kl


@dataclass
class PPOResult:
    policy: GaussianPolicy
    curves: pd.DataFrame
    finished: bool  # False when stopped by ``max_iterations`` before the budget was spent


def load_snapshots(out_dir: Path) -> dict[int, list[dict]]:
    """{iteration: finished episodes} written by ``snapshot_every`` (each episode a dict of
    ``states``, ``env_states``, ``success``, ``z``)."""
    out = {}
    for f in sorted((Path(out_dir) / "snapshots").glob("iter_*.pkl")):
        with open(f, "rb") as fh:
            out[int(f.stem.split("_")[1])] = pickle.load(fh)
    return out


def train_ppo(
    init_policy: GaussianPolicy,
    task: TaskSpec,
    pattern: int | str | None,
    cfg: PPOConfig,
    out_dir: Path,
    env_config: EnvConfig | None = None,
    bonus=None,
    max_iterations: int | None = None,
    make_envs: Callable[..., SubprocVectorEnv] | None = None,
) -> PPOResult:
    """PPO from ``init_policy``; resumes from ``out_dir/checkpoint.pt`` when it exists.

    ``bonus`` (MI baseline) has ``reward(obs, z) -> (N,)`` and ``update(obs, z)``.
    ``max_iterations`` stops this call after that many iterations (the run stays resumable).
    ``make_envs(task, env_config, num_envs, seed=, init_state_indices=)`` builds the vector env
    (default :class:`SubprocVectorEnv`; tests pass a scripted one with the same ``reset``,
    ``step``, ``get_state``, ``set_state`` and ``close``).
    A resumed run is bit-identical to an uninterrupted one: checkpoints keep the RNGs and where
    the envs are mid-episode (``SubprocVectorEnv.get_state``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    K = init_policy.num_patterns

    # ---- networks: actor from BC, frozen reference pi_init, fresh critic; one optimiser
    actor = copy.deepcopy(init_policy)
    if cfg.min_init_std is not None:
        with torch.no_grad():
            actor.log_std.clamp_(min=math.log(cfg.min_init_std))
    reference = copy.deepcopy(actor).requires_grad_(False)  # pi_init, the KL anchor
    critic = Critic(init_policy, cfg.critic_hidden)
    optimizer = torch.optim.Adam(
        [
            {"params": actor.parameters(), "lr": cfg.actor_lr},
            {"params": critic.parameters(), "lr": cfg.critic_lr},
        ],
        eps=1e-5,
    )
    params = [*actor.parameters(), *critic.parameters()]
    start_iter, global_step, rows, ck = 0, 0, [], {}
    ckpt_path = out_dir / "checkpoint.pt"
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=False)
        actor.load_state_dict(ck["actor"])
        critic.load_state_dict(ck["critic"])
        optimizer.load_state_dict(ck["optimizer"])
        start_iter, global_step, rows = ck["iteration"], ck["global_step"], ck["curves"]
        torch.set_rng_state(ck["torch_rng"])
        if bonus is not None and "bonus" in ck:
            bonus.load_state_dict(ck["bonus"])
        if "np_rng" in ck:
            rng.bit_generator.state = ck["np_rng"]
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
    envs = (make_envs or SubprocVectorEnv)(
        task,
        env_config or EnvConfig(),
        N,
        seed=cfg.seed,
        init_state_indices=list(range(task.n_init_states)),
    )
    obs_dim = actor.obs_dim
    b_obs = torch.zeros(S, N, obs_dim)
    b_act = torch.zeros(S, N, actor.act_dim)
    b_logp, b_rew, b_done, b_val = (torch.zeros(S, N) for _ in range(4))
    b_z = torch.zeros(S, N, dtype=torch.long)
    t_start = time.time() - (rows[-1]["wall_s"] if rows else 0.0)
    stop_at = (
        cfg.num_iterations
        if max_iterations is None
        else min(cfg.num_iterations, start_iter + max_iterations)
    )
    bar = tqdm(
        total=cfg.num_iterations,
        initial=start_iter,
        desc=f"PPO {task.key} {out_dir.name}",
        unit="it",
        leave=False,
        disable=None,  # off when stderr is not a terminal
    )
    try:
        carried = ck.get("rollout")
        if carried is not None:  # mid-episode envs, as the checkpoint left them
            next_obs = torch.as_tensor(obs_vector(envs.set_state(carried["envs"])))
            if not torch.equal(next_obs, carried["next_obs"]):
                raise RuntimeError(
                    f"{ckpt_path}: replaying the envs' episodes did not reach the checkpointed "
                    "observations (was the task or the code changed?): delete the step folder "
                    f"{out_dir} to retrain it"
                )
            next_done, z_env, traces = carried["next_done"], carried["z_env"], carried["traces"]
        else:
            if start_iter:
                log.warning("%s: the checkpoint has no env states: resuming from fresh episodes "
                            "(not bit-identical to an uninterrupted run)", ckpt_path)  # fmt: skip
            obs_np, _ = envs.reset()
            next_obs = torch.as_tensor(obs_vector(obs_np))
            next_done = torch.zeros(N)
            z_env = sample_z(N)
            traces: list[list[np.ndarray]] = [[] for _ in range(N)]  # each env's episode so far
        for iteration in range(start_iter, stop_at):
            # iteration 1 rolls out the initial (BC) policy: the baseline of every snapshot series
            snapshot = cfg.snapshot_every > 0 and (
                iteration == 0 or (iteration + 1) % cfg.snapshot_every == 0
            )
            # ---- 1. rollout
            finished: list[dict] = []
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
                if cfg.snapshot_every > 0:
                    for i in range(N):
                        traces[i].append(next_obs[i].numpy())
                obs_np, reward, terminated, truncated, infos = envs.step(
                    action.clamp(-1, 1).numpy()
                )
                for i, info in enumerate(infos):
                    if "episode" not in info:
                        continue
                    ep = info["episode"]
                    ep_success.append(float(ep["success"]))
                    ep_return.append(cfg.gamma ** (ep["length"] - 1) * float(ep["success"]))
                    if snapshot and traces[i]:
                        states = np.stack(traces[i])
                        finished.append(
                            {
                                "states": states[:, : obs_np["state"].shape[-1]],
                                "env_states": states[:, obs_np["state"].shape[-1] :],
                                "success": bool(ep["success"]),
                                "z": int(z_env[i]),
                            }
                        )
                    traces[i] = []
                    z_env[i] = sample_z(1)[0]
                # the horizon is terminal: reward stays the env's 0/1, no bootstrap
                b_rew[step] = torch.as_tensor(reward)
                next_obs = torch.as_tensor(obs_vector(obs_np))
                next_done = torch.as_tensor(terminated | truncated, dtype=torch.float32)

            # ---- 2. MI baseline: discriminator bonus beta * (log q(z|s) - log p(z))
            bonus_mean = 0.0
            if bonus is not None:
                flat_obs, flat_z = b_obs.reshape(S * N, -1), b_z.reshape(-1)
                r_bonus = torch.as_tensor(bonus.reward(flat_obs, flat_z), dtype=torch.float32).view(
                    S, N
                )
                b_rew += r_bonus
                bonus_mean = float(r_bonus.mean())
                bonus.update(flat_obs, flat_z)

            # ---- 3. GAE
            with torch.no_grad():
                next_value = critic(next_obs, z_arg(z_env))
                adv, returns = gae(
                    b_rew, b_val, b_done, next_value, next_done, cfg.gamma, cfg.gae_lambda
                )

            # ---- 4. policy and value updates: one loss, one optimiser
            f_obs, f_act, f_logp = (
                b_obs.reshape(S * N, -1),
                b_act.reshape(S * N, -1),
                b_logp.reshape(-1),
            )
            f_adv, f_ret, f_z = adv.reshape(-1), returns.reshape(-1), b_z.reshape(-1)
            warmup = iteration < cfg.critic_warmup_iters
            mb_size = max(1, (S * N) // cfg.num_minibatches)
            approx_kls, kls_init, entropies, v_losses = [], [], [], []
            epochs_run = 0
            for _epoch in range(cfg.update_epochs):
                epochs_run += 1
                epoch_kls = []
                perm = torch.randperm(S * N)
                for start in range(0, S * N, mb_size):
                    mb = perm[start : start + mb_size]
                    zb = f_z[mb] if K else None
                    v_loss = 0.5 * ((critic(f_obs[mb], zb) - f_ret[mb]) ** 2).mean()
                    dist = actor.dist(f_obs[mb], zb)
                    logratio = dist.log_prob(f_act[mb]).sum(-1) - f_logp[mb]
                    ratio = logratio.exp()
                    with torch.no_grad():  # k3 estimator of KL(pi_old || pi)
                        epoch_kls.append(float(((ratio - 1) - logratio).mean()))
                    a = f_adv[mb]
                    a = (a - a.mean()) / (a.std() + 1e-8) if len(mb) > 1 else a
                    pg_loss = torch.max(
                        -a * ratio, -a * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef)
                    ).mean()
                    entropy = dist.entropy().sum(-1).mean()
                    kl_init = gaussian_kl(dist, reference.dist(f_obs[mb], zb)).mean()
                    entropies.append(float(entropy.detach()))
                    kls_init.append(float(kl_init.detach()))
                    v_losses.append(float(v_loss.detach()))
                    if warmup:  # the fresh critic learns first; the actor waits
                        loss = cfg.vf_coef * v_loss
                    else:
                        loss = (
                            pg_loss
                            - cfg.ent_coef * entropy
                            + cfg.kl_coef * kl_init
                            + cfg.vf_coef * v_loss
                        )
                    optimizer.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                    optimizer.step()
                approx_kls += epoch_kls
                if not warmup and stop_early(epoch_kls, cfg.target_kl):
                    break

            # ---- 5. learning curves, snapshots and checkpoint
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
                    "epochs": epochs_run,
                    "wall_s": time.time() - t_start,
                }
            )
            log.debug(
                "%s it %d/%d step %d: success %.2f (%d eps) KL-init %.4f",
                out_dir.name,
                iteration + 1,
                cfg.num_iterations,
                global_step,
                rows[-1]["success_rate"],
                len(ep_success),
                kl_now,
            )
            bar.update(1)
            bar.set_postfix(success=f"{rows[-1]['success_rate']:.2f}", eps=len(ep_success))
            _write_curves(rows, out_dir)
            if snapshot:
                (out_dir / "snapshots").mkdir(exist_ok=True)
                atomic_pickle(finished, out_dir / "snapshots" / f"iter_{iteration + 1:05d}.pkl")
            last_iter = iteration + 1 == cfg.num_iterations
            if (iteration + 1) % cfg.checkpoint_every == 0 or last_iter or iteration + 1 == stop_at:
                _atomic_save(
                    {
                        "actor": actor.state_dict(),
                        "critic": critic.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "iteration": iteration + 1,
                        "global_step": global_step,
                        "curves": rows,
                        "torch_rng": torch.get_rng_state(),
                        "np_rng": rng.bit_generator.state,
                        # where the envs are mid-episode: a resume continues exactly here
                        "rollout": {
                            "envs": envs.get_state(),
                            "next_obs": next_obs,
                            "next_done": next_done,
                            "z_env": z_env.copy(),
                            "traces": traces,
                        },
                        "config": asdict(cfg),
                        **({"bonus": bonus.state_dict()} if bonus is not None else {}),
                    },
                    ckpt_path,
                )
    finally:
        bar.close()
        envs.close()
    curves = pd.DataFrame(rows, columns=CURVE_COLUMNS)
    if len(curves):
        plot_curves(curves, out_dir / "curves.png", title=f"{task.key} {out_dir.name}")
    finished = bool(rows) and rows[-1]["iteration"] >= cfg.num_iterations
    return PPOResult(actor, curves, finished)
