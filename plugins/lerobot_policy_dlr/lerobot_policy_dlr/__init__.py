"""Registers DLR-Bench's VLA policies with lerobot (imported by lerobot's plugin discovery)."""

from pretraining.factory import register_all

register_all()
