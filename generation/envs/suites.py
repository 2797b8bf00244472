"""Look up LIBERO suites and tasks by name or index, with errors that list the valid choices."""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass

import numpy as np

SUITES = ("libero_spatial", "libero_object", "libero_goal", "libero_10", "libero_90")

# Episode length budgets used by lerobot's and openvla's LIBERO evaluations (longest human demo + margin).
DEFAULT_HORIZON = {
    "libero_spatial": 280,
    "libero_object": 280,
    "libero_goal": 300,
    "libero_10": 520,
    "libero_90": 400,
}


@dataclass(frozen=True)
class TaskSpec:
    suite: str
    index: int
    name: str
    language: str
    bddl_file: str
    n_init_states: int

    @property
    def key(self) -> str:
        """Stable identifier used in run folders: ``<suite>/<index>``."""
        return f"{self.suite}/{self.index}"


@functools.cache
def _benchmark(suite: str):
    if suite not in SUITES:
        raise ValueError(f"unknown LIBERO suite {suite!r}; valid suites: {', '.join(SUITES)}")
    logging.getLogger("libero").setLevel(logging.WARNING)
    from libero.libero import benchmark

    return benchmark.get_benchmark_dict()[suite]()


def list_tasks(suite: str) -> list[TaskSpec]:
    bench = _benchmark(suite)
    from libero.libero import get_libero_path

    root = get_libero_path("bddl_files")
    tasks = []
    for i in range(bench.n_tasks):
        t = bench.get_task(i)
        tasks.append(
            TaskSpec(
                suite=suite,
                index=i,
                name=t.name,
                language=t.language,
                bddl_file=os.path.join(root, t.problem_folder, t.bddl_file),
                n_init_states=50,
            )
        )
    return tasks


def get_task(suite: str, task: int | str) -> TaskSpec:
    """A task by index (int or digit string) or by name (exact, or a unique substring)."""
    tasks = list_tasks(suite)
    if isinstance(task, str) and task.strip().lstrip("-").isdigit():
        task = int(task)
    if isinstance(task, int):
        if not 0 <= task < len(tasks):
            raise ValueError(
                f"task index {task} out of range for {suite}: valid indices are 0..{len(tasks) - 1} "
                f"(run `dlr info --suite {suite}` to list them)"
            )
        return tasks[task]
    exact = [t for t in tasks if t.name == task]
    if exact:
        return exact[0]
    partial = [t for t in tasks if task in t.name]
    if len(partial) == 1:
        return partial[0]
    names = "\n  ".join(f"{t.index}: {t.name}" for t in tasks)
    what = "matches several tasks" if partial else "is not a task"
    raise ValueError(f"{task!r} {what} of {suite}; valid tasks:\n  {names}")


def parse_tasks(suite: str, spec: str | list | None) -> list[TaskSpec]:
    """``None``/``"all"`` → every task; ``"0,1,5"``, ``"0-3"`` or a list of indices/names."""
    tasks = list_tasks(suite)
    if spec is None or spec == "all":
        return tasks
    items: list = spec if isinstance(spec, list) else [s for s in str(spec).split(",") if s.strip()]
    out: list[TaskSpec] = []
    for item in items:
        s = str(item).strip()
        if "-" in s and all(p.isdigit() for p in s.split("-", 1)):
            lo, hi = (int(p) for p in s.split("-", 1))
            out.extend(get_task(suite, i) for i in range(lo, hi + 1))
        else:
            out.append(get_task(suite, item if isinstance(item, int) else s))
    return out


def init_states(suite: str, task_index: int) -> np.ndarray:
    """The suite's fixed initial simulator states for a task, shape (50, state_dim)."""
    get_task(suite, task_index)
    return np.asarray(_benchmark(suite).get_task_init_states(task_index))
