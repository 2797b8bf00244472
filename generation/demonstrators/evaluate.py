"""Measure demonstrators: success per strategy, strategy separation, length and speed per task."""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from contextlib import ExitStack
from functools import partial

import numpy as np

from generation.demonstrators.collect import collect_episode
from generation.demonstrators.registry import (
    demonstrator_for,
    has_demonstrator,
    scriptable,
    switched_off,
)
from generation.demonstrators.separation import strategy_separation
from generation.envs.suites import TaskSpec, parse_tasks

log = logging.getLogger(__name__)


def evaluate_task(
    task: TaskSpec,
    n_init: int = 10,
    seed: int = 0,
    init_offset: int = 0,
    cycle: bool = False,
    include_switched_off: bool = False,
) -> dict:
    """Run ``task``'s demonstrator on init states ``init_offset..+n_init``: every strategy on
    each, or with ``cycle`` one strategy per init state (i mod S), which covers all of a
    suite's init states at a third of the cost."""
    from generation.envs.libero_env import LiberoEnv

    demo = demonstrator_for(task, include_switched_off=include_switched_off)
    env = LiberoEnv(task)
    inits = range(init_offset, init_offset + n_init)
    if cycle:
        plan = [(i % demo.n_strategies, i) for i in inits]
    else:
        plan = [(s, i) for s in range(demo.n_strategies) for i in inits]
    episodes, seconds = [], 0.0
    try:
        for strategy, i in plan:
            t0 = time.perf_counter()
            ep = collect_episode(
                env, demo, strategy, init_state_index=i % task.n_init_states, seed=seed
            )
            seconds += time.perf_counter() - t0
            episodes.append(ep)
    finally:
        env.close()
    row = {"suite": task.suite, "task_index": task.index, "task_name": task.name}
    row["switched_off"] = switched_off(task) or ""
    for strategy, name in enumerate(demo.strategy_names):
        eps = [e for e in episodes if e.strategy_id == strategy]
        row[f"success_{name}"] = float(np.mean([e.success for e in eps]))
    row["success_rate"] = float(np.mean([e.success for e in episodes]))
    ok = [e for e in episodes if e.success]
    sep = strategy_separation([e.eef_path for e in ok], [e.strategy_id for e in ok]) if ok else {}
    for key in (
        "separation_ratio",
        "nn_strategy_accuracy",
        "shape_separation_ratio",
        "shape_nn_accuracy",
    ):
        row[key] = sep.get(key, float("nan"))
    row["mean_steps"] = float(np.mean([len(e) for e in episodes]))
    row["seconds_per_episode"] = seconds / max(len(episodes), 1)
    row["episodes"] = len(episodes)
    row["failed"] = [(e.strategy_id, e.init_state_index) for e in episodes if not e.success]
    return row


def evaluate_demonstrators(
    suite: str,
    tasks=None,
    n_init: int = 10,
    seed: int = 0,
    init_offset: int = 0,
    progress: bool = True,
    cycle: bool = False,
    num_workers: int = 1,
    include_switched_off: bool = False,
):
    """Per-task table (pandas DataFrame) for the covered tasks of ``suite`` among ``tasks``.

    Columns: success per strategy, overall ``success_rate``, ``separation_ratio``,
    ``nn_strategy_accuracy`` and their ``shape_`` variants over the successful episodes' eef
    paths (see ``separation.py``; they need >= 2 init states), ``mean_steps``,
    ``seconds_per_episode``, and the failed (strategy, init state) pairs.
    ``include_switched_off`` also measures the tasks ``registry.UNSUPPORTED`` switches off
    (their ``switched_off`` column says why), to check whether they now pass.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    usable = scriptable if include_switched_off else has_demonstrator
    selected = [t for t in parse_tasks(suite, tasks) if usable(t)]
    work = partial(
        evaluate_task, n_init=n_init, seed=seed, init_offset=init_offset, cycle=cycle,
        include_switched_off=include_switched_off,
    )  # fmt: skip
    rows = []
    with ExitStack() as stack:
        if num_workers > 1:  # one task per worker process, each with its own GL context
            pool = stack.enter_context(mp.get_context("forkserver").Pool(num_workers))
            results = pool.imap(work, selected)
        else:
            results = map(work, selected)
        for row in tqdm(results, total=len(selected), desc=f"demonstrators {suite}",
                        disable=not progress):  # fmt: skip
            rows.append(row)
            log.info("%s", {k: v for k, v in row.items() if k != "task_name"})
    return pd.DataFrame(rows)
