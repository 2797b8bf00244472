"""Matched-size datasets: DLR and O2O (and MI) get exactly the same number of episodes per
task, DLR balanced across its K patterns, with nested subsets n1 ⊂ n2 ⊂ full.

Episodes are ordered once per task (DLR: round-robin over patterns, p0 p1 p2 p0 p1 ...), and a
subset of size n takes the first n of every task's ordering, so subsets are nested by
construction and a DLR subset whose per-task size is a multiple of K stays balanced.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from generation.data.episode import Episode
from generation.data.schema import EPISODE_META_FILE

log = logging.getLogger(__name__)


def balanced_order(by_pattern: Mapping[int, Sequence[Episode]], per_pattern: int) -> list[Episode]:
    """Round-robin over patterns: the first ``per_pattern`` episodes of each, interleaved."""
    keys = sorted(by_pattern)
    return [by_pattern[k][i] for i in range(per_pattern) for k in keys]


def usable_patterns(
    by_pattern: Mapping[int, Sequence[Episode]],
) -> dict[int, Sequence[Episode]]:
    """Patterns with at least one kept episode (a pattern RL never solved cannot contribute)."""
    kept = {k: v for k, v in by_pattern.items() if len(v) > 0}
    for k in sorted(set(by_pattern) - set(kept)):
        log.warning("pattern %s has no successful episodes: left out of the dataset", k)
    return kept


def matched_per_task_count(
    available: Mapping[str, Mapping[int, Sequence[Episode]]], target: int
) -> int:
    """Largest n <= target that every source can supply with its patterns balanced.

    ``available[source][pattern]`` are a task's kept episodes; a source without patterns uses
    the single key -1. Patterns without episodes are left out; n is a multiple of every
    source's number of remaining patterns, so each source splits n evenly over its patterns.
    """
    usable = {s: usable_patterns(b) for s, b in available.items()}
    if any(not b for b in usable.values()):
        return 0
    step = math.lcm(*(len(b) for b in usable.values()))
    n = target
    for by_pattern in usable.values():
        n = min(n, len(by_pattern) * min(len(v) for v in by_pattern.values()))
    return n - n % step


def matched_episodes(
    available: Mapping[str, Mapping[int, Sequence[Episode]]], target: int
) -> dict[str, list[Episode]]:
    """Each source's ordered episodes for one task, all of the same (matched) length."""
    n = matched_per_task_count(available, target)
    out = {}
    for source, by_pattern in available.items():
        usable = usable_patterns(by_pattern)
        out[source] = balanced_order(usable, n // len(usable)) if usable else []
    return out


def subset_dirs(
    per_task_sizes: Sequence[int], smallest_task: int, largest_task: int | None = None
) -> list[tuple[str, int | None]]:
    """[("n<size>", size), ..., ("full", None)]: the subset sizes every task can fill (at most
    ``smallest_task``, the smallest per-task matched count), increasing; ``full`` takes all.
    A size that would equal ``full`` for every task (``largest_task``, the largest count) is
    left out: it would be the same dataset twice."""
    sizes = sorted(
        s
        for s in set(per_task_sizes)
        if 0 < s <= smallest_task and (largest_task is None or s < largest_task)
    )
    return [(f"n{s}", s) for s in sizes] + [("full", None)]


def write_source_datasets(
    ordered_by_task: Mapping[str, Sequence[Episode]],
    out_root: Path,
    sizes: Sequence[tuple[str, int | None]],
    repo_prefix: str,
    spec,
    env_config=None,
    render_workers: int = 1,
) -> dict:
    """Write ``out_root/<name>/`` for every (name, per-task size): the first ``size`` episodes
    of each task's ordering (all of them for size ``None``).

    Every episode is rendered once: the largest folder (``full``) is written from the
    episodes, and each smaller one is cut from it by :func:`write_subset`.
    """
    from generation.data.writer import write_episodes

    by_size = sorted(sizes, key=lambda s: math.inf if s[1] is None else s[1], reverse=True)
    (src_name, src_size), smaller = by_size[0], by_size[1:]
    src_root = Path(out_root) / src_name
    taken = [list(eps)[:src_size] for eps in ordered_by_task.values()]
    write_episodes(
        [ep for eps in taken for ep in eps],
        src_root,
        repo_id=f"{repo_prefix}_{src_name}",
        spec=spec,
        env_config=env_config,
        overwrite=True,
        progress=False,
        render_workers=render_workers,
    )
    counts = [len(eps) for eps in taken]
    written = {src_name: _written(src_root, sum(counts), src_size)}
    if smaller:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        src = LeRobotDataset(f"{repo_prefix}_{src_name}", root=src_root, video_backend="pyav")
        starts = [0, *itertools.accumulate(counts)][:-1]  # each task's first episode in src
        for name, size in smaller:
            keep = [s + i for s, c in zip(starts, counts, strict=True) for i in range(min(c, size))]
            root = write_subset(src, Path(out_root) / name, keep, f"{repo_prefix}_{name}")
            written[name] = _written(root, len(keep), size)
    return {name: written[name] for name, _ in sizes}


def _written(root: Path, episodes: int, per_task: int | None) -> dict:
    log.info("wrote %s (%d episodes)", root, episodes)
    return {"path": str(root), "episodes": episodes, "per_task": per_task}


def write_subset(src, root: Path, keep: Sequence[int], repo_id: str) -> Path:
    """Write episodes ``keep`` (increasing indices) of ``src``, a LeRobotDataset written by
    :func:`generation.data.writer.write_episodes`, as a new dataset at ``root`` without
    rendering: frames are copied (a video file that mixes kept and dropped episodes is
    re-encoded by lerobot), episodes renumbered 0..n-1, ``meta/stats.json`` re-aggregated from
    the kept episodes' own stats (lerobot's ``delete_episodes``), and our episode metadata cut
    to match. Built in a temporary folder and renamed into place, replacing any dataset there.
    """
    from lerobot.datasets.dataset_tools import delete_episodes

    keep = list(keep)
    total = src.meta.total_episodes
    if not keep or keep != sorted(set(keep)) or keep[0] < 0 or keep[-1] >= total:
        raise ValueError(f"episodes to keep must increase within 0..{total - 1}, got {keep}")
    root = Path(root)
    tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if len(keep) == total:
            shutil.copytree(src.root, tmp)
        else:
            dropped = sorted(set(range(total)) - set(keep))
            _drop_hf_cache(delete_episodes(src, dropped, output_dir=tmp, repo_id=repo_id))
            _restate_renumbered_stats(tmp)
        meta = pd.read_parquet(Path(src.root) / EPISODE_META_FILE).set_index("episode_index")
        meta = meta.loc[keep].reset_index(drop=True).rename_axis("episode_index").reset_index()
        meta.to_parquet(tmp / EPISODE_META_FILE)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if root.exists():
        shutil.rmtree(root)
    os.replace(tmp, root)
    return root


def _restate_renumbered_stats(root: Path) -> None:
    """``delete_episodes`` aggregates the kept episodes' stored stats, which for the columns it
    renumbers (index, episode_index, task_index) still describe the old numbering: recompute
    those the way lerobot's writer does, per episode then aggregated."""
    from lerobot.datasets.compute_stats import aggregate_stats, get_feature_stats
    from lerobot.datasets.io_utils import load_stats, write_stats

    columns = ["index", "episode_index", "task_index"]
    files = sorted((root / "data").rglob("*.parquet"))
    frames = pd.concat([pd.read_parquet(f, columns=columns) for f in files])
    per_episode = [
        {c: get_feature_stats(ep[c].to_numpy(), axis=0, keepdims=True) for c in columns}
        for _, ep in frames.groupby("episode_index")
    ]
    write_stats({**load_stats(root), **aggregate_stats(per_episode)}, root)


def _drop_hf_cache(dataset) -> None:
    """Delete the arrow copies that loading ``dataset`` put in the HF datasets cache: keyed by
    the temporary folder's path, they would never be read again."""
    for table in (dataset.hf_dataset, dataset.meta.episodes):
        for f in getattr(table, "cache_files", None) or []:
            Path(f["filename"]).unlink(missing_ok=True)
