"""Per-episode metadata stored in lerobot's own episode table, ``meta/episodes/*.parquet``.

lerobot 0.6.1's ``delete_episodes`` and ``split_dataset`` (hence ``lerobot-edit-dataset``)
rebuild every episode row from a fixed set of columns plus each ``stats/<feature>/<stat>``
column, and ``merge_datasets`` copies whole rows: a column named ``stats/dlr_episode/<field>``
is the one kind of extra column that survives all three. So each field below is stored as
``stats/dlr_episode/<field>``, a one-element list (``init_state``: the whole vector), and the
pseudo-feature ``dlr_episode`` carries the ``min/max/mean/std/count`` that lerobot aggregates
(the episode's success: 1.0 or 0.0, over one count). Its aggregate never reaches
``meta/stats.json`` (lerobot keeps only real features there), and ``LeRobotDataset`` leaves
``stats/*`` columns out of ``meta.episodes``: read them with :func:`read_episode_table`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

META_FEATURE = "dlr_episode"
META_PREFIX = f"stats/{META_FEATURE}/"
# field -> arrow type of its one element; ``init_state`` is a whole vector
FIELDS: dict[str, pa.DataType] = {
    "source": pa.string(),
    "suite": pa.string(),
    "task_index": pa.int64(),
    "task_name": pa.string(),
    "language": pa.string(),
    "init_state_index": pa.int64(),
    "seed": pa.int64(),
    "success": pa.bool_(),
    "strategy_id": pa.int64(),
    "pattern_id": pa.int64(),
    "settle_steps": pa.int64(),
    "init_state": pa.float64(),
}
COLUMNS = ["episode_index", *FIELDS, "length"]  # a decoded table, in this order
_PANDAS_DTYPES = {"int64": "int64", "bool": "bool", "string": object}


def _episode_files(root: Path) -> list[Path]:
    return sorted((root / "meta" / "episodes").rglob("*.parquet"))


def _encoded_columns(rows: pd.DataFrame) -> dict[str, pa.Array]:
    """``rows`` (one per episode, in the order of the file's rows) as ``stats/`` list columns."""
    columns = {}
    for name, kind in FIELDS.items():
        values = rows[name].tolist()
        cells = (
            [np.asarray(v, np.float64).tolist() for v in values]
            if name == "init_state"
            else [[v.item() if hasattr(v, "item") else v] for v in values]
        )
        columns[META_PREFIX + name] = pa.array(cells, type=pa.list_(kind))
    success = rows["success"].astype(float).tolist()
    for stat in ("min", "max", "mean"):
        columns[META_PREFIX + stat] = pa.array([[s] for s in success], pa.list_(pa.float64()))
    columns[META_PREFIX + "std"] = pa.array([[0.0]] * len(rows), pa.list_(pa.float64()))
    columns[META_PREFIX + "count"] = pa.array([[1]] * len(rows), pa.list_(pa.int64()))
    return columns


def write_episode_table(root: str | Path, meta: pd.DataFrame) -> None:
    """Store ``meta`` (one row per ``episode_index``, the :data:`FIELDS`) in the dataset's
    ``meta/episodes`` files, replacing any earlier copy. Every episode needs a row."""
    root = Path(root)
    by_index = meta.set_index("episode_index")
    for path in _episode_files(root):
        table = pq.read_table(path)
        keep = [c for c in table.column_names if not c.startswith(META_PREFIX)]
        table = table.select(keep)
        indices = table.column("episode_index").to_pylist()
        missing = sorted(set(indices) - set(by_index.index))
        if missing:
            raise ValueError(f"no metadata for episode(s) {missing} of {root}")
        for name, column in _encoded_columns(by_index.loc[indices]).items():
            table = table.append_column(name, column)
        pq.write_table(table, path)


def read_episode_table(root: str | Path, skip_foreign: bool = False) -> pd.DataFrame | None:
    """One row per episode (:data:`COLUMNS`), decoded from ``meta/episodes``; ``None`` when the
    dataset holds none of our metadata. Episodes without it (merged in from a dataset that is
    not ours) raise, naming them, unless ``skip_foreign`` leaves their rows out."""
    root = Path(root)
    files = _episode_files(root)
    names = ["episode_index", "length", *(META_PREFIX + f for f in FIELDS)]
    schemas = [pq.read_schema(f).names for f in files]
    if not any(META_PREFIX + "source" in s for s in schemas):
        return None
    parts = [
        pq.read_table(f, columns=[n for n in names if n in s]).to_pandas()
        for f, s in zip(files, schemas, strict=True)
    ]
    raw = pd.concat(parts, ignore_index=True).sort_values("episode_index", ignore_index=True)
    foreign = raw[META_PREFIX + "source"].isna()
    if skip_foreign:
        raw = raw[~foreign].reset_index(drop=True)
    elif foreign.any():
        lacking = raw.loc[foreign, "episode_index"].tolist()
        raise ValueError(
            f"episode(s) {lacking} of {root} carry no DLR-Bench metadata "
            f"({META_PREFIX}* in meta/episodes): they come from a dataset that is not ours; "
            "import that dataset with `dlr import lerobot` before merging"
        )
    out = pd.DataFrame({"episode_index": raw["episode_index"].astype("int64")})
    for name, kind in FIELDS.items():
        cells = raw[META_PREFIX + name]
        if name == "init_state":
            out[name] = [np.asarray(c, np.float64) for c in cells]
        else:
            values = [c[0] for c in cells]
            out[name] = pd.Series(values, dtype=_PANDAS_DTYPES.get(str(kind), object))
    out["length"] = raw["length"].astype("int64")
    return out[COLUMNS]
