"""PPO's objective is the paper's: sparse success reward, the horizon terminal (no bootstrap),
one loss whose coefficients mean what they say. On a scripted vector env: seconds, no LIBERO."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from test_dlr_synthetic import synthetic_demos

from generation.data.schema import ENV_STATE_DIM
from generation.dlr import ppo
from generation.dlr.learn import BCConfig, behaviour_clone
from generation.dlr.mi import MIBonus
from generation.dlr.policy import Critic
from generation.envs.suites import get_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class ScriptedEnvs:
    """``num_envs`` fake envs: episodes of ``length`` steps that succeed when ``succeed``."""

    def __init__(
        self, task, config, num_envs, seed=0, init_state_indices=None, length=5, succeed=False
    ):
        self.n, self.length, self.succeed = num_envs, length, succeed
        self.rng = np.random.default_rng(seed)
        self.t = np.zeros(num_envs, dtype=int)

    def _obs(self):
        self._last = {
            "state": self.rng.normal(size=(self.n, 8)).astype(np.float32),
            "env_state": self.rng.normal(size=(self.n, ENV_STATE_DIM)).astype(np.float32),
        }
        return self._last

    def reset(self):
        return self._obs(), [{"init_state": None, "init_state_index": 0}] * self.n

    def step(self, actions):
        self.t += 1
        end = self.t >= self.length
        terminated = end & self.succeed
        truncated = end & ~terminated
        reward = terminated.astype(np.float32)
        obs, infos = self._obs(), []
        for i in range(self.n):
            info = {"success": bool(terminated[i])}
            if end[i]:
                info["episode"] = {
                    "return": float(reward[i]),
                    "length": int(self.t[i]),
                    "success": bool(terminated[i]),
                    "final_obs": {k: v[i] for k, v in obs.items()},
                }
                info["reset_info"] = {"init_state": None, "init_state_index": 0}
                self.t[i] = 0
            infos.append(info)
        return obs, reward, terminated, truncated, infos

    def get_state(self):
        return {"rng": self.rng.bit_generator.state, "t": self.t.copy(), "obs": self._last}

    def set_state(self, state):
        self.rng.bit_generator.state, self.t = state["rng"], state["t"].copy()
        return state["obs"]

    def close(self):
        pass


@pytest.fixture(scope="module")
def policy():
    demos = synthetic_demos(per_strategy=2)
    p, _ = behaviour_clone(demos, None, 0, BCConfig(epochs=2, hidden=16))
    return p


def tiny(**kw) -> ppo.PPOConfig:
    base = dict(total_env_steps=2 * 2 * 10, num_envs=2, num_steps=10, update_epochs=2,
                num_minibatches=2, critic_warmup_iters=0, target_kl=None, critic_hidden=16)  # fmt: skip
    return ppo.PPOConfig(**{**base, **kw})


def scripted(**kw):
    return lambda *a, **k: ScriptedEnvs(*a, **k, **kw)


def test_failed_episodes_earn_exactly_zero(policy, tmp_path, monkeypatch):
    seen = []
    real_gae = ppo.gae

    def spy(rewards, *args):
        seen.append(rewards.clone())
        return real_gae(rewards, *args)

    monkeypatch.setattr(ppo, "gae", spy)
    task = get_task("libero_object", 0)
    # a critic that believes every state is worth a lot: a bootstrap would show
    monkeypatch.setattr(
        ppo.Critic, "forward", lambda self, obs, z=None: torch.full((len(obs),), 5.0)
    )
    res = ppo.train_ppo(policy, task, None, tiny(), tmp_path, make_envs=scripted(succeed=False))
    assert len(seen) == 2 and all(torch.equal(r, torch.zeros_like(r)) for r in seen)
    assert (res.curves["episode_return"] == 0).all() and (res.curves["episodes"] == 4).all()


def test_returns_are_gamma_to_the_t_on_success_and_zero_on_failure():
    gamma, T = 0.9, 4
    # two envs, one episode each over 4 steps: env 0 succeeds at its last step, env 1 fails
    rewards = torch.zeros(T, 2)
    rewards[T - 1, 0] = 1.0
    dones = torch.zeros(T, 2)
    values = torch.full((T, 2), 3.0)  # the critic's guesses do not leak into MC returns
    _, returns = ppo.gae(rewards, values, dones, torch.full((2,), 3.0), torch.ones(2), gamma, 1.0)
    expected = torch.tensor([gamma ** (T - 1 - t) for t in range(T)])
    torch.testing.assert_close(returns[:, 0], expected)
    torch.testing.assert_close(returns[:, 1], torch.zeros(T))


def test_early_stop_reads_this_epochs_kl():
    # the running mean of both epochs (0.01, 0.05) -> 0.03 is below target 0.04; this epoch is not
    assert ppo.stop_early([0.05, 0.05], 0.04)
    assert not ppo.stop_early([0.01, 0.03], 0.04)
    assert not ppo.stop_early([1.0], None)


def test_vf_coef_weights_the_critic_in_one_loss(policy, tmp_path):
    task = get_task("libero_object", 0)
    envs = scripted(succeed=True)

    def critic_after(vf_coef, name):
        cfg = tiny(vf_coef=vf_coef, seed=3)
        ppo.train_ppo(policy, task, None, cfg, tmp_path / name, make_envs=envs)
        return torch.load(tmp_path / name / "checkpoint.pt", weights_only=False)["critic"]

    torch.manual_seed(3)
    initial = Critic(policy, 16).state_dict()
    frozen, trained = critic_after(0.0, "zero"), critic_after(0.5, "half")
    for key, value in initial.items():
        torch.testing.assert_close(frozen[key], value)  # vf_coef 0: the critic never moves
    assert any(not torch.equal(trained[k], v) for k, v in initial.items())


def test_mi_bonus_includes_minus_log_prior():
    demos = synthetic_demos(per_strategy=2)
    conditioned, _ = behaviour_clone(
        demos, [e.strategy_id for e in demos], 3, BCConfig(epochs=1, hidden=16)
    )
    bonus = MIBonus(conditioned)
    obs = torch.randn(5, conditioned.obs_dim)
    z = torch.tensor([0, 1, 2, 0, 1])
    log_q = bonus.disc.log_q(obs).gather(1, z[:, None]).squeeze(1).detach().numpy()
    np.testing.assert_allclose(
        bonus.reward(obs, z), bonus.cfg.beta * (log_q + math.log(3)), rtol=1e-6
    )


def test_snapshots_keep_finished_episodes(policy, tmp_path):
    task = get_task("libero_object", 0)
    cfg = tiny(snapshot_every=2, total_env_steps=3 * 2 * 10)
    ppo.train_ppo(policy, task, None, cfg, tmp_path, make_envs=scripted(succeed=True, length=4))
    snaps = ppo.load_snapshots(tmp_path)
    assert sorted(snaps) == [1, 2]  # the BC policy's behaviour, then every 2nd
    eps = snaps[2]
    assert eps and all(e["success"] and e["states"].shape == (4, 8) for e in eps)
    assert all(e["env_states"].shape == (4, ENV_STATE_DIM) and e["z"] == -1 for e in eps)


def test_a_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path):
    """Stopped after every possible iteration and resumed from its checkpoint: the same actor,
    critic, MI discriminator, learning curves and snapshot files, bit for bit (episodes of 7
    steps straddle the 10-step iterations, so envs are mid-episode at every checkpoint)."""
    demos = synthetic_demos(per_strategy=2)
    conditioned, _ = behaviour_clone(
        demos, [e.strategy_id for e in demos], 3, BCConfig(epochs=2, hidden=16)
    )
    task = get_task("libero_object", 0)
    cfg = tiny(snapshot_every=1, total_env_steps=4 * 2 * 10, ent_coef=0.01)
    envs = scripted(succeed=True, length=7)

    def train(out, max_iterations=None):
        bonus = MIBonus(conditioned)
        return ppo.train_ppo(conditioned, task, "sample", cfg, out, bonus=bonus,
                             max_iterations=max_iterations, make_envs=envs)  # fmt: skip

    whole = train(tmp_path / "whole")
    ck_whole = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)
    for stop in (1, 2, 3):
        out = tmp_path / f"stopped_{stop}"
        assert not train(out, max_iterations=stop).finished
        resumed = train(out)  # a fresh call: everything it knows comes from out/
        assert resumed.finished
        for name, t in whole.policy.state_dict().items():
            assert torch.equal(t, resumed.policy.state_dict()[name]), (stop, name)
        ck = torch.load(out / "checkpoint.pt", weights_only=False)
        for part in ("critic", "bonus"):
            flat = dict(_flatten(ck[part], part))
            for name, t in _flatten(ck_whole[part], part):
                assert torch.equal(t, flat[name]) if torch.is_tensor(t) else t == flat[name]
        curves = resumed.curves.drop(columns="wall_s")
        pd.testing.assert_frame_equal(curves, whole.curves.drop(columns="wall_s"))
        for f in sorted((tmp_path / "whole" / "snapshots").iterdir()):
            assert f.read_bytes() == (out / "snapshots" / f.name).read_bytes(), (stop, f.name)


def _flatten(d, prefix):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{prefix}.{k}")
        else:
            yield f"{prefix}.{k}", v
