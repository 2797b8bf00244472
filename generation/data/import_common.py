"""What both importers share: the error they raise, task lookup by name or language, image fitting.

Each importer resolves every episode to one of our tasks (by bddl/task name, else by language)
*before* writing anything, so a bad input fails fast with an error that names the problem and
the fix.
"""

from __future__ import annotations

import functools
import re

import numpy as np

from generation.envs.suites import SUITES, TaskSpec, list_tasks

# lerobot's LIBERO datasets cover the four evaluation suites; a language shared with libero_90
# (e.g. "turn on the stove") is taken to mean the evaluation suite's task.
_EVAL_SUITES = ("libero_spatial", "libero_object", "libero_goal", "libero_10")
UNKNOWN_SUITE = "unknown"


class DatasetImportError(ValueError):
    """An input that cannot be imported: wrong layout, unknown task, bad shapes."""


# --------------------------------------------------------------------------- task lookup
@functools.cache
def _tasks(suite: str | None) -> tuple[TaskSpec, ...]:
    suites = SUITES if suite is None else (suite,)
    return tuple(t for s in suites for t in list_tasks(s))


def normalise_language(text: str) -> str:
    text = re.sub(r"\s+", " ", str(text).replace("_", " ")).strip().strip("\"'").strip()
    return text.rstrip(".").lower()


def task_by_name(name: str, suite: str | None = None) -> TaskSpec | None:
    """A task by its LIBERO name (the bddl file's stem), unique across suites."""
    matches = [t for t in _tasks(suite) if t.name == name]
    return matches[0] if len(matches) == 1 else None


def tasks_by_language(language: str, suite: str | None = None) -> list[TaskSpec]:
    """Tasks whose instruction is ``language``; evaluation suites win over libero_90 ties."""
    key = normalise_language(language)
    matches = [t for t in _tasks(suite) if normalise_language(t.language) == key]
    preferred = [t for t in matches if t.suite in _EVAL_SUITES]
    return preferred if suite is None and preferred else matches


def describe_tasks(tasks: list[TaskSpec]) -> str:
    """Task keys for an error message, comma-separated."""
    return ", ".join(t.key for t in tasks)


def check_suite(suite: str | None) -> None:
    """Fail on a suite name that is not one of ours (``None``, meaning any, passes)."""
    if suite is not None and suite not in SUITES:
        raise DatasetImportError(f"unknown suite {suite!r}; valid suites: {', '.join(SUITES)}")


# --------------------------------------------------------------------------- images
def fit_images(frames: np.ndarray, size: int, flip: bool) -> np.ndarray:
    """(T, H, W, 3) uint8 frames, rotated 180 degrees if ``flip``, resized to ``size``²."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise DatasetImportError(f"expected images of shape (T, H, W, 3), got {frames.shape}")
    if frames.dtype != np.uint8:
        frames = np.clip(np.round(frames * 255.0 if frames.max() <= 1.0 else frames), 0, 255)
        frames = frames.astype(np.uint8)
    if flip:
        frames = frames[:, ::-1, ::-1]
    if frames.shape[1:3] != (size, size):
        from PIL import Image

        frames = np.stack(
            [
                np.asarray(Image.fromarray(f).resize((size, size), Image.Resampling.BILINEAR))
                for f in frames
            ]
        )
    return np.ascontiguousarray(frames)
