"""Tiny synthetic LeRobot datasets whose actions are a learnable function of image and state."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session", autouse=True)
def _offline_env(tmp_path_factory: pytest.TempPathFactory) -> None:
    home = tmp_path_factory.mktemp("home")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HOME"] = str(home)
    os.environ["HF_HOME"] = str(home / "hf")
    os.environ["HF_DATASETS_CACHE"] = str(home / "hf_datasets")
    os.environ["HF_LEROBOT_HOME"] = str(home / "lerobot")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def make_dataset(root: Path, episodes: int = 4, frames: int = 24, image_size: int = 32, seed: int = 0) -> Path:
    """Two tasks; action = tanh(W @ state) with its sign flipped by the task and the image tint."""
    from lerobot.datasets import LeRobotDataset

    from generation.data.schema import (
        ACTION_KEY,
        ENV_STATE_KEY,
        FPS,
        IMAGE_KEY,
        PATTERN_KEY,
        STATE_KEY,
        DatasetSpec,
        dataset_features,
    )

    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(7, 8)).astype(np.float32)
    ds = LeRobotDataset.create(
        repo_id=f"test/{root.name}",
        fps=FPS,
        features=dataset_features(DatasetSpec(image_size=image_size)),
        root=root,
        use_videos=False,
    )
    tasks = ["pick up the black bowl and place it on the plate", "open the top drawer of the cabinet"]
    for ep in range(episodes):
        task_id = ep % 2
        sign = 1.0 if task_id == 0 else -1.0
        state = rng.uniform(-1, 1, size=8).astype(np.float32)
        for _ in range(frames):
            state = np.clip(state + rng.normal(scale=0.1, size=8).astype(np.float32), -1, 1)
            image = np.zeros((image_size, image_size, 3), dtype=np.uint8)
            image[..., task_id] = 200
            image[: image_size // 2, :, 2] = np.uint8(127 + 100 * state[0])
            action = np.tanh(sign * weights @ state).astype(np.float32)
            ds.add_frame(
                {
                    IMAGE_KEY: image,
                    STATE_KEY: state,
                    ENV_STATE_KEY: np.zeros(84, dtype=np.float32),
                    ACTION_KEY: action,
                    PATTERN_KEY: np.array([task_id], dtype=np.int64),
                    "task": tasks[task_id],
                }
            )
        ds.save_episode()
    ds.finalize()
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory, _offline_env: None) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "ds_a")


@pytest.fixture(scope="session")
def tiny_dataset_b(tmp_path_factory: pytest.TempPathFactory, _offline_env: None) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "ds_b", episodes=2, seed=1)
