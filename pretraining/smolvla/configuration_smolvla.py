"""SmolVLA (lerobot's own policy) on a locally built SmolVLM, trained from scratch by default."""

from __future__ import annotations

from dataclasses import dataclass

from lerobot.configs import PreTrainedConfig
from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig

from pretraining.common.configuration_vla import apply_preset
from pretraining.smolvla.backbone import smolvlm_alias
from pretraining.text import DEFAULT_TOKENIZER


@PreTrainedConfig.register_subclass("dlr_smolvla")
@dataclass
class DlrSmolVLAConfig(SmolVLAConfig):
    """lerobot's ``smolvla`` with our defaults for pretraining from random init.

    Args:
        preset: ``tiny`` or ``base``: fills ``vlm_preset``, ``image_size``, ``chunk_size`` and
            ``n_action_steps`` where they are left ``None`` (a value given explicitly wins).
        vlm_preset: ``tiny`` or ``base`` size of the locally built SmolVLM backbone.
        image_size: square input size; sets ``resize_imgs_with_padding`` and the backbone.
        vlm_model_name: left empty, it becomes ``dlr-smolvlm-<vlm_preset>-<image_size>`` (built
            locally); set it to a local SmolVLM folder (with ``load_vlm_weights=True``) to start
            from a real VLM.
        tokenizer_name: the tokenizer of the instruction; defaults to the VLM's own one for a
            real VLM and to our local BPE for the built backbone.
    The whole VLM trains (``train_expert_only=False``) since it starts from random weights.
    """

    preset: str = "tiny"
    vlm_preset: str | None = None
    image_size: int | None = None
    vlm_model_name: str = ""
    tokenizer_name: str = ""
    tokenizer_max_length: int = 32
    pad_language_to: str = "max_length"
    chunk_size: int | None = None
    n_action_steps: int | None = None
    num_vlm_layers: int = 0  # <= 0: keep all layers of the backbone
    freeze_vision_encoder: bool = False
    train_expert_only: bool = False
    load_vlm_weights: bool = False
    scheduler_warmup_steps: int = 500

    def __post_init__(self) -> None:
        apply_preset(self)
        if not self.vlm_model_name:
            self.vlm_model_name = smolvlm_alias(self.vlm_preset, self.image_size)
        if not self.tokenizer_name:
            is_alias = self.vlm_model_name.startswith("dlr-smolvlm-")
            self.tokenizer_name = DEFAULT_TOKENIZER if is_alias else self.vlm_model_name
        self.resize_imgs_with_padding = (self.image_size, self.image_size)
        super().__post_init__()
