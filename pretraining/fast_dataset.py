"""Same frames as ``LeRobotDataset[idx]``, with the action-chunk lookup served from memory.

lerobot 0.6.1 gathers each delta-timestamp window (e.g. the 10..50 future actions of an action
chunk) with ``hf_dataset[key][indices]``, which costs milliseconds per frame and dominated our
CPU step time. The numeric columns that have deltas are small (frames x 7 floats), so we read
them once into arrays and index them directly; the current frame (images included) still comes
from the dataset. Items are identical to lerobot's (tested), so lerobot's processors apply.
Datasets with videos, image transforms or an episode subset fall back to lerobot's own path.
"""

from __future__ import annotations

import numpy as np
import torch
from lerobot.datasets import LeRobotDataset
from torch.utils.data import Dataset

_IMAGE_DTYPES = ("image", "video")


class FastDeltaDataset(Dataset):
    def __init__(self, dataset: LeRobotDataset):
        self.dataset = dataset
        meta = dataset.meta
        self.fallback = bool(
            meta.video_keys or dataset.image_transforms is not None or dataset.episodes is not None
        )
        reader = getattr(dataset, "_ensure_reader", None)  # lerobot 0.6 internals; else fall back
        self.delta = dict((reader().delta_indices or {}) if reader else {})
        self.fallback = self.fallback or reader is None
        if self.fallback:
            return
        hf = dataset.hf_dataset
        numeric = [k for k in self.delta if meta.features[k]["dtype"] not in _IMAGE_DTYPES]
        table = hf.with_format("numpy", columns=[*numeric, "index", "episode_index"])
        self.columns = {k: torch.from_numpy(np.asarray(table[k])) for k in numeric}
        index = np.asarray(table["index"])
        self.offset = int(index[0])
        if not np.array_equal(index, np.arange(self.offset, self.offset + len(index))):
            self.fallback = True
            return
        episodes = meta.episodes
        self.bounds = {
            int(e): (int(a), int(b))
            for e, a, b in zip(
                episodes["episode_index"],
                episodes["dataset_from_index"],
                episodes["dataset_to_index"],
                strict=True,
            )
        }
        self.deltas = {k: np.asarray(v, dtype=np.int64) for k, v in self.delta.items()}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> dict:
        if self.fallback:
            return self.dataset[idx]
        hf = self.dataset.hf_dataset
        item = hf[idx]
        abs_idx = int(item["index"])
        start, end = self.bounds[int(item["episode_index"])]
        for key, deltas in self.deltas.items():
            query = abs_idx + deltas
            item[f"{key}_is_pad"] = torch.from_numpy((query < start) | (query >= end))
            rows = np.clip(query, start, end - 1) - self.offset
            if key in self.columns:
                item[key] = self.columns[key][rows]
            else:
                item[key] = torch.stack([hf[int(r)][key] for r in rows])
        item["task"] = self.dataset.meta.tasks.iloc[int(item["task_index"])].name
        return item
