"""``dlr_smolvla``: lerobot's SmolVLAPolicy, with the backbone alias resolved to a local folder."""

from __future__ import annotations

from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

from pretraining.smolvla.backbone import resolve_vlm
from pretraining.smolvla.configuration_smolvla import DlrSmolVLAConfig


class DlrSmolVLAPolicy(SmolVLAPolicy):
    config_class = DlrSmolVLAConfig
    name = "dlr_smolvla"

    def __init__(self, config: DlrSmolVLAConfig, **kwargs):
        # The saved config keeps the portable alias; only model construction sees the path.
        alias = config.vlm_model_name
        config.vlm_model_name = resolve_vlm(alias)
        try:
            super().__init__(config, **kwargs)
        finally:
            config.vlm_model_name = alias
