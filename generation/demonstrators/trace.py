"""Trace one scripted episode waypoint by waypoint: the tool for finding out why a demonstrator
fails on an init state.

``trace_episode`` runs a demonstrator's strategy on one init state exactly as ``collect_episode``
does (same actions, bit for bit: the plan is only watched) and records, for every waypoint, the
steps it took, whether the hand got there, and where the hand and the task's objects were when
the plan moved on. ``frame_grid`` re-renders the episode by replay and lays out the agentview
image at the end of each waypoint, labelled. ``dlr demo-trace`` prints both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from generation.demonstrators import geometry as geo
from generation.demonstrators.collect import Demonstrator, collect_episode, eef_pose


@dataclass
class WaypointRecord:
    label: str
    t_start: int  # env step when the runner started on it (after any pause)
    t_end: int  # env step when the plan moved on
    target: np.ndarray
    eef: np.ndarray  # grip site when the plan moved on
    grip: float
    max_steps: int
    objects: dict[str, np.ndarray]  # body origins of the task's objects then

    @property
    def miss(self) -> float:
        """Distance (m) the hand was from the waypoint when the plan moved on."""
        return float(np.linalg.norm(self.target - self.eef))

    @property
    def timed_out(self) -> bool:
        return self.t_end - self.t_start >= self.max_steps


class _Watched(Demonstrator):
    """``inner``'s plan, unchanged, with a record of every waypoint."""

    def __init__(self, inner: Demonstrator):
        self.inner, self.task = inner, inner.task
        self.noise, self.controller = inner.noise, inner.controller
        self.strategy_names = inner.strategy_names
        self.objects: list[str] = []  # the goal's objects, read when the episode starts
        self.records: list[WaypointRecord] = []
        self.pending = None  # the waypoint being driven to, with its start step

    def _close(self, env, wp, t0) -> None:
        self.records.append(
            WaypointRecord(
                label=wp.label or "?",
                t_start=t0,
                t_end=env.t,
                target=wp.pos.copy(),
                eef=eef_pose(env)[0],
                grip=float(wp.grip),
                max_steps=wp.max_steps,
                objects={
                    n: np.array(env.sim.data.body_xpos[geo.body_id(env, n)]) for n in self.objects
                },
            )
        )

    def finish(self, env) -> None:
        if self.pending is not None:
            self._close(env, *self.pending)
            self.pending = None

    def plan(self, env, strategy_id, rng):
        self.records = []
        self.objects = _task_objects(env)  # collect_episode has reset the scene
        for wp in self.inner.plan(env, strategy_id, rng):
            self.finish(env)
            self.pending = (wp, env.t)  # a pause before it is counted in its steps
            yield wp
        self.finish(env)


def _task_objects(env) -> list[str]:
    """The movable objects the task's goal names (all movable objects if none)."""
    goal = env.raw.env.parsed_problem["goal_state"]
    names = geo.object_names(env)
    named = [n for n in names if any(n in map(str, pred[1:]) for pred in goal)]
    return named or names


def trace_episode(env, demonstrator: Demonstrator, strategy_id: int, init_state_index: int,
                  seed: int = 0):  # fmt: skip
    """Run one episode as ``collect_episode`` would; returns ``(episode, records)``."""
    watched = _Watched(demonstrator)
    episode = collect_episode(env, watched, strategy_id, init_state_index=init_state_index,
                              seed=seed)  # fmt: skip
    watched.finish(env)  # the episode ended (success or horizon) on the way to a waypoint
    return episode, watched.records


def format_trace(episode, records: list[WaypointRecord]) -> str:
    names = list(records[0].objects) if records else []
    head = f"{'waypoint':<14}{'steps':>11}{'miss_cm':>8}  {'eef':<22}" + "".join(
        f"{n[:22]:<24}" for n in names
    )
    lines = [head]
    for r in records:
        flag = " !" if r.timed_out and r.miss > 0.02 else "  "
        lines.append(
            f"{r.label:<14}{r.t_start:>5}-{r.t_end:<5}{100 * r.miss:>7.1f}{flag}"
            f"{np.array2string(r.eef, precision=3, suppress_small=True):<22}"
            + "".join(
                f"{np.array2string(r.objects[n], precision=3, suppress_small=True):<24}"
                for n in names
            )
        )
    lines.append(
        f"success={episode.success} steps={len(episode)} (' !': waypoint given up more than "
        "2 cm short)"
    )
    return "\n".join(lines)


def frame_grid(episode, records: list[WaypointRecord], path, image_size: int = 192,
               columns: int = 6) -> None:  # fmt: skip
    """Save the agentview image at the end of every waypoint as one labelled PNG."""
    from PIL import Image, ImageDraw

    from generation.data.writer import render_by_replay
    from generation.envs.libero_env import EnvConfig, LiberoEnv

    cfg = EnvConfig(
        cameras=("agentview",), image_size=image_size, settle_steps=episode.settle_steps
    )
    env = LiberoEnv((episode.suite, episode.task_index), cfg)
    try:
        frames = next(iter(render_by_replay(episode, env).values()))
    finally:
        env.close()
    picks = [(r.label, min(r.t_end, len(frames) - 1)) for r in records]
    rows = -(-len(picks) // columns)
    grid = Image.new("RGB", (columns * image_size, rows * image_size), "white")
    for k, (label, t) in enumerate(picks):
        tile = Image.fromarray(np.asarray(frames[t], dtype=np.uint8))
        ImageDraw.Draw(tile).text((3, 3), f"{k} {label} t={t}", fill=(255, 255, 0))
        grid.paste(tile, ((k % columns) * image_size, (k // columns) * image_size))
    grid.save(path)
