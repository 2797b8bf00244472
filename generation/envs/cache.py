"""A process's most recently used envs, so work ordered by task builds each env once.

Building a LIBERO env takes seconds, and each one holds a MuJoCo model and, when it renders, a
GL context (~0.1-0.3 GB together): a worker that saw every LIBERO-90 task would otherwise keep
90 of them. Beyond ``size`` envs the least recently used one is closed.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any


class EnvCache:
    def __init__(self, size: int = 2):
        if size < 1:
            raise ValueError(f"an EnvCache holds at least 1 env, got size={size}")
        self.size = size
        self._envs: dict[Hashable, Any] = {}  # oldest first

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The env cached under ``key``, else ``make()`` (closing the least recently used)."""
        env = self._envs.pop(key, None)
        if env is None:
            while len(self._envs) >= self.size:
                self._envs.pop(next(iter(self._envs))).close()
            env = make()
        self._envs[key] = env  # most recently used last
        return env

    def close(self) -> None:
        while self._envs:
            self._envs.pop(next(iter(self._envs))).close()

    def __len__(self) -> int:
        return len(self._envs)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._envs
