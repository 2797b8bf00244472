"""Architecture name + size preset -> lerobot policy config; checkpoint folder -> policy.

Each architecture is a registered lerobot policy (``dlr_openvla``, ``dlr_pi0``,
``dlr_smolvla``) whose files live in ``pretraining/<arch>/``. Presets only set sizes:
``tiny`` (<= 10M parameters, CPU tests) and ``base`` (>= 100M parameters, GPU pretraining).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from lerobot.configs import PreTrainedConfig
from lerobot.policies.pretrained import PreTrainedPolicy

# arch name -> (registered lerobot policy type, module that registers it)
ARCHS: dict[str, tuple[str, str]] = {
    "openvla": ("dlr_openvla", "pretraining.openvla.configuration_openvla"),
    "pi0": ("dlr_pi0", "pretraining.pi0.configuration_pi0"),
    "smolvla": ("dlr_smolvla", "pretraining.smolvla.configuration_smolvla"),
}

_TINY_VLM = dict(
    image_size=64, vision_hidden_size=128, vision_layers=2, vision_heads=4,
    vision_intermediate_size=256, vision_patch_size=8, lm_hidden_size=128, lm_layers=2,
    lm_heads=4, lm_intermediate_size=256,
)  # fmt: skip
_BASE_VLM = dict(
    image_size=128, vision_hidden_size=384, vision_layers=12, vision_heads=6,
    vision_intermediate_size=1536, vision_patch_size=16, lm_hidden_size=768, lm_layers=12,
    lm_heads=12, lm_intermediate_size=2048,
)  # fmt: skip

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "openvla": {"tiny": dict(_TINY_VLM), "base": dict(_BASE_VLM)},
    "pi0": {
        "tiny": dict(
            _TINY_VLM,
            expert_hidden_size=96,
            expert_layers=2,
            expert_heads=4,
            expert_intermediate_size=192,
            chunk_size=10,
            n_action_steps=10,
        ),
        "base": dict(
            _BASE_VLM,
            expert_hidden_size=512,
            expert_layers=8,
            expert_heads=8,
            expert_intermediate_size=1536,
            chunk_size=50,
            n_action_steps=10,
        ),
    },  # fmt: skip
    "smolvla": {
        "tiny": dict(vlm_preset="tiny", image_size=64, chunk_size=10, n_action_steps=10),
        "base": dict(vlm_preset="base", image_size=256, chunk_size=50, n_action_steps=10),
    },
}


def list_archs() -> list[str]:
    return sorted(ARCHS)


def list_presets(arch: str) -> list[str]:
    return sorted(PRESETS[canonical_arch(arch)])


def canonical_arch(arch: str) -> str:
    """Accept ``openvla`` or its policy type ``dlr_openvla``; raise naming the valid options."""
    name = arch.removeprefix("dlr_")
    if name not in ARCHS:
        raise ValueError(f"Unknown arch {arch!r}; valid options: {', '.join(list_archs())}")
    return name


def register_all() -> None:
    """Import every config module so that its policy type is registered with lerobot."""
    for _, module in ARCHS.values():
        importlib.import_module(module)


def make_config(arch: str, preset: str = "tiny", **overrides: Any) -> PreTrainedConfig:
    """Build the policy config of ``arch`` at ``preset`` size, then apply ``overrides``."""
    name = canonical_arch(arch)
    if preset not in PRESETS[name]:
        raise ValueError(
            f"Unknown preset {preset!r} for arch {name!r}; valid options: "
            f"{', '.join(sorted(PRESETS[name]))}"
        )
    policy_type, module = ARCHS[name]
    importlib.import_module(module)
    config_cls = PreTrainedConfig.get_choice_class(policy_type)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(overrides) - set(config_cls.__dataclass_fields__))
    if unknown:
        raise ValueError(f"Unknown config field(s) {unknown} for {policy_type}")
    return config_cls(preset=preset, **overrides)  # the config fills the rest from its preset


def load_policy(path: str | Path, device: str | None = None) -> PreTrainedPolicy:
    """Load a checkpoint saved with ``save_pretrained`` (ours or any registered lerobot type)."""
    from lerobot.policies.factory import get_policy_class

    from pretraining.lora import is_adapter, load_adapter_policy

    register_all()
    if is_adapter(path):
        return load_adapter_policy(path, lambda base: load_policy(base, device))
    cfg = PreTrainedConfig.from_pretrained(str(path))
    if device is not None:
        cfg.device = device
    policy_cls = get_policy_class(cfg.type)
    policy = policy_cls.from_pretrained(str(path), config=cfg)
    policy.to(cfg.device)
    policy.eval()
    return policy


def load_processors(path: str | Path, device: str | None = None):
    """The pre/post-processors saved next to a checkpoint (normalisation stats, tokenizer)."""
    from lerobot.policies.factory import make_pre_post_processors

    register_all()
    cfg = PreTrainedConfig.from_pretrained(str(path))
    overrides = {"device_processor": {"device": device}} if device else {}
    return make_pre_post_processors(
        cfg, pretrained_path=str(path), preprocessor_overrides=overrides
    )


def count_parameters(policy: PreTrainedPolicy) -> int:
    return sum(p.numel() for p in policy.parameters())
