"""Training data: one or several LeRobot datasets as one mixture, read in a resumable order.

The sample order is a pure function of (seed, position): an endless stream of per-epoch
permutations of the concatenated datasets. Micro-batch ``b`` of rank ``r`` takes stream
positions ``[(b * world + r) * B, (b * world + r + 1) * B)``. Resuming at micro-batch ``b``
therefore continues exactly where an interrupted run stopped, with any number of workers.
Mixture weights are proportional to dataset size (each frame is equally likely), so DLR and
O2O runs of equal size see equally many frames.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from lerobot.configs import PreTrainedConfig
from lerobot.datasets import LeRobotDataset, LeRobotDatasetMetadata
from lerobot.datasets.compute_stats import aggregate_stats
from lerobot.datasets.factory import resolve_delta_timestamps
from torch.utils.data import ConcatDataset, DataLoader, Sampler

from pretraining.fast_dataset import FastDeltaDataset

logger = logging.getLogger(__name__)


def open_metadata(root: str | Path) -> LeRobotDatasetMetadata:
    root = Path(root)
    return LeRobotDatasetMetadata(repo_id=f"local/{root.name}", root=root)


def check_same_features(metas: list[LeRobotDatasetMetadata]) -> None:
    """A mixture must share one schema (feature names, dtypes and shapes)."""
    ref = {k: (v["dtype"], tuple(v["shape"])) for k, v in metas[0].features.items()}
    for meta in metas[1:]:
        other = {k: (v["dtype"], tuple(v["shape"])) for k, v in meta.features.items()}
        if other != ref:
            diff = sorted(set(ref.items()) ^ set(other.items()))
            raise ValueError(f"Dataset {meta.root} differs from {metas[0].root} in {diff}")


def load_mixture(
    roots: list[str], policy_cfg: PreTrainedConfig
) -> tuple[ConcatDataset, LeRobotDatasetMetadata, dict[str, dict[str, np.ndarray]]]:
    """Open every dataset with the policy's action horizon; return mixture, first meta, stats."""
    if not roots:
        raise ValueError("dataset_roots is empty: give at least one LeRobot dataset folder")
    metas = [open_metadata(r) for r in roots]
    check_same_features(metas)
    delta = resolve_delta_timestamps(policy_cfg, metas[0])
    datasets = [
        LeRobotDataset(m.repo_id, root=m.root, delta_timestamps=delta, video_backend="pyav")
        for m in metas
    ]
    stats = aggregate_stats([m.stats for m in metas]) if len(metas) > 1 else metas[0].stats
    logger.info(
        "Mixture of %d dataset(s), %d frames: %s",
        len(datasets),
        sum(len(d) for d in datasets),
        ", ".join(f"{Path(m.root).name}={m.total_frames}" for m in metas),
    )
    return ConcatDataset([FastDeltaDataset(d) for d in datasets]), metas[0], stats


class ResumableBatchSampler(Sampler[list[int]]):
    """Endless batches over seeded per-epoch permutations, starting at micro-batch ``start``."""

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start: int = 0,
    ):
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start = start
        self._perms: dict[int, np.ndarray] = {}

    def _index(self, position: int) -> int:
        epoch, offset = divmod(position, self.num_samples)
        if epoch not in self._perms:
            self._perms = {
                epoch: np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)
            }
        return int(self._perms[epoch][offset])

    def batch(self, micro_batch: int) -> list[int]:
        first = (micro_batch * self.world_size + self.rank) * self.batch_size
        return [self._index(p) for p in range(first, first + self.batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        micro_batch = self.start
        while True:
            yield self.batch(micro_batch)
            micro_batch += 1


def make_loader(
    dataset: ConcatDataset,
    batch_size: int,
    seed: int,
    num_workers: int,
    start: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    sampler = ResumableBatchSampler(len(dataset), batch_size, seed, rank, world_size, start)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
        # Own generator: creating the iterator must not consume the global RNG (resume parity).
        generator=torch.Generator().manual_seed(seed),
    )
