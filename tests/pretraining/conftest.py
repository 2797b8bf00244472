"""Offline environment and tiny synthetic LeRobot datasets shared by the pretraining tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _offline_env(tmp_path_factory: pytest.TempPathFactory) -> None:
    home = tmp_path_factory.mktemp("home")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HOME"] = str(home)
    os.environ["HF_HOME"] = str(home / "hf")
    os.environ["HF_DATASETS_CACHE"] = str(home / "hf_datasets")
    os.environ["HF_LEROBOT_HOME"] = str(home / "lerobot")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(1)  # 2 shared CPU cores: oversubscription makes steps 10x slower


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory, _offline_env: None) -> Path:
    from pretraining.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("data") / "a")


@pytest.fixture(scope="session")
def tiny_dataset_b(tmp_path_factory: pytest.TempPathFactory, _offline_env: None) -> Path:
    from pretraining.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("data") / "b", episodes=2, seed=1)
