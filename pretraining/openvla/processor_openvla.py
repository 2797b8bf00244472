"""Processors of ``dlr_openvla`` (found by lerobot's factory by naming convention)."""

from pretraining.common.processor_vla import (
    make_vla_pre_post_processors as make_dlr_openvla_pre_post_processors,
)

__all__ = ["make_dlr_openvla_pre_post_processors"]
