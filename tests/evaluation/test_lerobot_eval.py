"""`lerobot-eval` on our checkpoints: the env type dlr_libero, and lerobot's own libero env."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_policy_checkpoint import tiny_checkpoint

REPO = Path(__file__).resolve().parents[2]
HORIZON = 8


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny, untrained pi0-style checkpoint replanning every 2 steps. Its actions move with
    its inputs (flow matching integrates a field of the image and state), where an untrained
    openvla-style one decodes the same bins whatever it sees."""
    root = tmp_path_factory.mktemp("ckpt")
    return tiny_checkpoint(root, "pi0", image_size=32, chunk_size=2, n_action_steps=2)


def _our_actions(ckpt: Path, init_states: list[int]) -> list[np.ndarray]:
    """What evaluation.closed_loop's episode loop does, with the actions kept; the flow noise
    is seeded alike for every episode, so that only what the policy sees tells them apart."""
    import torch

    from evaluation.closed_loop import PolicyRunner
    from generation.envs.libero_env import EnvConfig, LiberoEnv

    runner = PolicyRunner(ckpt, device="cpu")
    config = EnvConfig(cameras=("agentview",), image_size=32, render_mode="fast", horizon=HORIZON)
    env = LiberoEnv(("libero_object", 0), config)
    episodes = []
    try:
        for index in init_states:
            torch.manual_seed(0)
            runner.reset()
            obs, _ = env.reset(init_state_index=index)
            actions, done = [], False
            while not done:
                actions.append(runner.act(obs, env.language))
                obs, _, terminated, truncated, _ = env.step(actions[-1])
                done = terminated or truncated
            episodes.append(np.stack(actions))
    finally:
        env.close()
    return episodes


def _lerobot_actions(ckpt: Path, episodes: int) -> list[np.ndarray]:
    """lerobot-eval's own pieces (policy, processors, rollout) on --env.type=dlr_libero."""
    import torch
    from lerobot.configs import PreTrainedConfig
    from lerobot.envs import close_envs, make_env, make_env_pre_post_processors
    from lerobot.policies.factory import make_policy, make_pre_post_processors
    from lerobot.scripts.lerobot_eval import rollout

    from evaluation.lerobot_env import DlrLiberoEnv
    from pretraining.factory import register_all

    register_all()
    env_cfg = DlrLiberoEnv(
        task="libero_object", task_ids=[0], image_size=32, episode_length=HORIZON
    )
    policy_cfg = PreTrainedConfig.from_pretrained(str(ckpt))
    policy_cfg.pretrained_path, policy_cfg.device = str(ckpt), "cpu"
    policy = make_policy(policy_cfg, env_cfg=env_cfg)
    policy.eval()
    pre, post = make_pre_post_processors(
        policy_cfg, pretrained_path=str(ckpt),
        preprocessor_overrides={"device_processor": {"device": "cpu"}},
    )  # fmt: skip
    env_pre, env_post = make_env_pre_post_processors(env_cfg, policy_cfg)
    envs = make_env(env_cfg, n_envs=1, use_async_envs=False)
    try:
        out = []
        for _ in range(episodes):
            torch.manual_seed(0)
            data = rollout(envs["libero_object"][0], policy, env_pre, env_post, pre, post)
            out.append(data["action"][0].numpy())
        return out
    finally:
        close_envs(envs)


def test_lerobot_rollout_takes_our_evaluators_actions(checkpoint):
    """Same checkpoint, task and init states 0 and 1: lerobot's rollout loop on dlr_libero
    acts exactly as evaluation.closed_loop does, step for step (not only the same success)."""
    ours = _our_actions(checkpoint, [0, 1])
    theirs = _lerobot_actions(checkpoint, 2)
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape == (HORIZON, 7)
        np.testing.assert_allclose(a, np.clip(b, -1, 1), rtol=0, atol=1e-5)
    assert np.abs(ours[0] - ours[1]).max() > 1e-3  # same noise, other scene: other actions


def test_sub_envs_take_lerobots_init_state_order():
    from evaluation.lerobot_env import DlrLiberoGymEnv

    env = DlrLiberoGymEnv("libero_object", 0, episode_index=1, n_envs=3, image_size=16)
    try:
        seen = [env.reset(seed=s)[1]["init_state_index"] for s in (0, 1, 2)]
        obs, *_ = env.step(np.zeros(7, np.float32))
    finally:
        env.close()
    assert seen == [1, 4, 7]
    assert obs["pixels"]["image"].shape == (16, 16, 3) and obs["agent_pos"].shape == (8,)


def test_bad_env_settings_name_the_fix():
    from evaluation.lerobot_env import DlrLiberoEnv

    with pytest.raises(ValueError, match="--env.task: unknown LIBERO suite.*libero_spatial"):
        DlrLiberoEnv(task="libero_sptial")
    with pytest.raises(ValueError, match=r"--env.task_ids \[10\] out of range for libero_object"):
        DlrLiberoEnv(task="libero_object", task_ids=[10]).create_envs(1)


@pytest.fixture
def libero_config(tmp_path, monkeypatch) -> Path:
    """LIBERO_CONFIG_PATH pointing at init files lerobot's `libero` env can load."""
    from evaluation.lerobot_env import write_libero_init_files

    folder = write_libero_init_files(tmp_path / "libero", ["libero_object"])
    monkeypatch.setenv("LIBERO_CONFIG_PATH", str(folder))
    return folder


def test_libero_init_files_give_lerobot_our_init_states(libero_config):
    """The loader that failed in the issue (`.pruned_init` missing) reads our init states."""
    from lerobot.envs.libero import get_task_init_states
    from libero.libero import benchmark

    from generation.envs.suites import init_states

    suite = benchmark.get_benchmark_dict()["libero_object"]()
    for task in (0, 9):
        ours = init_states("libero_object", task)  # still read from the linked .npz
        assert ours.shape[0] == 50
        np.testing.assert_array_equal(get_task_init_states(suite, task), ours)


@pytest.mark.slow
def test_lerobots_libero_env_starts_where_ours_does(libero_config):
    """lerobot's `libero` env on init state 0 (10 settle steps) puts the robot where ours does."""
    from lerobot.envs.libero import LiberoEnv as LerobotLiberoEnv
    from libero.libero import benchmark

    from generation.envs.libero_env import LiberoEnv

    suite = benchmark.get_benchmark_dict()["libero_object"]()
    theirs = LerobotLiberoEnv(suite, 0, "libero_object", camera_name="agentview_image",
                              obs_type="pixels_agent_pos", observation_width=16,
                              observation_height=16, hard_reset=False)  # fmt: skip
    ours = LiberoEnv(("libero_object", 0))
    try:
        obs, _ = theirs.reset()
        mine, _ = ours.reset(init_state_index=0)
    finally:
        theirs.close()
        ours.close()
    np.testing.assert_allclose(obs["robot_state"]["eef"]["pos"], mine["state"][:3], atol=1e-6)
    np.testing.assert_allclose(obs["robot_state"]["gripper"]["qpos"], mine["state"][6:], atol=1e-6)


@pytest.mark.slow
def test_lerobot_eval_cli_runs_our_checkpoint(checkpoint, tmp_path):
    """`lerobot-eval --policy.path=<ours> --env.type=dlr_libero` end to end, against our
    evaluator on the same checkpoint, task and init states."""
    from evaluation.closed_loop import evaluate

    names = {d.metadata["Name"] for d in importlib.metadata.distributions()}
    if "lerobot_policy_dlr" not in names:
        pytest.skip("plugin not installed: pip install -e plugins/lerobot_policy_dlr --no-deps")
    cli = Path(sys.executable).with_name("lerobot-eval")
    cmd = [
        str(cli), f"--policy.path={checkpoint}", "--policy.device=cpu", "--env.type=dlr_libero",
        "--env.task=libero_object", "--env.task_ids=[0]", "--env.image_size=32",
        f"--env.episode_length={HORIZON}", "--eval.n_episodes=2", "--eval.batch_size=1",
        f"--output_dir={tmp_path / 'eval'}",
    ]  # fmt: skip
    path = os.pathsep.join([str(REPO), str(REPO / "plugins" / "lerobot_policy_dlr")])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}  # this checkout's plugin
    subprocess.run(cmd, check=True, env=env, cwd=tmp_path, capture_output=True, timeout=600)
    info = json.loads((tmp_path / "eval" / "eval_info.json").read_text())
    episodes = info["per_task"][0]["metrics"]["successes"]
    ours = evaluate(
        checkpoint, arch="openvla", source="none", size=0, suite="libero_object", tasks=[0],
        episodes_per_task=2, seeds=[0], out_dir=tmp_path / "ours", horizon=HORIZON, device="cpu",
    )  # fmt: skip
    assert len(episodes) == 2 and sum(episodes) == int(ours["successes"].iloc[0])
