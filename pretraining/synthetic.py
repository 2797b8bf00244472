"""A tiny synthetic LeRobot dataset in our schema, for tests and benchmarks (not for science).

Two tasks; action = tanh(sign * W @ state) where the sign depends on the task (visible in the
image tint and the instruction), so a language- and vision-conditioned policy can fit it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

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

TASKS = ["pick up the black bowl and place it on the plate", "open the top drawer of the cabinet"]


def make_synthetic_dataset(
    root: Path, episodes: int = 4, frames: int = 24, image_size: int = 32, seed: int = 0
) -> Path:
    from lerobot.datasets import LeRobotDataset

    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(7, 8)).astype(np.float32)
    spec = DatasetSpec(image_size=image_size)
    ds = LeRobotDataset.create(
        repo_id=f"local/{root.name}",
        fps=FPS,
        features=dataset_features(spec),
        root=root,
        use_videos=False,
    )
    for ep in range(episodes):
        task_id = ep % 2
        sign = 1.0 if task_id == 0 else -1.0
        state = rng.uniform(-1, 1, size=8).astype(np.float32)
        for _ in range(frames):
            state = np.clip(state + rng.normal(scale=0.1, size=8).astype(np.float32), -1, 1)
            image = np.zeros((image_size, image_size, 3), dtype=np.uint8)
            image[..., task_id] = 200
            image[: image_size // 2, :, 2] = np.uint8(127 + 100 * state[0])
            ds.add_frame(
                {
                    IMAGE_KEY: image,
                    STATE_KEY: state,
                    ENV_STATE_KEY: np.zeros(spec.env_state_dim, dtype=np.float32),
                    ACTION_KEY: np.tanh(sign * weights @ state).astype(np.float32),
                    PATTERN_KEY: np.array([task_id], dtype=np.int64),
                    "task": TASKS[task_id],
                }
            )
        ds.save_episode()
    ds.finalize()
    return root
