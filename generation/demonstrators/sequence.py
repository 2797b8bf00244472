"""Conjunctive goals: sub-demonstrators run one after another, all with the same strategy.

Order: the BDDL goal's, except that an object which must itself be moved is moved before
something is put on it (``(on bowl_1 bowl_2) (in bowl_2 tray)``: first bowl_2 into the tray,
then bowl_1 onto it), and a drawer is opened before and closed after something goes into it.
A sub-goal that already holds is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from generation.demonstrators.collect import Demonstrator
from generation.demonstrators.controller import Waypoint


def dependency_order(goal: list[list[str]]) -> list[int]:
    """Indices of ``goal``'s predicates, moves of an object before placements onto it, and a
    drawer (region) opened before and closed after something is put into it."""
    order = list(range(len(goal)))
    moved = {pred[1]: i for i, pred in enumerate(goal) if pred[0] in ("in", "on")}
    for i, pred in enumerate(goal):
        if pred[0] in ("in", "on") and len(pred) == 3 and pred[2] in moved:
            j = moved[pred[2]]
            if order.index(j) > order.index(i):
                order.remove(j)
                order.insert(order.index(i), j)
    targets = {pred[2] for pred in goal if pred[0] in ("in", "on") and len(pred) == 3}

    def rank(i: int) -> int:
        pred = goal[i]
        if pred[0] in ("open", "close") and pred[1] in targets:
            return -1 if pred[0] == "open" else 1
        return 0

    return sorted(order, key=rank)  # stable: the rest keeps its order


class Sequence(Demonstrator):
    """``parts``: (goal predicate, demonstrator) pairs, run in order. A part whose predicate is
    None is a preparation step (``make_room.MakeRoom``) that says itself, through its
    ``achieved(env)``, whether there is anything to do. Strategy names: the first goal part's."""

    def __init__(self, task, parts: list[tuple[list[str] | None, Demonstrator]], **kw):
        super().__init__(task, **kw)
        self.parts = parts
        n = min(p.n_strategies for _, p in parts)
        named = next((p for pred, p in parts if pred is not None), parts[0][1])
        self.strategy_names = tuple(named.strategy_names[:n])

    def plan(self, env, strategy: int, rng: np.random.Generator) -> Iterator[Waypoint]:
        for pred, part in self.parts:
            done = part.achieved(env) if pred is None else env.raw.env._eval_predicate(pred)
            if done:
                continue
            yield from part.plan(env, strategy, rng)
