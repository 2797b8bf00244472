"""Which task gets which demonstrator, decided from the task's BDDL goal predicates.

A goal of one ``(in obj region)`` or ``(on obj target)`` with a movable ``obj`` gets a
:class:`PickPlace` (a :class:`HandlePickPlace` for a frying pan, taken by its handle, a
:class:`BookPickPlace` for a book); a
stove's ``turnon``/``turnoff`` gets a :class:`StoveKnob`; a cabinet drawer's ``open``/``close``
gets a :class:`Drawer`; closing a microwave gets a :class:`DoorCloser`; a conjunction of those
gets a :class:`Sequence`. Opening a microwave door is not scripted yet.
Tasks whose scripted solution was measured below the bar are listed in ``UNSUPPORTED`` with
the reason, so ``has_demonstrator`` only says yes where a demonstrator actually works.
"""

from __future__ import annotations

import functools
import re

from generation.demonstrators.articulated import DoorCloser, StoveKnob
from generation.demonstrators.book import BOOK_NAMES, BookPickPlace
from generation.demonstrators.collect import Demonstrator
from generation.demonstrators.drawer import Drawer
from generation.demonstrators.handle import HandlePickPlace
from generation.demonstrators.make_room import MakeRoom
from generation.demonstrators.pick_place import PickPlace
from generation.demonstrators.sequence import Sequence, dependency_order
from generation.envs.suites import TaskSpec, list_tasks

PICK_PLACE = ("in", "on")
DRAWER = re.compile(r"cabinet_\d+_(top|middle|bottom)_region$")  # a cabinet's drawer


def _measured(ok: int, n: int = 30, note: str = "") -> str:
    return (
        f"{ok}/{n} over init states 0-9 x 3 strategies (dlr demo-quality, 2026-11-26; "
        f"benchmarks/results/demo_quality){': ' + note if note else ''}"
    )


# (suite, task name substring) -> why no demonstrator is offered (measured, see module doc)
UNSUPPORTED: dict[tuple[str, str], str] = {
    # tasks listed here once and switched on since, with their numbers: docs/demonstrators.md
    ("libero_goal", "open_the_top_drawer_and_put_the_bowl_inside"): _measured(
        0,
        note="the open drawer's side lies over the bowl's rim (1/30 so); moved out of the way "
        "first (make_room.py), the three motions run past LIBERO-Goal's 300-step horizon",
    ),
    ("libero_goal", "open_the_middle_drawer_of_the_cabinet"): _measured(
        25, note="direct and from_side miss on 5 of 20; top drawers open 30/30 (LIBERO-90)"
    ),
    ("libero_90", "KITCHEN_SCENE10_put_the_chocolate_pudding_in_the_top_drawer"): _measured(
        8,
        note="the drawer work succeeds (the two butter tasks of this scene: 30/30 each). "
        "The pudding lies in front of the open drawer: pinched across (its 8 cm side is too "
        "long for the fingers), the palm, 21 cm along the finger axis, comes down on the "
        "drawer's handle (traced on init state 0: stopped 12 cm above the grasp at each of "
        "three yaws)",
    ),
    ("libero_90", "KITCHEN_SCENE1_open_the_top_drawer_of_the_cabinet_and_put"): _measured(
        22,
        note="3/30 with the open drawer's handle over the bowl's rim; the bowl set out of its "
        "way first (make_room.py) and the last part in a hurry (pick_place.HURRY_BELOW): "
        "straight 10/10, over_top 3/10 and from_side 9/10, the misses run out of the "
        "400-step horizon (9df4c40)",
    ),
    ("libero_90", "KITCHEN_SCENE10_close_the_top_drawer_of_the_cabinet_and_put"): _measured(
        23, note="the drawer closes every time; direct fails 7 of 10 setting the bowl on top"
    ),
    ("libero_90", "KITCHEN_SCENE8_turn_off_the_stove"): _measured(
        12,
        note="the knob of the pinned stove is missed on 6 of 10 init states, the same with "
        "the demonstrators of 2026-11-25 (measured on a jittered stove then)",
    ),
    ("libero_10", "LIVING_ROOM_SCENE2_put_both_the_cream_cheese_box_and_the_butter"): _measured(
        26, note="direct fails on 4 init states, as with the demonstrators of 2026-11-25"
    ),
    ("libero_10", "KITCHEN_SCENE4_put_the_black_bowl_in_the_bottom_drawer_of_the_cabinet"): (
        _measured(24, note="bowl in, then the drawer closed: not diagnosed; 26/30 on 57b1b8a")
    ),
    ("libero_10", "KITCHEN_SCENE6_put_the_yellow_and_white_mug_in_the_microwave"): _measured(
        0,
        note="putting the mug in fails, not diagnosed; closing its door alone scores 30/30 "
        "(LIBERO-90 KITCHEN_SCENE6 close the microwave)",
    ),
    ("libero_10", "KITCHEN_SCENE8_put_both_moka_pots_on_the_stove"): _measured(
        0, note="also 0 with the demonstrators of 2026-11-25 on the stove pinned since"
    ),
}
# name fragments of objects the pick-and-place script cannot move
UNGRASPABLE = {
    "plate": "a plate is too flat and wide to pinch; pushing is not scripted",
}


@functools.cache
def _parsed_goal(bddl_file: str) -> tuple[list, set]:
    import logging

    logging.getLogger("libero").setLevel(logging.WARNING)
    from libero.libero.envs.bddl_utils import robosuite_parse_problem

    problem = robosuite_parse_problem(bddl_file)
    movable = {name for names in problem["objects"].values() for name in names}
    return [list(p) for p in problem["goal_state"]], movable


def switched_off(task: TaskSpec) -> str | None:
    """Why ``task``'s scripted demonstrator is switched off (measured below the bar, or an
    object it cannot grasp), or None."""
    for (suite, name), why in UNSUPPORTED.items():
        if suite == task.suite and name in task.name:
            return why
    goal, _ = _parsed_goal(task.bddl_file)
    for pred in goal:
        if pred[0] in PICK_PLACE:
            for pattern, why in UNGRASPABLE.items():
                if pattern in pred[1]:
                    return why
    return None


def _build(task: TaskSpec) -> Demonstrator | None:
    goal, movable = _parsed_goal(task.bddl_file)
    # something goes into a drawer: open it first if it is closed (the sequence skips a
    # sub-goal that already holds); LIBERO-Goal's "open the top drawer and put the bowl
    # inside" only asks for the bowl in the drawer
    for pred in list(goal):
        opener = ["open", pred[2]] if pred[0] == "in" else None
        if opener and opener not in goal and _build_one(task, opener, movable) is not None:
            goal = [opener, *goal]
    if len(goal) == 1:
        return _build_one(task, goal[0], movable)
    parts = [(goal[i], _build_one(task, goal[i], movable)) for i in dependency_order(goal)]
    if any(demo is None for _, demo in parts):
        return None
    return Sequence(task, _with_room(task, parts))


def _with_room(task: TaskSpec, parts: list) -> list:
    """Before a drawer is opened, what is to go into it is set down out of its way if it lies
    there (``make_room.py``; the step is skipped when there is room)."""
    out = []
    for pred, demo in parts:
        if pred[0] == "open" and isinstance(demo, Drawer):
            for other, _ in parts:
                if other[0] == "in" and other[2] == pred[1]:
                    out.append((None, MakeRoom(task, obj=other[1], region=pred[1])))
        out.append((pred, demo))
    return out


def _build_one(task: TaskSpec, pred: list, movable: set) -> Demonstrator | None:
    if pred[0] in PICK_PLACE and len(pred) == 3 and pred[1] in movable:
        if "frypan" in pred[1]:  # too wide to pinch: taken by its handle
            return HandlePickPlace(task, obj=pred[1], target=pred[2], relation=pred[0])
        if re.search(BOOK_NAMES, pred[1]):
            return BookPickPlace(task, obj=pred[1], target=pred[2], relation=pred[0])
        return PickPlace(task, obj=pred[1], target=pred[2], relation=pred[0])
    if pred[0] in ("open", "close") and len(pred) == 2 and DRAWER.search(pred[1]):
        if pred[0] == "open" and pred[1].endswith("bottom_region"):
            return None  # its handle is too low for the hand (see drawer.py)
        return Drawer(task, region=pred[1], to_open=pred[0] == "open")
    if pred[0] == "close" and len(pred) == 2 and "microwave" in pred[1]:
        return DoorCloser(task, fixture=pred[1])
    if pred[0] in ("turnon", "turnoff") and "stove" in pred[1]:
        return StoveKnob(task, fixture=pred[1], turn_on=pred[0] == "turnon")
    return None


def has_demonstrator(task: TaskSpec) -> bool:
    """Whether a scripted demonstrator exists (and was measured to work) for ``task``."""
    return switched_off(task) is None and _build(task) is not None


def scriptable(task: TaskSpec) -> bool:
    """Whether a demonstrator can be built for ``task``, switched off or not."""
    return _build(task) is not None


def demonstrator_for(task: TaskSpec, include_switched_off: bool = False) -> Demonstrator:
    """A fresh demonstrator for ``task``; ``ValueError`` naming the covered tasks if none.
    ``include_switched_off`` builds one for a task in ``UNSUPPORTED`` too (to re-measure it)."""
    off = switched_off(task) and not include_switched_off
    demo = None if off else _build(task)
    if demo is None:
        covered = [f"{t.index}: {t.name}" for t in list_tasks(task.suite) if has_demonstrator(t)]
        why = switched_off(task) or f"goal {_parsed_goal(task.bddl_file)[0]} is not scripted"
        listing = "\n  ".join(covered) if covered else "(none)"
        raise ValueError(
            f"no scripted demonstrator for {task.key} ({task.name}): {why}. "
            f"Tasks of {task.suite} with demonstrators:\n  {listing}"
        )
    return demo


def covered_tasks(suite: str) -> list[TaskSpec]:
    return [t for t in list_tasks(suite) if has_demonstrator(t)]
