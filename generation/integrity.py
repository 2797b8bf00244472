"""Readable-or-not checks of the files a run passes on (parquet tables, LeRobot datasets,
safetensors checkpoints): each failure is one line naming the file and what is wrong, raised
before any work reads it (a truncated file is deterministic: retrying cannot help)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd


class CorruptFileError(ValueError):
    pass


def _unreadable(path: Path, e: Exception, fix: str) -> CorruptFileError:
    why = str(e).splitlines()[0] if str(e) else type(e).__name__
    return CorruptFileError(f"{path}: unreadable ({why}); {fix}")


def read_table(path: str | Path, columns: Iterable[str] = (), fix: str = "") -> pd.DataFrame:
    """The parquet table at ``path``, which must hold ``columns``."""
    import pyarrow as pa

    path = Path(path)
    fix = fix or "delete it and rerun the stage that writes it"
    try:
        df = pd.read_parquet(path)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise _unreadable(path, e, fix) from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise CorruptFileError(
            f"{path}: missing column(s) {', '.join(missing)} (has {', '.join(df.columns)}); {fix}"
        )
    return df


def check_dataset(root: str | Path) -> None:
    """Every data parquet of a LeRobot dataset opens, and together they hold the frames and
    episodes that ``meta/info.json`` claims."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(root)
    fix = "regenerate the dataset (its stage reruns when its manifest is removed)"
    try:
        info = json.loads((root / "meta" / "info.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise _unreadable(root / "meta" / "info.json", e, fix) from None
    frames, episodes = 0, set()
    for path in sorted((root / "data").rglob("*.parquet")):
        try:
            table = pq.read_table(path, columns=["episode_index"])
        except (pa.ArrowException, OSError) as e:
            raise _unreadable(path, e, fix) from None
        frames += table.num_rows
        episodes |= set(table.column("episode_index").to_pylist())
    if frames != info.get("total_frames") or len(episodes) != info.get("total_episodes"):
        raise CorruptFileError(
            f"{root / 'data'}: holds {frames} frames of {len(episodes)} episodes, but "
            f"meta/info.json claims {info.get('total_frames')} of {info.get('total_episodes')}; "
            f"{fix}"
        )


def check_safetensors(path: str | Path) -> None:
    """The checkpoint's header parses and every tensor's bytes are in the file."""
    path = Path(path)
    fix = "delete the checkpoint folder and rerun the stage that trained it"
    try:
        with path.open("rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(header_len))
        end = max(
            (v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise _unreadable(path, e, fix) from None
    size = path.stat().st_size
    if size < 8 + header_len + end:
        raise CorruptFileError(
            f"{path}: truncated ({size} bytes; its header needs {8 + header_len + end}); {fix}"
        )
