"""Matched-size datasets: every source gets exactly the same number of episodes per task, on
the same init states in the same numbers (up to K per state; DLR's from distinct patterns),
with nested subsets n1 ⊂ n2 ⊂ full.

Episodes are ordered once per task, init state by init state, and a subset of size n takes
the first n of every task's ordering, so subsets are nested by construction.
"""

from __future__ import annotations

import itertools
import logging
import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from generation.data.episode import Episode
from generation.data.schema import EPISODE_META_FILE
from generation.manifest import atomic_dir

log = logging.getLogger(__name__)


def matched_by_init_state(
    rollouts: Mapping[str, Mapping[int, Sequence[Episode]]],
    episodes: int,
    per_state: int,
    successes_only: bool = True,
) -> tuple[list[int], dict[str, list[Episode]]]:
    """Each source's episodes of one task on the same init states, in the same numbers.

    ``rollouts[source][pattern]`` are a task's rollouts on the shared init-state schedule, in
    schedule order (pattern -1 for a source without patterns). Walking the init states in
    schedule order, every source gives ``c`` episodes on a state, ``c`` being the most that
    every source can give there (at most ``per_state``; usable = successful, unless
    ``successes_only`` is off): a patterned source one episode from each of ``c`` patterns
    (those picked least so far, to stay balanced), an unpatterned one ``c`` episodes. It stops
    at ``episodes`` per source. Returns (init states used, {source: episodes, state by
    state}); a prefix of the ordering covers the same states for every source.
    """

    def usable(e: Episode) -> bool:
        return e.success or not successes_only

    order: list[int] = []
    pools: dict[str, dict[int, dict[int, list[Episode]]]] = {}
    for source, by_pattern in rollouts.items():
        pools[source] = {}
        for k, eps in by_pattern.items():
            for e in eps:
                if e.init_state_index not in order:
                    order.append(e.init_state_index)
                if usable(e):
                    pools[source].setdefault(e.init_state_index, {}).setdefault(k, []).append(e)
    patterned = {s for s, b in rollouts.items() if -1 not in b}
    picks = {s: dict.fromkeys(rollouts[s], 0) for s in patterned}

    def available(source: str, state: int) -> int:
        found = pools[source].get(state, {})
        if source in patterned:
            return sum(1 for v in found.values() if v)
        return len(found.get(-1, []))

    states: list[int] = []
    out: dict[str, list[Episode]] = {s: [] for s in rollouts}
    total = 0
    for state in order:
        c = min(per_state, episodes - total, *(available(s, state) for s in rollouts))
        if c <= 0:
            continue
        for source in rollouts:
            found = pools[source][state]
            if source in patterned:
                chosen = sorted(
                    sorted((k for k, v in found.items() if v), key=lambda k: (picks[source][k], k))[
                        :c
                    ]
                )
                for k in chosen:
                    picks[source][k] += 1
                out[source] += [found[k][0] for k in chosen]
            else:
                out[source] += found[-1][:c]
        states.append(state)
        total += c
        if total >= episodes:
            break
    return states, out


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
    with atomic_dir(root) as tmp:
        tmp.rmdir()  # copytree and delete_episodes create the folder themselves
        if len(keep) == total:
            shutil.copytree(src.root, tmp)
        else:
            dropped = sorted(set(range(total)) - set(keep))
            _drop_hf_cache(delete_episodes(src, dropped, output_dir=tmp, repo_id=repo_id))
            _restate_renumbered_stats(tmp)
        meta = pd.read_parquet(Path(src.root) / EPISODE_META_FILE).set_index("episode_index")
        meta = meta.loc[keep].reset_index(drop=True).rename_axis("episode_index").reset_index()
        meta.to_parquet(tmp / EPISODE_META_FILE)
    return root


def _restate_renumbered_stats(root: Path) -> None:
    """``delete_episodes`` aggregates the kept episodes' stored stats, which for the columns it
    renumbers (index, episode_index, task_index) still describe the old numbering: recompute
    those the way lerobot's writer does, per episode then aggregated."""
    from lerobot.datasets.compute_stats import aggregate_stats, get_feature_stats
    from lerobot.datasets.io_utils import load_stats, write_stats

    from generation.data.writer import sort_stats

    columns = ["index", "episode_index", "task_index"]
    files = sorted((root / "data").rglob("*.parquet"))
    frames = pd.concat([pd.read_parquet(f, columns=columns) for f in files])
    per_episode = [
        {c: get_feature_stats(ep[c].to_numpy(), axis=0, keepdims=True) for c in columns}
        for _, ep in frames.groupby("episode_index")
    ]
    write_stats({**load_stats(root), **aggregate_stats(per_episode)}, root)
    sort_stats(root)


def _drop_hf_cache(dataset) -> None:
    """Delete the arrow copies that loading ``dataset`` put in the HF datasets cache: keyed by
    the temporary folder's path, they would never be read again."""
    for table in (dataset.hf_dataset, dataset.meta.episodes):
        for f in getattr(table, "cache_files", None) or []:
            Path(f["filename"]).unlink(missing_ok=True)
