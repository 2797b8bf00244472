"""Look up LIBERO suites and tasks by name or index, with errors that list the valid choices."""

from __future__ import annotations

import functools
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SUITES = ("libero_spatial", "libero_object", "libero_goal", "libero_10", "libero_90")


def base_suite(suite: str) -> str:
    """The nominal suite of a LIBERO-PRO perturbed one (``libero_spatial_swap`` ->
    ``libero_spatial``); a nominal suite is its own. By name only: LIBERO is not imported."""
    if suite in SUITES:
        return suite
    for base in sorted(SUITES, key=len, reverse=True):  # libero_10_x before any libero_1...
        if suite.startswith(base + "_"):
            return base
    raise ValueError(
        f"unknown LIBERO suite {suite!r}; valid suites: {', '.join(SUITES)} and their perturbed "
        "variants (`dlr info --perturbations`)"
    )


class _Horizons(dict):
    """Step budgets by suite; a perturbed suite has its nominal suite's (as LIBERO-PRO does)."""

    def __missing__(self, suite: str) -> int:
        return self[base_suite(suite)]


# Episode length budgets used by lerobot's and openvla's LIBERO evaluations (longest human demo + margin).
DEFAULT_HORIZON = _Horizons(
    {
        "libero_spatial": 280,
        "libero_object": 280,
        "libero_goal": 300,
        "libero_10": 520,
        "libero_90": 400,
    }
)


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
def perturbed_suites() -> tuple[str, ...]:
    """The package's suites that perturb a nominal one (LIBERO-PRO: ``libero_spatial_swap``,
    ``libero_object_with_mug``, ...), registered or not runnable (see ``dlr info --perturbations``)."""
    from libero.libero import benchmark

    perturbed = []
    for name in benchmark.get_benchmark_dict():
        try:
            if base_suite(name) != name:
                perturbed.append(name)
        except ValueError:  # the package's own extras (libero_100, libero_mine, ...)
            continue
    return tuple(perturbed)


@functools.cache
def _benchmark(suite: str):
    logging.getLogger("libero").setLevel(logging.WARNING)
    from libero.libero import benchmark

    if suite not in SUITES and suite not in perturbed_suites():
        raise ValueError(
            f"unknown LIBERO suite {suite!r}; valid suites: {', '.join(SUITES)} and their "
            "perturbed variants (`dlr info --perturbations` lists them)"
        )
    return benchmark.get_benchmark_dict()[suite]()


def _instruction(bddl_file: str) -> str | None:
    """The BDDL file's ``(:language ...)``, normalised as LIBERO's parser reads it."""
    path = Path(bddl_file)
    if not path.is_file():
        return None
    match = re.search(r"\(:language\s+([^)]*)\)", path.read_text())
    return " ".join(match.group(1).lower().split()) if match else None


@functools.cache
def _perturbed_tasks(suite: str) -> tuple[TaskSpec, ...]:
    """A perturbed suite's tasks in the package's order. A task whose BDDL instruction is a
    nominal task's (as written in its BDDL or its file name) gets that task's language, the one
    its demonstrations carry; a reworded or new instruction is taken from the BDDL, which is
    where LIBERO-PRO writes it (the package's ``Task.language`` comes from the file name)."""
    from libero.libero import get_libero_path

    nominal: dict[str | None, str] = {}
    for t in list_tasks(base_suite(suite)):
        for said in (_instruction(t.bddl_file), " ".join(t.language.lower().split())):
            if said:
                nominal.setdefault(said, t.language)
    bench = _benchmark(suite)
    root = get_libero_path("bddl_files")
    tasks = []
    for i in range(bench.n_tasks):
        t = bench.get_task(i)
        bddl = os.path.join(root, t.problem_folder, t.bddl_file)
        said = _instruction(bddl)
        try:
            n_init = len(bench.get_task_init_states(i))
        except FileNotFoundError:  # registered without its init states (``libero-pro audit``)
            n_init = 0
        language = nominal.get(said, said or t.language)
        tasks.append(TaskSpec(suite, i, t.name, language, bddl, n_init))
    return tuple(tasks)


def list_tasks(suite: str) -> list[TaskSpec]:
    if suite not in SUITES:
        return list(_perturbed_tasks(suite))
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
