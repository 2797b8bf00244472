"""Matched-size datasets: DLR and O2O (and MI) get exactly the same number of episodes per
task, DLR balanced across its K patterns, with nested subsets n1 ⊂ n2 ⊂ full.

Episodes are ordered once per task (DLR: round-robin over patterns, p0 p1 p2 p0 p1 ...), and a
subset of size n takes the first n of every task's ordering, so subsets are nested by
construction and a DLR subset whose per-task size is a multiple of K stays balanced.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from generation.data.episode import Episode

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


def subset_dirs(per_task_sizes: Sequence[int], smallest_task: int) -> list[tuple[str, int | None]]:
    """[("n<size>", size), ..., ("full", None)]: the subset sizes every task can fill (below
    ``smallest_task``, the smallest per-task matched count), increasing; ``full`` takes all."""
    sizes = sorted({s for s in per_task_sizes if 0 < s < smallest_task})
    return [(f"n{s}", s) for s in sizes] + [("full", None)]


def write_source_datasets(
    ordered_by_task: Mapping[str, Sequence[Episode]],
    out_root: Path,
    sizes: Sequence[tuple[str, int]],
    repo_prefix: str,
    spec,
    env_config=None,
    render_workers: int = 1,
) -> dict:
    """Write ``out_root/<name>/`` for every (name, per-task size): the first ``size`` episodes
    of each task's ordering (all of them for size ``None``)."""
    from generation.data.writer import write_episodes

    written = {}
    for name, size in sizes:
        episodes = [ep for eps in ordered_by_task.values() for ep in list(eps)[:size]]
        root = Path(out_root) / name
        if root.exists():
            import shutil

            shutil.rmtree(root)
        write_episodes(
            episodes,
            root,
            repo_id=f"{repo_prefix}_{name}",
            spec=spec,
            env_config=env_config,
            progress=False,
            render_workers=render_workers,
        )
        written[name] = {"path": str(root), "episodes": len(episodes), "per_task": size}
        log.info("wrote %s (%d episodes)", root, len(episodes))
    return written
