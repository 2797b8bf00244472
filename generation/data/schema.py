"""The LeRobot dataset schema shared by every stage (see ARCHITECTURE.md).

Frames follow lerobot's LIBERO convention so that lerobot's own tools read our datasets.
Per-episode metadata that LeRobot has no column for (source, suite, task name, init state,
seed, success, ground-truth strategy, settle steps) lives in lerobot's episode table
``meta/episodes/*.parquet`` as ``stats/dlr_episode/<field>`` columns, which lerobot's edit
tools carry (:mod:`generation.data.episode_meta`); ``meta/dlr_episodes.parquet`` is a flat
copy written beside it. :func:`generation.data.reader.read_episode_meta` loads them.
"""

from __future__ import annotations

from dataclasses import dataclass

FPS = 20  # LIBERO's control frequency
STATE_DIM = 8  # eef pos (3), eef axis-angle (3), gripper qpos (2)
ACTION_DIM = 7  # OSC_POSE delta (6) in [-1, 1], gripper last (-1 open, +1 close)
ENV_STATE_DIM = 84  # object poses (pos 3 + quat 4) for up to 12 objects, zero-padded
IMAGE_KEY = "observation.images.image"
WRIST_IMAGE_KEY = "observation.images.wrist_image"
STATE_KEY = "observation.state"
ENV_STATE_KEY = "observation.environment_state"
ACTION_KEY = "action"
PATTERN_KEY = "pattern_id"
EPISODE_META_FILE = "meta/dlr_episodes.parquet"
SOURCES = ("demo", "dlr", "o2o", "mi", "imported")

STATE_NAMES = ["eef_x", "eef_y", "eef_z", "eef_ax", "eef_ay", "eef_az", "gripper_l", "gripper_r"]
ACTION_NAMES = ["dx", "dy", "dz", "drx", "dry", "drz", "gripper"]


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset stores besides the fixed columns."""

    image_size: int = 128
    wrist_image: bool = False
    use_videos: bool = False
    env_state_dim: int = ENV_STATE_DIM


def dataset_features(spec: DatasetSpec) -> dict:
    """Feature dict for ``LeRobotDataset.create`` in the schema of ARCHITECTURE.md."""
    img_dtype = "video" if spec.use_videos else "image"
    img = {
        "dtype": img_dtype,
        "shape": (spec.image_size, spec.image_size, 3),
        "names": ["height", "width", "channels"],
    }
    features = {
        IMAGE_KEY: dict(img),
        STATE_KEY: {"dtype": "float32", "shape": (STATE_DIM,), "names": STATE_NAMES},
        ENV_STATE_KEY: {
            "dtype": "float32",
            "shape": (spec.env_state_dim,),
            "names": [f"obj_{i}" for i in range(spec.env_state_dim)],
        },
        ACTION_KEY: {"dtype": "float32", "shape": (ACTION_DIM,), "names": ACTION_NAMES},
        PATTERN_KEY: {"dtype": "int64", "shape": (1,), "names": None},
    }
    if spec.wrist_image:
        features[WRIST_IMAGE_KEY] = dict(img)
    return features
