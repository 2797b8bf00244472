"""The shared VLM trunk: images -> ViT patch tokens, instruction -> LM embeddings, one LM.

Sequence fed to the causal LM: ``[camera_1 patches, camera_2 patches, state, instruction]``
followed by whatever the action head appends (action-bin tokens for OpenVLA-style decoding).
The backbones are ``transformers`` models built from small configs (random init) or loaded from
local checkpoints when ``vision_pretrained_path`` / ``lm_pretrained_path`` are given.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from lerobot.utils.constants import OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS, OBS_STATE
from torch import Tensor, nn

from pretraining.common.configuration_vla import VLABaseConfig
from pretraining.text import load_tokenizer

logger = logging.getLogger(__name__)


def build_vision_encoder(cfg: VLABaseConfig) -> nn.Module:
    from transformers import AutoModel, SiglipVisionConfig, SiglipVisionModel

    if cfg.vision_pretrained_path:
        logger.info("Loading vision encoder from %s", cfg.vision_pretrained_path)
        model = AutoModel.from_pretrained(cfg.vision_pretrained_path)
        return getattr(model, "vision_model", model)
    vcfg = SiglipVisionConfig(
        hidden_size=cfg.vision_hidden_size,
        intermediate_size=cfg.vision_intermediate_size,
        num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads,
        image_size=cfg.image_size,
        patch_size=cfg.vision_patch_size,
        vision_use_head=False,
    )
    return SiglipVisionModel(vcfg).vision_model


def build_language_model(cfg: VLABaseConfig, vocab_size: int) -> nn.Module:
    from transformers import AutoModel, LlamaConfig, LlamaModel

    if cfg.lm_pretrained_path:
        logger.info("Loading language model from %s", cfg.lm_pretrained_path)
        return AutoModel.from_pretrained(cfg.lm_pretrained_path)
    lcfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.lm_hidden_size,
        intermediate_size=cfg.lm_intermediate_size,
        num_hidden_layers=cfg.lm_layers,
        num_attention_heads=cfg.lm_heads,
        num_key_value_heads=cfg.lm_heads,
        max_position_embeddings=2048,
    )
    return LlamaModel(lcfg)


class VLMPrefix(nn.Module):
    """Embeds observations into a prefix and runs the causal LM over prefix + extra tokens."""

    def __init__(self, cfg: VLABaseConfig):
        super().__init__()
        self.cfg = cfg
        tokenizer = load_tokenizer(cfg.tokenizer_name)
        self.vision = build_vision_encoder(cfg)
        self.lm = build_language_model(cfg, vocab_size=len(tokenizer))
        if cfg.freeze_vision_encoder:
            self.vision.requires_grad_(False)
        vision_width = self.vision.config.hidden_size
        self.hidden_size = self.lm.config.hidden_size
        self.image_keys = sorted(cfg.image_features)
        self.vision_proj = nn.Linear(vision_width, self.hidden_size)
        self.camera_embedding = nn.Parameter(torch.zeros(len(self.image_keys), self.hidden_size))
        state_ft = cfg.robot_state_feature
        self.state_proj = (
            nn.Linear(state_ft.shape[0], self.hidden_size) if cfg.use_state and state_ft else None
        )

    def _vision_size(self) -> int:
        return int(self.vision.config.image_size)

    def embed_prefix(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Return prefix embeddings (B, L, D) and their boolean attention mask (B, L)."""
        embeds: list[Tensor] = []
        size = self._vision_size()
        for cam, key in enumerate(self.image_keys):
            img = batch[key]
            if img.ndim == 5:  # (B, T, C, H, W) with n_obs_steps == 1
                img = img[:, -1]
            if img.shape[-1] != size or img.shape[-2] != size:
                img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False)
            pixels = img * 2.0 - 1.0  # [0, 1] -> [-1, 1], the SigLIP convention
            patches = self.vision(pixel_values=pixels.to(self.vision_proj.weight.dtype))
            embeds.append(self.vision_proj(patches.last_hidden_state) + self.camera_embedding[cam])
        if self.state_proj is not None:
            state = batch[OBS_STATE]
            if state.ndim == 3:
                state = state[:, -1]
            embeds.append(self.state_proj(state).unsqueeze(1))
        bsz = embeds[0].shape[0]
        device = embeds[0].device
        vis_len = sum(e.shape[1] for e in embeds)
        tokens = batch[OBS_LANGUAGE_TOKENS]
        text = self.lm.get_input_embeddings()(tokens)
        embeds.append(text.to(embeds[0].dtype))
        mask = torch.cat(
            [
                torch.ones(bsz, vis_len, dtype=torch.bool, device=device),
                batch[OBS_LANGUAGE_ATTENTION_MASK].to(device=device, dtype=torch.bool),
            ],
            dim=1,
        )
        return torch.cat(embeds, dim=1), mask

    def run_lm(
        self,
        embeds: Tensor,
        mask: Tensor,
        past_key_values=None,
        use_cache: bool = False,
    ):
        return self.lm(
            inputs_embeds=embeds,
            attention_mask=mask.long(),
            past_key_values=past_key_values,
            use_cache=use_cache,
        )
