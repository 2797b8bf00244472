"""Registers DLR-Bench with lerobot (imported by lerobot's plugin discovery): the policy types
dlr_openvla, dlr_pi0 and dlr_smolvla, and the env type dlr_libero (`lerobot-eval`)."""

import evaluation.lerobot_env  # noqa: F401 - registers --env.type=dlr_libero
from pretraining.factory import register_all

register_all()
