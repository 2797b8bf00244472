"""Which parts of the state the generator's policies look at.

``all``: the whole state vector, proprio (8) then every object's pose and the articulated
joints (``env_state``, zero-padded). With ~90 demonstrations an MLP over every object's pose
fits the distractors' positions as well as the task's; ``goal`` keeps proprio, the poses of
the objects named in the task's goal (read from its BDDL file), the articulated joints, and
adds each goal object's position relative to the end effector (what a reach has to zero).
The env and the datasets are unchanged: the selection lives inside the policy
(:class:`generation.dlr.policy.StateFeatures`), so PPO, rollouts and replay see full states.
"""

from __future__ import annotations

from typing import Literal

from generation.data.schema import ENV_STATE_DIM, STATE_DIM
from generation.envs.suites import TaskSpec

FEATURES = ("all", "goal")
Features = Literal["all", "goal"]
POSE = 7  # pos 3 + quat wxyz 4 per object in env_state


def scene_objects(task: TaskSpec) -> tuple[list[str], list[list[str]]]:
    """The task's movable objects in env_state order, and its goal predicates (from the BDDL)."""
    import logging

    logging.getLogger("libero").setLevel(logging.WARNING)
    from libero.libero.envs.bddl_utils import robosuite_parse_problem

    problem = robosuite_parse_problem(task.bddl_file)
    names = [n for group in problem["objects"].values() for n in group]
    return names, [list(p) for p in problem["goal_state"]]


def goal_objects(names: list[str], goal: list[list[str]]) -> list[int]:
    """Slots of the objects a goal predicate names (``basket_1_contain_region`` names
    ``basket_1``), in scene order."""
    args = {a for pred in goal for a in pred[1:]}
    return [i for i, n in enumerate(names) if any(a == n or a.startswith(n + "_") for a in args)]


def feature_spec(task: TaskSpec, features: Features) -> dict | None:
    """``None`` for ``all``; else ``{"index": [...], "relative": [...]}`` over the flat state
    ``[proprio, env_state]``: kept coordinates, and start offsets of object positions to be
    taken relative to the end effector (proprio[0:3])."""
    if features not in FEATURES:
        raise ValueError(f"unknown policy features {features!r}; valid: {list(FEATURES)}")
    if features == "all":
        return None
    names, goal = scene_objects(task)
    slots = goal_objects(names, goal)
    index = list(range(STATE_DIM))
    for s in slots:
        index += range(STATE_DIM + POSE * s, STATE_DIM + POSE * (s + 1))
    # articulated joints follow the object poses; the zero padding after them is harmless
    index += range(STATE_DIM + POSE * len(names), STATE_DIM + ENV_STATE_DIM)
    return {"index": index, "relative": [STATE_DIM + POSE * s for s in slots]}
