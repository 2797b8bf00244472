"""`lerobot-eval` on our LIBERO: the env type ``dlr_libero``, and init files for lerobot's ``libero``.

``--env.type=dlr_libero`` (registered when lerobot imports the ``lerobot_policy_dlr`` plugin)
runs episodes in :class:`generation.envs.libero_env.LiberoEnv`, exactly as
:mod:`evaluation.closed_loop` does: the suite's init states in order (sub-env ``i`` of ``n``
starts from init states ``i, i + n, ...``, lerobot's own LIBERO convention), ``settle_steps``
no-op steps, pinned fixtures, fast rendering, upright images, the 8-value state and the suite's
horizon. On the same checkpoint and init states the two evaluators then take the same actions.

lerobot's own ``--env.type=libero`` loads torch-pickled ``<task>.pruned_init`` files from
LIBERO's ``init_states`` folder; the LIBERO package we install ships ``<task>.pruned_init.npz``.
:func:`write_libero_init_files` writes a folder with both and a LIBERO path config pointing at
it: ``LIBERO_CONFIG_PATH=<folder> lerobot-eval --env.type=libero ...`` then runs (no network).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.envs.configs import EnvConfig
from lerobot.envs.utils import freeze_after_episode_end
from lerobot.utils.constants import ACTION, OBS_ENV_STATE, OBS_IMAGES, OBS_STATE

from generation.data.schema import ACTION_DIM, ENV_STATE_DIM, FPS, STATE_DIM

log = logging.getLogger(__name__)

ENV_TYPE = "dlr_libero"
_CAMERAS = {"image": "agentview", "wrist_image": "robot0_eye_in_hand"}


class DlrLiberoGymEnv(gym.Env):
    """One LIBERO task as a gymnasium env in lerobot's observation format, on our LiberoEnv.

    Observations: ``pixels`` (``image``, optionally ``wrist_image``: upright uint8 HWC),
    ``agent_pos`` (our 8-value state) and ``environment_state`` (84 values); lerobot turns them
    into ``observation.images.*``, ``observation.state`` and ``observation.environment_state``.
    The LIBERO env is built on the first reset, inside an async worker when there is one.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": FPS}

    def __init__(
        self,
        suite: str,
        task_index: int,
        episode_index: int = 0,
        n_envs: int = 1,
        image_size: int = 128,
        wrist_image: bool = False,
        render_mode: str = "fast",
        settle_steps: int = 10,
        episode_length: int | None = None,
    ):
        from generation.envs.suites import DEFAULT_HORIZON, get_task

        self._task_spec = get_task(suite, task_index)
        self.task = self._task_spec.name
        self.task_description = self._task_spec.language
        self._max_episode_steps = episode_length or DEFAULT_HORIZON[suite]
        self._keys = ["image", "wrist_image"] if wrist_image else ["image"]
        self._build = dict(
            image_size=image_size, render_mode=render_mode, settle_steps=settle_steps
        )
        self._next_init_state = episode_index
        self._stride = n_envs
        self._env = None
        self._last_image: np.ndarray | None = None
        image = spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        self.observation_space = spaces.Dict(
            {
                "pixels": spaces.Dict({k: image for k in self._keys}),
                "agent_pos": spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float32),
                "environment_state": spaces.Box(-np.inf, np.inf, (ENV_STATE_DIM,), np.float32),
            }
        )
        self.action_space = spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)

    def _ensure_env(self):
        if self._env is None:
            from generation.envs.libero_env import EnvConfig, LiberoEnv

            cameras = tuple(_CAMERAS[k] for k in self._keys)
            config = EnvConfig(cameras=cameras, horizon=self._max_episode_steps, **self._build)
            self._env = LiberoEnv(self._task_spec, config)
        return self._env

    def _format(self, obs: dict) -> dict:
        self._last_image = obs["image"]
        return {
            "pixels": {k: obs[k] for k in self._keys},
            "agent_pos": obs["state"],
            "environment_state": obs["env_state"],
        }

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)  # the init state, not the seed, sets the scene
        env = self._ensure_env()
        index = self._next_init_state % self._task_spec.n_init_states
        self._next_init_state += self._stride
        obs, _ = env.reset(init_state_index=index)
        return self._format(obs), {"is_success": False, "init_state_index": index}

    def step(self, action: np.ndarray):
        obs, reward, terminated, truncated, info = self._env.step(np.asarray(action).reshape(-1))
        info = {"is_success": info["success"], "task": self.task}
        return self._format(obs), reward, terminated, truncated, info

    def render(self) -> np.ndarray | None:
        return self._last_image

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None


@EnvConfig.register_subclass(ENV_TYPE)
@dataclass
class DlrLiberoEnv(EnvConfig):
    """``--env.type=dlr_libero``: LIBERO through DLR-Bench's env, as our evaluator runs it.

    Args:
        task: a suite (``libero_spatial``, ...) or several, comma separated.
        task_ids: task indices within each suite (``None``: every task).
        image_size: camera side in pixels: the size the checkpoint was trained on.
        wrist_image: also render the wrist camera (``observation.images.wrist_image``).
        episode_length: steps before truncation (``None``: the suite's horizon, as ours).
        render_mode / settle_steps: as :class:`generation.envs.libero_env.EnvConfig`.
    """

    task: str = "libero_spatial"
    task_ids: list[int] | None = None
    fps: int = FPS
    image_size: int = 128
    wrist_image: bool = False
    episode_length: int | None = None
    render_mode: str = "fast"
    settle_steps: int = 10
    features: dict[str, PolicyFeature] = field(default_factory=dict)
    features_map: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from generation.envs.suites import SUITES

        bad = [s for s in self.suites if s not in SUITES]
        if bad or not self.suites:
            raise ValueError(
                f"--env.task: unknown LIBERO suite(s) {bad}; valid: {', '.join(SUITES)}"
            )
        image = PolicyFeature(type=FeatureType.VISUAL, shape=(self.image_size, self.image_size, 3))
        self.features = {
            ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(ACTION_DIM,)),
            "pixels/image": image,
            "agent_pos": PolicyFeature(type=FeatureType.STATE, shape=(STATE_DIM,)),
            "environment_state": PolicyFeature(type=FeatureType.ENV, shape=(ENV_STATE_DIM,)),
        }
        self.features_map = {
            ACTION: ACTION,
            "pixels/image": f"{OBS_IMAGES}.image",
            "agent_pos": OBS_STATE,
            "environment_state": OBS_ENV_STATE,
        }
        if self.wrist_image:
            self.features["pixels/wrist_image"] = image
            self.features_map["pixels/wrist_image"] = f"{OBS_IMAGES}.wrist_image"

    @property
    def suites(self) -> list[str]:
        return [s.strip() for s in str(self.task).split(",") if s.strip()]

    @property
    def gym_kwargs(self) -> dict[str, Any]:
        return dict(
            image_size=self.image_size, wrist_image=self.wrist_image, render_mode=self.render_mode,
            settle_steps=self.settle_steps, episode_length=self.episode_length,
        )  # fmt: skip

    def create_envs(self, n_envs: int, use_async_envs: bool = False) -> dict[str, dict[int, Any]]:
        """``{suite: {task index: vector env of n_envs}}``; finished sub-envs freeze (no extra
        episode, no skipped init state) until the next rollout."""
        from generation.envs.suites import list_tasks

        out: dict[str, dict[int, Any]] = {}
        for suite in self.suites:
            n_tasks = len(list_tasks(suite))
            ids = list(range(n_tasks)) if self.task_ids is None else self.task_ids
            bad = [i for i in ids if not 0 <= i < n_tasks]
            if bad:
                raise ValueError(
                    f"--env.task_ids {bad} out of range for {suite} (0..{n_tasks - 1})"
                )
            out[suite] = {}
            for task_index in ids:
                fns = [
                    freeze_after_episode_end(
                        partial(DlrLiberoGymEnv, suite, task_index, i, n_envs, **self.gym_kwargs)
                    )
                    for i in range(n_envs)
                ]
                out[suite][task_index] = _vector_env(fns, use_async_envs and n_envs > 1)
        return out


def _vector_env(fns: list, use_async: bool):
    mode = gym.vector.AutoresetMode.NEXT_STEP
    if use_async:  # EGL contexts do not survive fork
        return gym.vector.AsyncVectorEnv(fns, context="forkserver", autoreset_mode=mode)
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=mode)


# --------------------------------------------------------------------------- lerobot's `libero`
def write_libero_init_files(dest: str | Path, suites: list[str] | None = None) -> Path:
    """A LIBERO path config in ``dest`` whose ``init_states`` folder holds every task's init
    states both as our LIBERO ships them (``.npz``, linked) and as lerobot's ``libero`` env
    loads them (``torch.save`` of the same array); return ``dest`` (``LIBERO_CONFIG_PATH``)."""
    import torch
    import yaml
    from libero.libero import benchmark, get_libero_path

    from generation.envs.suites import SUITES

    dest = Path(dest).resolve()
    suites = list(suites or SUITES)
    bad = [s for s in suites if s not in SUITES]
    if bad:
        raise ValueError(f"unknown LIBERO suite(s) {bad}; valid: {', '.join(SUITES)}")
    source = Path(get_libero_path("init_states"))
    target = dest / "init_files"
    for suite in suites:
        bench = benchmark.get_benchmark_dict()[suite]()
        for i, task in enumerate(bench.tasks):
            folder = target / task.problem_folder
            folder.mkdir(parents=True, exist_ok=True)
            npz = folder / f"{task.init_states_file}.npz"
            if not npz.exists():
                npz.symlink_to(source / task.problem_folder / npz.name)
            torch.save(np.asarray(bench.get_task_init_states(i)), folder / task.init_states_file)
    config = dest / "config.yaml"
    config.write_text(yaml.safe_dump({"init_states": str(target)}))
    log.info("wrote init files of %s under %s", ", ".join(suites), target)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.lerobot_env",
        description="Write LIBERO init files that lerobot's `--env.type=libero` can load.",
    )
    parser.add_argument("dest", help="folder to write (becomes LIBERO_CONFIG_PATH)")
    parser.add_argument("--suites", nargs="*", help="default: every suite")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    dest = write_libero_init_files(args.dest, args.suites)
    print(f"export LIBERO_CONFIG_PATH={dest}  # then: lerobot-eval --env.type=libero ...")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
