"""The replay recipe of the dataset card, run with LIBERO's own API, gives the stored states."""

import numpy as np

from generation.data.episode import Episode
from generation.data.reader import load_episodes
from generation.data.replay import fixture_poses, replay_with_libero
from generation.data.schema import DatasetSpec
from generation.data.writer import write_episodes
from generation.envs.libero_env import LiberoEnv, quat_to_axis_angle


def test_libero_api_replays_a_stored_episode_bit_for_bit(tmp_path):
    env = LiberoEnv(("libero_spatial", 0))  # has fixtures: a cabinet and a stove
    rng = np.random.default_rng(0)
    try:
        obs, info = env.reset(init_state_index=3)
        states, env_states, actions = [], [], []
        for _ in range(25):
            scale = [0.5, 0.5, 0.5, 0.2, 0.2, 0.2, 1]  # stepped as stored (float32): bit for bit
            action = (rng.uniform(-1, 1, 7) * scale).astype(np.float32)
            states.append(obs["state"])
            env_states.append(obs["env_state"])
            actions.append(action)
            obs, *_ = env.step(action)
    finally:
        env.close()
    t = env.task
    ep = Episode(t.suite, t.index, t.name, t.language, info["init_state"], actions, states,
                 env_states, False, settle_steps=env.config.settle_steps,
                 images={"image": np.zeros((len(actions), 16, 16, 3), np.uint8)})  # fmt: skip
    root = write_episodes([ep], tmp_path / "ds", spec=DatasetSpec(image_size=16), progress=False)
    stored = load_episodes(root)[0]

    fixtures = fixture_poses(stored.suite, stored.task_index)
    assert set(fixtures) == {"wooden_cabinet_1_main", "flat_stove_1_main"}
    replayed = replay_with_libero(
        stored.suite, stored.task_name, stored.init_state, stored.actions, stored.settle_steps,
        fixtures=fixtures, size=16,
    )  # fmt: skip
    assert len(replayed) == len(stored)
    for frame, raw in zip(stored.states, replayed, strict=True):
        state = np.concatenate(
            [
                raw["robot0_eef_pos"],
                quat_to_axis_angle(raw["robot0_eef_quat"]),
                raw["robot0_gripper_qpos"],
            ]
        ).astype(np.float32)
        np.testing.assert_array_equal(state, frame)
