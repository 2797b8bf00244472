"""Our per-episode metadata survives lerobot's own dataset tools (`lerobot-edit-dataset`)."""

import sys

import numpy as np
import pandas as pd
import pytest

from generation.data.episode import Episode
from generation.data.episode_meta import FIELDS, META_PREFIX
from generation.data.reader import load_episodes, read_episode_meta
from generation.data.schema import EPISODE_META_FILE, DatasetSpec
from generation.data.writer import write_episodes

SOURCES = ["demo", "dlr", "o2o", "mi", "dlr", "demo"]


def _episode(i: int) -> Episode:
    """Every field differs between episodes, and init states differ in length (suites do)."""
    rng = np.random.default_rng(i)
    T = 3 + i
    return Episode(
        suite=("libero_object", "libero_spatial")[i % 2], task_index=i % 3, task_name=f"task_{i}",
        language=f"do thing {i % 3}", init_state=rng.normal(size=20 + i),
        actions=rng.uniform(-1, 1, (T, 7)), states=rng.normal(size=(T, 8)),
        env_states=rng.normal(size=(T, 84)), success=i % 3 != 1, source=SOURCES[i],
        init_state_index=10 + i, seed=100 + i, strategy_id=i % 3, pattern_id=i - 1,
        settle_steps=5 + i, images={"image": np.full((T, 16, 16, 3), i, np.uint8)},
    )  # fmt: skip


@pytest.fixture(scope="module")
def episodes() -> list[Episode]:
    return [_episode(i) for i in range(6)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, episodes):
    root = tmp_path_factory.mktemp("edit") / "ours"
    return write_episodes(episodes, root, spec=DatasetSpec(image_size=16), progress=False)


def _check(root, expected: list[Episode]) -> None:
    """Every field of every episode of ``root`` equals the episode it came from."""
    meta = read_episode_meta(root)
    assert meta["episode_index"].tolist() == list(range(len(expected)))
    for row, ep in zip(meta.itertuples(index=False), expected, strict=True):
        for field in FIELDS:
            got, want = getattr(row, field), getattr(ep, field)
            if field == "init_state":
                np.testing.assert_array_equal(got, want)
            else:
                assert got == want and type(got) is type(np.asarray(want).item()), field
        assert row.length == len(ep)
    for ep_back, ep in zip(load_episodes(root), expected, strict=True):
        np.testing.assert_array_equal(ep_back.actions, ep.actions)
        np.testing.assert_array_equal(ep_back.init_state, ep.init_state)


def _edit(monkeypatch, *args: str) -> None:
    """Run `lerobot-edit-dataset` with these arguments, in this process (its CLI parser)."""
    from lerobot.scripts.lerobot_edit_dataset import edit_dataset

    monkeypatch.setattr(sys, "argv", ["lerobot-edit-dataset", *args])
    edit_dataset()


def test_written_metadata_lives_in_lerobots_episode_table(dataset, episodes):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    _check(dataset, episodes)
    (dataset / EPISODE_META_FILE).unlink()  # the flat copy is not needed to read it
    try:
        _check(dataset, episodes)
    finally:
        read_episode_meta(dataset).to_parquet(dataset / EPISODE_META_FILE)
    ds = LeRobotDataset("local/ours", root=dataset)  # lerobot still loads it
    assert ds.meta.total_episodes == 6 and len(ds) == sum(len(e) for e in episodes)
    assert "dlr_episode" not in ds.meta.stats  # the pseudo-feature stays out of stats.json


def test_delete_split_merge_keep_every_field(dataset, episodes, tmp_path, monkeypatch):
    deleted, split, merged = tmp_path / "deleted", tmp_path / "split", tmp_path / "merged"
    _edit(monkeypatch, "--repo_id=local/ours", f"--root={dataset}", "--new_repo_id=local/deleted",
          f"--new_root={deleted}", "--operation.type=delete_episodes",
          "--operation.episode_indices=[1, 4]")  # fmt: skip
    kept = [episodes[i] for i in (0, 2, 3, 5)]
    assert not (deleted / EPISODE_META_FILE).exists()  # lerobot drops the side table...
    _check(deleted, kept)  # ...and keeps every field

    _edit(monkeypatch, "--repo_id=local/deleted", f"--root={deleted}", f"--new_root={split}",
          "--operation.type=split", '--operation.splits={"train": [0, 2, 3], "val": [1]}')  # fmt: skip
    _check(split / "train", [kept[0], kept[2], kept[3]])
    _check(split / "val", [kept[1]])

    _edit(monkeypatch, "--new_repo_id=local/merged", f"--new_root={merged}", "--operation.type=merge",
          "--operation.repo_ids=['local/val', 'local/train']",
          f"--operation.roots=['{split / 'val'}', '{split / 'train'}']")  # fmt: skip
    _check(merged, [kept[1], kept[0], kept[2], kept[3]])


def test_merge_with_a_foreign_dataset_names_the_foreign_episodes(dataset, tmp_path):
    import pyarrow.parquet as pq
    from lerobot.datasets.dataset_tools import merge_datasets
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    foreign = tmp_path / "foreign"
    write_episodes([_episode(0)], foreign, spec=DatasetSpec(image_size=16), progress=False)
    (foreign / EPISODE_META_FILE).unlink()
    for path in (foreign / "meta" / "episodes").rglob("*.parquet"):
        table = pq.read_table(path)
        pq.write_table(
            table.drop([c for c in table.column_names if c.startswith(META_PREFIX)]), path
        )
    merge_datasets(
        [LeRobotDataset("local/ours", root=dataset), LeRobotDataset("local/f", root=foreign)],
        "local/mixed", output_dir=tmp_path / "mixed",
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"episode\(s\) \[6\] of .*mixed carry no DLR-Bench"):
        read_episode_meta(tmp_path / "mixed")
    with pytest.raises(FileNotFoundError, match="without DLR-Bench episode metadata"):
        read_episode_meta(foreign)
    assert isinstance(read_episode_meta(dataset), pd.DataFrame)
