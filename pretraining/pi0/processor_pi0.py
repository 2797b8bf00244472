"""Processors of ``dlr_pi0`` (found by lerobot's factory by naming convention)."""

from pretraining.common.processor_vla import (
    make_vla_pre_post_processors as make_dlr_pi0_pre_post_processors,
)

__all__ = ["make_dlr_pi0_pre_post_processors"]
