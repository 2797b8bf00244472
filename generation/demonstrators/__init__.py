"""Scripted multi-strategy demonstrators: the project's stand-in for human teleoperation.

Each covered task can be solved in at least three visibly different ways (strategies); every
episode records its ground-truth ``strategy_id``. Motions carry human-like imperfection
(smooth OU noise, pauses, waypoint jitter). See ``collect.py`` for where an episode ends.

    from generation.demonstrators import demonstrator_for, collect_episode
    demo = demonstrator_for(env.task)
    episode = collect_episode(env, demo, strategy_id=1, init_state_index=3, seed=0)
"""

from generation.demonstrators.collect import Demonstrator, collect_episode
from generation.demonstrators.registry import covered_tasks, demonstrator_for, has_demonstrator

__all__ = [
    "Demonstrator",
    "collect_episode",
    "covered_tasks",
    "demonstrator_for",
    "has_demonstrator",
]
