"""An episode in memory: what every producer (demonstrators, RL rollouts, importers) hands to
the dataset writer. Arrays are per step: ``states[t]`` is observed before ``actions[t]``."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Episode:
    suite: str
    task_index: int
    task_name: str
    language: str
    init_state: np.ndarray  # flattened MuJoCo state before settling; with actions: replayable
    actions: np.ndarray  # (T, 7) float32
    states: np.ndarray  # (T, 8) float32 proprio before each action
    env_states: np.ndarray  # (T, env_state_dim) float32
    success: bool
    source: str = "demo"
    init_state_index: int = -1
    seed: int = -1
    strategy_id: int = -1  # scripted demonstrator's ground-truth strategy, -1 otherwise
    pattern_id: int = -1  # DLR pattern, -1 where there is none
    images: dict[str, np.ndarray] = field(default_factory=dict)  # key -> (T, H, W, 3) uint8
    settle_steps: int = 10

    def __post_init__(self):
        self.actions = np.asarray(self.actions, dtype=np.float32).reshape(-1, 7)
        self.states = np.asarray(self.states, dtype=np.float32)
        self.env_states = np.asarray(self.env_states, dtype=np.float32)
        n = len(self.actions)
        if len(self.states) != n or len(self.env_states) != n:
            raise ValueError(
                f"episode arrays disagree in length: actions {n}, states {len(self.states)}, "
                f"env_states {len(self.env_states)}"
            )
        for key, imgs in self.images.items():
            if len(imgs) != n:
                raise ValueError(f"images[{key!r}] has {len(imgs)} frames for {n} actions")

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def eef_path(self) -> np.ndarray:
        """(T, 3) end-effector positions: what diversity metrics compare."""
        return self.states[:, :3]


_ARRAYS = ("init_state", "actions", "states", "env_states")
_SCALARS = (
    "suite", "task_index", "task_name", "language", "success", "source", "init_state_index",
    "seed", "strategy_id", "pattern_id", "settle_steps",
)  # fmt: skip


def save_episode_npz(episode: Episode, path) -> None:
    """Cache one episode (no images) atomically (a temp file renamed into place)."""
    import json

    from generation.manifest import atomic_write

    meta = {k: getattr(episode, k) for k in _SCALARS}
    meta = {k: (v.item() if hasattr(v, "item") else v) for k, v in meta.items()}
    with atomic_write(path) as tmp, open(tmp, "wb") as f:  # a file object: no ".npz" appended
        np.savez(f, meta=json.dumps(meta), **{k: getattr(episode, k) for k in _ARRAYS})


def load_episode_npz(path) -> Episode:
    import json

    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        return Episode(**meta, **{k: z[k] for k in _ARRAYS})
