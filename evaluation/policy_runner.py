"""What acts in closed loop: a lerobot policy checkpoint with its processors, or a callable.

Observations become lerobot's LIBERO batch (``observation.images.image`` float (1, 3, H, W) in
[0, 1], ``observation.state`` (1, 8), ``observation.environment_state`` (1, 84), ``task``);
actions are clipped to [-1, 1].
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from generation.data.schema import ENV_STATE_KEY, IMAGE_KEY, STATE_KEY

PolicyFn = Callable[[dict[str, Any]], Any]
"""``policy_fn(batch) -> actions`` with the batch of :func:`build_batch`; actions (B, 7) or (7,).
An optional ``policy_fn.reset()`` is called before every episode."""


def build_batch(obs: dict[str, np.ndarray], language: str) -> dict[str, Any]:
    """Our env observation -> a batch of one in lerobot's LIBERO feature names (torch, CPU)."""
    import torch

    batch: dict[str, Any] = {
        STATE_KEY: torch.from_numpy(np.asarray(obs["state"], np.float32))[None],
        ENV_STATE_KEY: torch.from_numpy(np.asarray(obs["env_state"], np.float32))[None],
        "task": [language],
    }
    if "image" in obs:
        image = torch.from_numpy(np.ascontiguousarray(obs["image"])).permute(2, 0, 1)
        batch[IMAGE_KEY] = (image.float() / 255.0)[None]
    return batch


class PolicyRunner:
    """A lerobot ``PreTrainedPolicy`` checkpoint (with its processors) or a plain callable."""

    def __init__(self, spec: str | Path | PolicyFn, device: str | None = None):
        self.fn: PolicyFn | None = None
        if callable(spec):
            self.fn = spec
            return
        import torch

        from pretraining.factory import load_policy, load_processors

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.policy = load_policy(spec, device=self.device)
        self.preprocessor, self.postprocessor = load_processors(spec, device=self.device)

    def reset(self) -> None:
        target = self.fn if self.fn is not None else self.policy
        reset = getattr(target, "reset", None)
        if callable(reset):
            reset()
        if self.fn is None:
            self.preprocessor.reset()
            self.postprocessor.reset()

    def act(self, obs: dict[str, np.ndarray], language: str) -> np.ndarray:
        batch = build_batch(obs, language)
        if self.fn is not None:
            action = self.fn(batch)
        else:
            import torch

            with torch.inference_mode():
                action = self.postprocessor(self.policy.select_action(self.preprocessor(batch)))
        if hasattr(action, "detach"):
            action = action.detach().cpu().numpy()
        action = np.asarray(action, dtype=np.float64).reshape(-1, 7)[0]
        return np.clip(action, -1.0, 1.0)


def policy_image_size(path: str | Path) -> int:
    """The camera size a checkpoint was trained on (its image input feature's height)."""
    from lerobot.configs import PreTrainedConfig

    from pretraining.factory import register_all

    register_all()
    cfg = PreTrainedConfig.from_pretrained(str(path))
    feature = cfg.input_features.get(IMAGE_KEY)
    if feature is not None:
        return int(feature.shape[-2])
    return int(getattr(cfg, "image_size", 128))
