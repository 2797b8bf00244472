"""Several :class:`LiberoEnv` in worker processes, each with its own simulator and GL context.

Semantics (same-step auto-reset, like gymnasium's ``SAME_STEP`` mode): when an episode ends,
the worker records it in ``info["episode"]`` (return, length, success, init state, final obs)
and immediately resets to the next init state from its schedule; the returned ``obs`` is the
new episode's first observation.

``get_state``/``set_state`` carry the workers over a restart (PPO's checkpoints): each worker
keeps its episode's reset and actions, and a fresh worker replays them. Replay reproduces the
sim bit for bit (episodes replay exactly in LIBERO), where restoring a saved sim state would
miss state outside it (the controller's, the observables' sampling clocks).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import traceback
from collections.abc import Sequence

import numpy as np

from generation.envs.libero_env import EnvConfig
from generation.envs.suites import TaskSpec

log = logging.getLogger(__name__)


def _worker(remote, task: TaskSpec, config: EnvConfig, schedule: list, worker_seed: int):
    # One simulator and one GL context per process; limit math threads so N workers share cores.
    # numpy is already imported here, so OMP_NUM_THREADS alone would come too late for its BLAS.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    try:
        import torch

        torch.set_num_threads(1)
    except Exception:  # noqa: BLE001
        pass
    from generation.envs.libero_env import LiberoEnv

    env = LiberoEnv(task, config)
    rng = np.random.default_rng(worker_seed)
    cursor = 0
    ep_return = 0.0
    episode: dict = {"reset": None, "actions": []}  # what replays this episode (set_state)

    def next_reset(request=None):
        nonlocal cursor, ep_return
        ep_return = 0.0
        if request is None:
            item = schedule[cursor % len(schedule)] if schedule else None
            cursor += 1
            if item is None:
                request = {"seed": int(rng.integers(2**31))}
            else:
                request = {"init_state_index": int(item)}
        episode["reset"], episode["actions"] = request, []
        return env.reset(**request)

    def get_state() -> dict:
        return {
            "cursor": cursor,
            "rng": rng.bit_generator.state,
            "ep_return": ep_return,
            "reset": episode["reset"],
            "actions": list(episode["actions"]),
        }

    def set_state(state: dict):
        nonlocal cursor, ep_return
        obs, _ = next_reset(state["reset"])
        for action in state["actions"]:
            obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                raise RuntimeError(
                    "replayed actions ended the episode: the state is not this env's"
                )
        episode["actions"] = list(state["actions"])
        cursor, ep_return = state["cursor"], state["ep_return"]
        rng.bit_generator.state = state["rng"]
        return obs

    try:
        while True:
            cmd, payload = remote.recv()
            if cmd == "reset":
                obs, info = next_reset(payload)
                remote.send(("ok", (obs, info)))
            elif cmd == "step":
                obs, reward, terminated, truncated, info = env.step(payload)
                episode["actions"].append(payload)
                ep_return += reward
                if terminated or truncated:
                    info["episode"] = {
                        "return": ep_return,
                        "length": env.t,
                        "success": bool(info["success"]),
                        "final_obs": obs,
                    }
                    obs, reset_info = next_reset()
                    info["reset_info"] = reset_info
                remote.send(("ok", (obs, reward, terminated, truncated, info)))
            elif cmd == "get_state":
                remote.send(("ok", get_state()))
            elif cmd == "set_state":
                remote.send(("ok", set_state(payload)))
            elif cmd == "close":
                env.close()
                remote.send(("ok", None))
                return
            else:
                raise ValueError(f"unknown command {cmd!r}")
    except (KeyboardInterrupt, EOFError):
        return
    except Exception:  # noqa: BLE001 - ship the traceback to the parent
        remote.send(("error", traceback.format_exc()))


def _stack(dicts: Sequence[dict]) -> dict[str, np.ndarray]:
    return {k: np.stack([d[k] for d in dicts]) for k in dicts[0]}


class SubprocVectorEnv:
    """``num_envs`` LIBERO envs of one task, stepped in lock-step in worker processes.

    ``init_state_indices`` is the schedule of fixed init states the workers cycle through
    (worker i starts at position i, stride ``num_envs``); ``None`` means seeded random layouts.
    """

    def __init__(
        self,
        task: TaskSpec,
        config: EnvConfig | None = None,
        num_envs: int = 2,
        init_state_indices: Sequence[int] | None = None,
        seed: int = 0,
        start_method: str = "forkserver",
    ):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = num_envs
        self.task = task
        config = config or EnvConfig()
        ctx = mp.get_context(start_method)
        self._remotes, self._procs = [], []
        all_idx = list(init_state_indices) if init_state_indices is not None else None
        for i in range(num_envs):
            schedule = all_idx[i::num_envs] or all_idx if all_idx else []
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_worker, args=(child, task, config, schedule, seed + 1000 * i), daemon=True
            )
            proc.start()
            child.close()
            self._remotes.append(parent)
            self._procs.append(proc)
        self._closed = False

    def _gather(self) -> list:
        out = []
        for i, remote in enumerate(self._remotes):
            status, payload = remote.recv()
            if status == "error":
                self.close()
                raise RuntimeError(f"env worker {i} failed:\n{payload}")
            out.append(payload)
        return out

    def reset(self, requests: Sequence[dict | None] | None = None) -> tuple[dict, list[dict]]:
        """Reset all workers: by their schedule, or with explicit ``LiberoEnv.reset`` kwargs."""
        requests = list(requests) if requests is not None else [None] * self.num_envs
        for remote, req in zip(self._remotes, requests, strict=True):
            remote.send(("reset", req))
        results = self._gather()
        return _stack([r[0] for r in results]), [r[1] for r in results]

    def step(self, actions: np.ndarray):
        actions = np.asarray(actions)
        if actions.shape[0] != self.num_envs:
            raise ValueError(f"expected {self.num_envs} actions, got {actions.shape[0]}")
        for remote, a in zip(self._remotes, actions, strict=True):
            remote.send(("step", a))
        results = self._gather()
        obs = _stack([r[0] for r in results])
        rewards = np.array([r[1] for r in results], dtype=np.float32)
        terminated = np.array([r[2] for r in results], dtype=bool)
        truncated = np.array([r[3] for r in results], dtype=bool)
        return obs, rewards, terminated, truncated, [r[4] for r in results]

    def get_state(self) -> list[dict]:
        """Each worker's schedule position, RNG, and its episode so far (reset and actions)."""
        for remote in self._remotes:
            remote.send(("get_state", None))
        return self._gather()

    def set_state(self, states: Sequence[dict]) -> dict[str, np.ndarray]:
        """Put every worker where :meth:`get_state` found it (replaying its episode so far);
        returns the observations the envs were at."""
        if len(states) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} worker states, got {len(states)}")
        for remote, state in zip(self._remotes, states, strict=True):
            remote.send(("set_state", state))
        return _stack(self._gather())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for remote in self._remotes:
            try:
                remote.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
        for proc in self._procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass
