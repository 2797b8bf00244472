import os

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

from test_dlr_synthetic import synthetic_demos

from generation.dlr.learn import BCConfig, behaviour_clone
from generation.dlr.ppo import PPOConfig, train_ppo
from generation.envs.libero_env import EnvConfig
from generation.envs.suites import get_task

ENV = EnvConfig(horizon=40)
# real LIBERO envs in worker processes: ~1-4 min on 2 shared cores
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def task():
    return get_task("libero_object", 0)


@pytest.fixture(scope="module")
def bc_policy():
    demos = synthetic_demos(per_strategy=3)
    policy, _ = behaviour_clone(
        demos, [e.strategy_id for e in demos], 3, BCConfig(epochs=20, hidden=64)
    )
    return policy


def tiny(**kw) -> PPOConfig:
    base = dict(
        total_env_steps=3 * 2 * 24,
        num_envs=2,
        num_steps=24,
        update_epochs=2,
        num_minibatches=2,
        critic_warmup_iters=0,
        target_kl=None,
        critic_hidden=32,
    )
    return PPOConfig(**{**base, **kw})


def test_resume_continues_rather_than_restarts(task, bc_policy, tmp_path):
    cfg = tiny()
    first = train_ppo(bc_policy, task, 1, cfg, tmp_path, ENV, max_iterations=1)
    assert not first.finished and list(first.curves.iteration) == [1]
    assert (tmp_path / "checkpoint.pt").exists() and (tmp_path / "curves.csv").exists()
    # "interrupted": a new call picks up at iteration 2, curves and step counter continue
    second = train_ppo(bc_policy, task, 1, cfg, tmp_path, ENV)
    assert second.finished
    curves = pd.read_csv(tmp_path / "curves.csv")
    assert list(curves.iteration) == [1, 2, 3]
    assert list(curves.global_step) == [48, 96, 144]
    assert curves.iloc[0].to_dict() == pytest.approx(first.curves.iloc[0].to_dict(), nan_ok=True)
    assert (tmp_path / "curves.png").exists()
    for col in ("success_rate", "episode_return", "kl_to_init", "entropy"):
        assert col in curves
    # a finished run is not re-trained
    again = train_ppo(bc_policy, task, 1, cfg, tmp_path, ENV)
    assert list(again.curves.iteration) == [1, 2, 3]


def test_kl_penalty_keeps_policy_near_init(task, bc_policy, tmp_path):
    kw = dict(total_env_steps=2 * 2 * 24, actor_lr=3e-3, update_epochs=4)
    free = train_ppo(bc_policy, task, 0, tiny(kl_coef=0.0, **kw), tmp_path / "free", ENV)
    leashed = train_ppo(bc_policy, task, 0, tiny(kl_coef=100.0, **kw), tmp_path / "leashed", ENV)
    kl_free, kl_leashed = free.curves.kl_to_init.iloc[-1], leashed.curves.kl_to_init.iloc[-1]
    assert kl_leashed < kl_free, (kl_leashed, kl_free)
    assert np.isfinite(kl_free) and kl_free > 0
