"""Read our LeRobot datasets back: per-episode metadata and state-only episodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from generation.data.episode import Episode
from generation.data.episode_meta import read_episode_table
from generation.data.schema import ACTION_KEY, ENV_STATE_KEY, EPISODE_META_FILE, STATE_KEY


def _require_dataset(root: Path) -> None:
    if not (root / "meta" / "info.json").is_file():
        raise FileNotFoundError(
            f"{root} is not a LeRobot dataset (no meta/info.json); "
            "point to a folder written by `dlr demos` or the generation stage"
        )


def read_episode_meta(root: str | Path) -> pd.DataFrame:
    """One row per episode: source, suite, task, init state, seed, success, strategy/pattern.

    Read from lerobot's episode table (``meta/episodes``, see
    :mod:`generation.data.episode_meta`), where lerobot's own tools keep it; datasets written
    before it was stored there fall back to the side table ``meta/dlr_episodes.parquet``.
    """
    root = Path(root)
    _require_dataset(root)
    table = read_episode_table(root)
    if table is not None:
        return table
    path = root / EPISODE_META_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{root} is a LeRobot dataset without DLR-Bench episode metadata (neither "
            f"stats/dlr_episode/* columns in meta/episodes nor {EPISODE_META_FILE}); "
            "import it with `dlr import` first"
        )
    return pd.read_parquet(path)


def read_frames(root: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """All frames' non-image columns, ordered by global index."""
    root = Path(root)
    _require_dataset(root)
    files = sorted((root / "data").rglob("*.parquet"))
    cols = columns or [
        "index",
        "episode_index",
        "frame_index",
        STATE_KEY,
        ENV_STATE_KEY,
        ACTION_KEY,
    ]
    df = pd.concat([pd.read_parquet(f, columns=cols) for f in files], ignore_index=True)
    return df.sort_values("index").reset_index(drop=True)


def load_episodes(root: str | Path) -> list[Episode]:
    """State-only :class:`Episode` objects (no images), in episode order."""
    meta = read_episode_meta(root)
    frames = read_frames(root)
    episodes = []
    for row in meta.itertuples(index=False):
        f = frames[frames["episode_index"] == row.episode_index]
        episodes.append(
            Episode(
                suite=row.suite,
                task_index=int(row.task_index),
                task_name=row.task_name,
                language=row.language,
                init_state=np.asarray(row.init_state, dtype=np.float64),
                actions=np.stack(f[ACTION_KEY].to_numpy()),
                states=np.stack(f[STATE_KEY].to_numpy()),
                env_states=np.stack(f[ENV_STATE_KEY].to_numpy()),
                success=bool(row.success),
                source=row.source,
                init_state_index=int(row.init_state_index),
                seed=int(row.seed),
                strategy_id=int(row.strategy_id),
                pattern_id=int(row.pattern_id),
                settle_steps=int(row.settle_steps),
            )
        )
    return episodes
