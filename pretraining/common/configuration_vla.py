"""Fields shared by our from-scratch VLA configs (vision encoder + small causal LM prefix).

Not registered itself: ``dlr_openvla`` and ``dlr_pi0`` subclass it and add their action head.
The fields a user most likely changes are ``preset`` (``tiny`` or ``base``), the backbone sizes
(or ``vision_pretrained_path`` / ``lm_pretrained_path`` to start from real checkpoints),
``image_size`` and ``chunk_size``. Size fields left ``None`` take the preset's value
(:data:`pretraining.factory.PRESETS`), so ``lerobot-train --policy.type=dlr_pi0
--policy.preset=base --policy.chunk_size=20`` is the base model with chunks of 20.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lerobot.configs import NormalizationMode, PreTrainedConfig
from lerobot.optim import AdamWConfig, CosineDecayWithWarmupSchedulerConfig

from pretraining.text import DEFAULT_TOKENIZER


def apply_preset(config: PreTrainedConfig) -> None:
    """Set every size field of ``config`` left ``None`` to its preset's value."""
    from pretraining.factory import PRESETS, canonical_arch  # the factory imports configs lazily

    presets = PRESETS[canonical_arch(config.type)]
    if config.preset not in presets:
        raise ValueError(
            f"Unknown preset {config.preset!r} for {config.type}; valid: {', '.join(sorted(presets))}"
        )
    for name, value in presets[config.preset].items():
        if getattr(config, name) is None:
            setattr(config, name, value)


@dataclass
class VLABaseConfig(PreTrainedConfig):
    """Vision encoder (SigLIP-style ViT) + causal LM (Llama-style) over [image, state, text].

    Args:
        preset: ``tiny`` (<= 10M parameters, CPU) or ``base`` (>= 100M, GPU): fills every size
            field left ``None``; a size given explicitly wins.
        image_size: camera frames are resized to this square size before the vision encoder.
        vision_*: ViT width, depth, heads, MLP width and patch size (random init).
        lm_*: LM width, depth, heads, MLP width (random init, vocabulary of the tokenizer).
        vision_pretrained_path: a local ``transformers`` SigLIP/ViT folder to load instead.
        lm_pretrained_path: a local ``transformers`` causal LM folder to load instead; its
            tokenizer replaces ``tokenizer_name`` unless that was set explicitly.
        tokenizer_name: ``dlr-libero-bpe`` (local BPE, see ``pretraining/text.py``) or a folder.
        tokenizer_max_length: instructions are padded/truncated to this many tokens.
        use_state: add a proprioception token to the prefix.
        chunk_size / n_action_steps: actions predicted per call / executed before replanning.
    """

    n_obs_steps: int = 1
    chunk_size: int = 1
    n_action_steps: int = 1

    normalization_mapping: dict[str, NormalizationMode] = field(
        default_factory=lambda: {
            "VISUAL": NormalizationMode.IDENTITY,
            "STATE": NormalizationMode.MEAN_STD,
            "ENV": NormalizationMode.MEAN_STD,
            "ACTION": NormalizationMode.MEAN_STD,
        }
    )

    preset: str = "tiny"
    image_size: int | None = None
    vision_hidden_size: int | None = None
    vision_layers: int | None = None
    vision_heads: int | None = None
    vision_intermediate_size: int | None = None
    vision_patch_size: int | None = None
    lm_hidden_size: int | None = None
    lm_layers: int | None = None
    lm_heads: int | None = None
    lm_intermediate_size: int | None = None
    vision_pretrained_path: str | None = None
    lm_pretrained_path: str | None = None
    freeze_vision_encoder: bool = False

    tokenizer_name: str = DEFAULT_TOKENIZER
    tokenizer_max_length: int = 32
    use_state: bool = True

    optimizer_lr: float = 1e-4
    optimizer_betas: tuple[float, float] = (0.9, 0.95)
    optimizer_eps: float = 1e-8
    optimizer_weight_decay: float = 1e-4
    optimizer_grad_clip_norm: float = 1.0
    scheduler_warmup_steps: int = 500
    scheduler_decay_steps: int = 30_000
    scheduler_decay_lr: float = 1e-6

    def __post_init__(self) -> None:
        apply_preset(self)
        super().__post_init__()
        if self.n_action_steps > self.chunk_size:
            raise ValueError(
                f"n_action_steps ({self.n_action_steps}) must be <= chunk_size ({self.chunk_size})"
            )
        if self.lm_pretrained_path and self.tokenizer_name == DEFAULT_TOKENIZER:
            self.tokenizer_name = self.lm_pretrained_path

    def validate_features(self) -> None:
        if not self.image_features:
            raise ValueError("A VLA needs at least one image feature (observation.images.*).")

    def get_optimizer_preset(self) -> AdamWConfig:
        return AdamWConfig(
            lr=self.optimizer_lr,
            betas=self.optimizer_betas,
            eps=self.optimizer_eps,
            weight_decay=self.optimizer_weight_decay,
            grad_clip_norm=self.optimizer_grad_clip_norm,
        )

    def get_scheduler_preset(self) -> CosineDecayWithWarmupSchedulerConfig:
        return CosineDecayWithWarmupSchedulerConfig(
            peak_lr=self.optimizer_lr,
            decay_lr=self.scheduler_decay_lr,
            num_warmup_steps=self.scheduler_warmup_steps,
            num_decay_steps=self.scheduler_decay_steps,
        )

    @property
    def observation_delta_indices(self) -> None:
        return None

    @property
    def action_delta_indices(self) -> list[int]:
        return list(range(self.chunk_size))

    @property
    def reward_delta_indices(self) -> None:
        return None
