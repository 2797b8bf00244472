"""Closed-loop evaluation of a real (tiny, randomly initialised) lerobot policy checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def tiny_checkpoint(root: Path, arch: str = "openvla", image_size: int = 32, **overrides) -> Path:
    """Write a 4-episode dataset, build a tiny policy on it, save it like pretraining does
    (``overrides``: fields of the policy config)."""
    factory = pytest.importorskip("pretraining.factory", reason="pretraining/ is not available")
    from lerobot.datasets import LeRobotDatasetMetadata
    from lerobot.policies.factory import make_policy, make_pre_post_processors

    from generation.data.episode import Episode
    from generation.data.schema import DatasetSpec
    from generation.data.writer import write_episodes

    rng = np.random.default_rng(0)
    episodes = [
        Episode(
            suite="libero_object",
            task_index=0,
            task_name="t",
            language="pick up the soup",
            init_state=np.zeros(5),
            actions=rng.uniform(-1, 1, (6, 7)),
            states=rng.normal(size=(6, 8)),
            env_states=rng.normal(size=(6, 84)),
            success=True,
            images={"image": rng.integers(0, 255, (6, image_size, image_size, 3), np.uint8)},
        )  # fmt: skip
        for _ in range(4)
    ]
    data = write_episodes(episodes, root / "data", spec=DatasetSpec(image_size=image_size),
                          progress=False)  # fmt: skip
    meta = LeRobotDatasetMetadata("local/data", root=data)
    cfg = factory.make_config(arch, "tiny", device="cpu", image_size=image_size, **overrides)
    policy = make_policy(cfg, ds_meta=meta)
    pre, post = make_pre_post_processors(cfg, dataset_stats=meta.stats)
    ckpt = root / "ckpt"
    policy.save_pretrained(ckpt)
    pre.save_pretrained(ckpt)
    post.save_pretrained(ckpt)
    return ckpt


def test_lerobot_checkpoint_rollout(tmp_path: Path) -> None:
    from evaluation.closed_loop import evaluate, policy_image_size, read_cache

    ckpt = tiny_checkpoint(tmp_path)
    assert policy_image_size(ckpt) == 32
    df = evaluate(
        ckpt, arch="openvla", source="none", size=0, suite="libero_object", tasks=[0],
        episodes_per_task=1, seeds=[0], num_workers=1, out_dir=tmp_path / "eval", horizon=5,
        device="cpu",
    )  # fmt: skip
    assert df["episodes"].tolist() == [1]
    cache = tmp_path / "eval/episodes/openvla/none/n0/libero_object/task0_seed0_h5.jsonl"
    assert read_cache(cache)[0]["length"] == 5


@pytest.mark.slow
def test_parallel_workers_load_the_checkpoint(tmp_path: Path) -> None:
    """Two spawned workers, each loading the checkpoint and building its own env."""
    from evaluation.closed_loop import evaluate

    ckpt = tiny_checkpoint(tmp_path)
    df = evaluate(
        ckpt, arch="openvla", source="none", size=0, suite="libero_object", tasks=[0],
        episodes_per_task=2, seeds=[0, 1], num_workers=2, out_dir=tmp_path / "eval",
        horizon=5, device="cpu",
    )  # fmt: skip
    assert sorted(df["seed"]) == [0, 1] and (df["episodes"] == 2).all()


@pytest.mark.slow
def test_one_pool_serves_several_checkpoints(tmp_path: Path) -> None:
    """The runner's evaluation stage keeps one EvalPool: the same worker processes run every
    checkpoint, and the rows equal those of each checkpoint evaluated alone (in this process)."""
    from evaluation.closed_loop import EvalPool, evaluate, read_cache

    ckpts = [tiny_checkpoint(tmp_path / "a"), tiny_checkpoint(tmp_path / "b", arch="pi0")]
    kw = dict(suite="libero_object", tasks=[0, 1], episodes_per_task=2, seeds=[0], horizon=4)
    shared, fresh = tmp_path / "shared", tmp_path / "fresh"
    with EvalPool(2, device="cpu") as pool:
        rows = [evaluate(c, arch=a, source="none", size=0, out_dir=shared, pool=pool, **kw)
                for c, a in zip(ckpts, ["openvla", "pi0"], strict=True)]  # fmt: skip
    pids = [
        {r["pid"] for r in read_cache(f)}
        for arch in ["openvla", "pi0"]
        for f in (shared / "episodes" / arch / "none/n0/libero_object").glob("*.jsonl")
    ]
    assert len(set().union(*pids)) <= 2  # 8 episodes of 2 checkpoints, 2 processes in all
    for c, a, got in zip(ckpts, ["openvla", "pi0"], rows, strict=True):
        ref = evaluate(c, arch=a, source="none", size=0, out_dir=fresh, num_workers=1,
                       device="cpu", **kw)  # fmt: skip
        cols = ["arch", "task", "seed", "episodes", "successes", "mean_length"]
        assert got[cols].equals(ref[cols])
