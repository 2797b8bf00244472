"""The results file: one row per arch x source x size x suite x task x seed (ARCHITECTURE.md)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from filelock import FileLock

from evaluation.stats import RESULT_COLUMNS, RESULT_KEY
from generation.manifest import atomic_write

log = logging.getLogger(__name__)


def _locked(path: Path) -> FileLock:
    """An exclusive lock beside ``path``: several evaluations may merge into one file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path.with_name(path.name + ".lock"))


def read_results(path: str | Path) -> pd.DataFrame:
    """The results table, or an empty one with the schema's columns if there is none yet."""
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame(columns=list(RESULT_COLUMNS))
    return pd.read_parquet(path)


def merge_table(
    path: str | Path, df: pd.DataFrame, key: Sequence[str], ints: Sequence[str] = ()
) -> pd.DataFrame:
    """Merge ``df`` into the parquet at ``path`` by ``key`` (new rows win), sorted by key, under
    a lock and written atomically; ``ints`` columns are cast to int. Returns the merged table."""
    path = Path(path)
    key = list(key)
    with _locked(path):
        old = pd.read_parquet(path) if path.is_file() else pd.DataFrame(columns=df.columns)
        frames = [f for f in (old, df) if len(f)]
        merged = pd.concat(frames, ignore_index=True) if frames else df.copy()
        for column in ints:
            merged[column] = merged[column].astype(int)
        merged = merged.drop_duplicates(subset=key, keep="last")
        merged = merged.sort_values(key).reset_index(drop=True)
        with atomic_write(path) as tmp:
            merged.to_parquet(tmp, index=False)
    log.info("merged %d row(s) into %s (%d rows)", len(df), path, len(merged))
    return merged


def merge_results(path: str | Path, df: pd.DataFrame) -> pd.DataFrame:
    """Merge result rows into the parquet at ``path`` by :data:`RESULT_KEY` (new rows win);
    write atomically. Returns the merged table."""
    missing = [c for c in RESULT_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"results rows lack column(s) {missing}; expected {list(RESULT_COLUMNS)}")
    return merge_table(path, df, RESULT_KEY, ints=("size", "seed"))
