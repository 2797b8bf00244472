import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

from test_dlr_synthetic import synthetic_demos

from generation.dlr import datasets as ds
from generation.manifest import read_manifest, run_step


def _on(episodes, states, success=True):
    """Copies of ``episodes`` placed on init states ``states`` (one each)."""
    import dataclasses

    return [
        dataclasses.replace(e, init_state_index=s, success=success)
        for e, s in zip(episodes, states, strict=True)
    ]


def test_matched_datasets_share_init_states_and_sizes():
    eps = synthetic_demos(per_strategy=10)
    schedule = [7, 3, 9, 1, 4]
    rollouts = {
        # pattern 2 fails on init state 3; pattern 0 never reaches 4
        "dlr": {
            0: _on(eps[:4], schedule[:4]),
            1: _on(eps[10:15], schedule),
            2: _on(eps[20:21], [7])
            + _on(eps[21:22], [3], success=False)
            + _on(eps[22:25], [9, 1, 4]),
        },
        # O2O: 3 attempts per init state; one failure on 9
        "o2o": {-1: _on(eps[:15], [s for s in schedule for _ in range(3)])},
    }
    rollouts["o2o"][-1][7] = _on([eps[7]], [9], success=False)[0]
    states, matched = ds.matched_by_init_state(rollouts, episodes=30, per_state=3)
    # per state, as many as every source solved: 7: 3, 3: 2 (DLR), 9: 2 (O2O), 1: 3, 4: 2 (DLR)
    assert states == [7, 3, 9, 1, 4]
    for source in ("dlr", "o2o"):
        got = [e.init_state_index for e in matched[source]]
        assert got == [7, 7, 7, 3, 3, 9, 9, 1, 1, 1, 4, 4], source
        assert all(e.success for e in matched[source])
    dlr_patterns = [
        next(k for k, v in rollouts["dlr"].items() if any(e is x for x in v))
        for e in matched["dlr"]
    ]
    # distinct patterns per state, the least picked first: balanced over the task
    assert dlr_patterns == [0, 1, 2, 0, 1, 0, 2, 0, 1, 2, 1, 2]
    assert [dlr_patterns.count(k) for k in range(3)] == [4, 4, 4]
    # the episode target stops the walk, cutting the last state short for every source alike
    states5, m5 = ds.matched_by_init_state(rollouts, episodes=5, per_state=3)
    assert states5 == [7, 3] and len(m5["dlr"]) == len(m5["o2o"]) == 5
    # failures kept: every state gives per_state where every source has the attempts
    _, all_kept = ds.matched_by_init_state(rollouts, episodes=30, per_state=3, successes_only=False)
    assert len(all_kept["dlr"]) == len(all_kept["o2o"]) == 3 * 4 + 2
    # a source that never succeeds leaves nothing to match
    rollouts["o2o"][-1] = _on(eps[:15], [s for s in schedule for _ in range(3)], success=False)
    assert ds.matched_by_init_state(rollouts, episodes=30, per_state=3)[0] == []

    sizes = ds.subset_dirs([3, 6, 50], smallest_task=15)
    assert sizes == [("n3", 3), ("n6", 6), ("full", None)]
    # the smallest task's count is a size the others can go beyond; equal to all: left out
    assert ds.subset_dirs([3, 6], smallest_task=6, largest_task=12)[1] == ("n6", 6)
    assert ds.subset_dirs([3, 6], smallest_task=6, largest_task=6) == [("n3", 3), ("full", None)]


def test_subsets_are_cut_from_full_without_rendering(tmp_path, monkeypatch, object_env):
    import pandas as pd
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from test_dataset import _random_episode

    from generation.data import writer
    from generation.data.reader import read_episode_meta, read_frames
    from generation.data.schema import ACTION_KEY, IMAGE_KEY, STATE_KEY, DatasetSpec

    ordered = {}
    for task, language in (("a", "pick up the A"), ("b", "pick up the B")):
        ordered[task] = [
            _random_episode(object_env, i, n=4 + i, seed=i, source="dlr", pattern_id=i % 2)
            for i in range(3)
        ]
        for ep in ordered[task]:
            ep.language = language
    rendered = []
    render = writer.render_by_replay

    def counting_render(ep, env):
        rendered.append(ep)
        return render(ep, env)

    monkeypatch.setattr(writer, "render_by_replay", counting_render)
    sizes = [("n1", 1), ("n2", 2), ("full", None)]
    written = ds.write_source_datasets(
        ordered, tmp_path, sizes, "local/t", DatasetSpec(image_size=24)
    )
    assert len(rendered) == 6  # every episode once, for full/ only
    assert {k: v["episodes"] for k, v in written.items()} == {"n1": 2, "n2": 4, "full": 6}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "n1", "n2"]  # no temp folders
    columns = ["index", "episode_index", "frame_index", ACTION_KEY, STATE_KEY, IMAGE_KEY]
    full_frames = read_frames(tmp_path / "full", columns=columns)
    full_meta = read_episode_meta(tmp_path / "full")
    full = LeRobotDataset("local/t_full", root=tmp_path / "full", video_backend="pyav")
    for name, n in sizes[:2]:
        keep = [*range(n), *range(3, 3 + n)]  # the first n of each task, in task order
        meta = read_episode_meta(tmp_path / name)
        expected = full_meta.iloc[keep].reset_index(drop=True).assign(episode_index=range(2 * n))
        pd.testing.assert_frame_equal(meta, expected)
        frames = read_frames(tmp_path / name, columns=columns)
        old = full_frames[full_frames.episode_index.isin(keep)].reset_index(drop=True)
        assert frames["index"].tolist() == list(range(len(old)))
        assert frames.episode_index.tolist() == old.episode_index.map(keep.index).tolist()
        assert [x["bytes"] for x in frames[IMAGE_KEY]] == [x["bytes"] for x in old[IMAGE_KEY]]
        stats = json.loads((tmp_path / name / "meta" / "stats.json").read_text())
        for key in (ACTION_KEY, STATE_KEY):
            x = np.stack(frames[key].to_numpy()).astype(np.float64)
            for stat, value in (("mean", x.mean(0)), ("std", x.std(0)), ("min", x.min(0))):
                # lerobot aggregates float32 per-episode stats: std is good to ~1e-4
                np.testing.assert_allclose(stats[key][stat], value, rtol=1e-3, atol=1e-5)
            assert stats[key]["count"] == [len(old)]
        assert stats[IMAGE_KEY]["count"] == [len(old)]
        assert stats["episode_index"]["max"] == [2 * n - 1]
        assert stats["index"]["max"] == [len(old) - 1]
        subset = LeRobotDataset(f"local/t_{name}", root=tmp_path / name, video_backend="pyav")
        assert subset.meta.total_episodes == 2 * n and len(subset) == len(old)
        last = subset[len(subset) - 1]
        assert last["task"] == "pick up the B"
        torch.testing.assert_close(last[IMAGE_KEY], full[int(old["index"].iloc[-1])][IMAGE_KEY])


def test_step_is_skipped_when_complete_for_same_config(tmp_path):
    calls = []

    def fn(d):
        calls.append(1)
        return {"value": len(calls)}

    assert run_step(tmp_path / "s", {"a": 1}, fn) == {"value": 1}
    assert run_step(tmp_path / "s", {"a": 1}, fn) == {"value": 1} and len(calls) == 1
    m = read_manifest(tmp_path / "s")
    assert m["status"] == "complete" and m["wall_time_s"] >= 0 and m["config"] == {"a": 1}
    assert run_step(tmp_path / "s", {"a": 2}, fn) == {"value": 2}  # new config: reruns


def test_partial_work_of_another_config_is_not_resumed(tmp_path):
    """A step interrupted under one config leaves files (PPO checkpoints); a rerun under
    another config must start clean, a rerun under the same config keeps them."""

    def crash(d):
        (d / "checkpoint.pt").write_text("partial")
        raise KeyboardInterrupt

    def seen(d):
        return {"checkpoint": (d / "checkpoint.pt").is_file()}

    with pytest.raises(KeyboardInterrupt):
        run_step(tmp_path / "s", {"a": 1}, crash)
    assert run_step(tmp_path / "s", {"a": 1}, seen) == {"checkpoint": True}  # same: resumes
    with pytest.raises(KeyboardInterrupt):
        run_step(tmp_path / "t", {"a": 1}, crash)
    assert run_step(tmp_path / "t", {"a": 2}, seen) == {"checkpoint": False}  # other: cleared
    (tmp_path / "s" / "checkpoint.pt").write_text("left after completion")
    assert run_step(tmp_path / "s", {"a": 3}, seen) == {"checkpoint": False}


PPO_RUNS = ["dlr/pattern_0", "dlr/pattern_1", "o2o", "o2o_kl", "mi"]
_ISOLATED = (("HOME", "home"), ("HF_DATASETS_CACHE", "hf"), ("HF_LEROBOT_HOME", "lerobot"))


@pytest.mark.slow
def test_pipeline_end_to_end_tiny(tiny_pipeline, tmp_path, monkeypatch):
    """The generation stage of the tiny recipe's run (tests/conftest.py): 4 sources, 2 PPO
    iterations each, rendered datasets."""
    for var, sub in _ISOLATED:
        monkeypatch.setenv(var, str(tmp_path / sub))
    from generation.data.reader import load_episodes, read_episode_meta
    from generation.dlr.pipeline import GenerationConfig, run_generation

    cfg = GenerationConfig.model_validate(tiny_pipeline.recipe["generation"])
    run = tiny_pipeline.run
    tdir = run / "generation" / "libero_object" / "0"
    for step in [
        "demos",
        "discover",
        "learn",
        "reinforce/dlr/pattern_0",
        "reinforce/dlr/pattern_1",
        "reinforce/o2o",
        "reinforce/o2o_kl",
        "reinforce/mi",
        "rollouts/dlr",
        "rollouts/o2o",
        "analysis",
    ]:
        assert read_manifest(tdir / step)["status"] == "complete", step
    # equal total budgets: O2O and MI get K x the per-pattern budget
    o2o_steps = json.loads((tdir / "reinforce/o2o/manifest.json").read_text())["result"][
        "global_step"
    ]
    dlr_steps = sum(
        read_manifest(tdir / f"reinforce/dlr/pattern_{k}")["result"]["global_step"]
        for k in range(2)
    )
    assert o2o_steps == dlr_steps
    # O2O is ordinary PPO, o2o_kl carries DLR's leash
    kl = {
        s: read_manifest(tdir / f"reinforce/{s}")["config"]["reinforce"]["ppo"]["kl_coef"]
        for s in ("o2o", "o2o_kl", "dlr/pattern_0")
    }
    assert kl["o2o"] == 0.0 and kl["o2o_kl"] == kl["dlr/pattern_0"] > 0
    # occupancy: labelled final rollouts and PPO snapshots (iteration 1: the BC policy)
    occupancy = pd.read_parquet(tdir / "analysis" / "occupancy.parquet")
    assert {"bc", "rollouts", "ppo"} >= set(occupancy["stage"]) and "vae" in set(
        occupancy["labeler"]
    )
    # matched datasets: exactly equal counts, nested subset, pattern ids balanced
    sources = ("dlr", "o2o", "o2o_kl", "mi")
    full = {s: load_episodes(run / "datasets" / s / "full") for s in sources}
    assert all(len(full[s]) == 2 for s in sources)
    assert sorted(e.pattern_id for e in full["dlr"]) == [0, 1]
    # every source on the same init states
    states = {s: [e.init_state_index for e in full[s]] for s in sources}
    assert all(states[s] == states["dlr"] for s in sources), states
    assert {e.source for e in full["o2o"]} == {"o2o"} and {e.pattern_id for e in full["o2o"]} == {
        -1
    }
    n1 = read_episode_meta(run / "datasets" / "dlr" / "n1")
    full_meta = read_episode_meta(run / "datasets" / "dlr" / "full")
    assert len(n1) == 1 and np.array_equal(n1.init_state.iloc[0], full_meta.init_state.iloc[0])
    assert (run / "datasets" / "diversity.parquet").exists()
    assert (run / "datasets" / "diversity_ci.parquet").exists()
    # the report stage answered the collapse questions from these artefacts
    text = (run / "report" / "report.md").read_text()
    for heading in (
        "Does RL collapse?",
        "PPO learning curves",
        "Mode occupancy",
        "Diversity ratios",
    ):
        assert heading in text, heading
    assert (run / "report" / "learning_curves.png").is_file()
    assert (run / "report" / "occupancy.png").is_file()
    # a second run skips every completed step
    before = {p: p.stat().st_mtime_ns for p in sorted(run.rglob("manifest.json"))}
    again = run_generation(cfg, run)
    assert again["datasets"] == read_manifest(run / "datasets")["result"]
    assert {p: p.stat().st_mtime_ns for p in sorted(run.rglob("manifest.json"))} == before


@pytest.mark.slow
def test_a_run_killed_during_ppo_resumes_to_byte_identical_datasets(tiny_pipeline, tmp_path):
    """SIGKILL to the whole process group (env workers too) at a random point of a random PPO
    run's last iteration; the rerun reproduces the uninterrupted run's datasets byte for byte."""
    import random
    import signal
    import subprocess
    import sys
    import time

    import torch

    run, tiny = tiny_pipeline.run, tiny_pipeline.recipe["generation"]
    killed = tmp_path / "run"
    target = random.choice(PPO_RUNS)
    delay = random.uniform(0.0, 0.5)
    where = f"killed in reinforce/{target}, {delay:.2f} s after its first checkpoint"
    tdir = killed / "generation" / "libero_object" / "0"
    first_checkpoint = tdir / "reinforce" / target / "checkpoint.pt"
    # the steps the kill cannot touch (upstream and sibling runs) as the uninterrupted run left
    # them: complete for the same config, so the killed run starts at the target's PPO
    done = run / "generation" / "libero_object" / "0"
    for step in ["demos", "discover", "learn"] + [
        f"reinforce/{r}" for r in PPO_RUNS if r != target
    ]:
        shutil.copytree(done / step, tdir / step)
    env = os.environ | {var: str(tmp_path / sub) for var, sub in _ISOLATED}
    script = (
        "from generation.dlr.pipeline import GenerationConfig, run_generation\n"
        f"run_generation(GenerationConfig.model_validate({tiny!r}), {str(killed)!r})\n"
    )
    log = tmp_path / "killed.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        deadline = time.time() + 600
        while not first_checkpoint.exists():
            assert proc.poll() is None, f"the run ended before {target} checkpointed: {log}"
            assert time.time() < deadline, where
            time.sleep(0.01)
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert read_manifest(tdir / "reinforce" / target)["status"] != "complete", where
    assert not (killed / "datasets").exists()

    with pytest.MonkeyPatch.context() as mp:
        for var, value in env.items():
            mp.setenv(var, value)
        from generation.dlr.pipeline import GenerationConfig, run_generation

        run_generation(GenerationConfig.model_validate(tiny), killed)

    expected = tiny_pipeline.files(run / "datasets")
    got = tiny_pipeline.files(killed / "datasets")
    assert sorted(got) == sorted(expected), where
    for name, data in expected.items():
        assert got[name] == data, f"{where}: datasets/{name} differs"
    for source in PPO_RUNS:
        a = torch.load(run / "generation/libero_object/0/reinforce" / source / "policy.pt",
                       weights_only=False)  # fmt: skip
        b = torch.load(tdir / "reinforce" / source / "policy.pt", weights_only=False)
        assert all(torch.equal(v, b["state_dict"][k]) for k, v in a["state_dict"].items()), where
