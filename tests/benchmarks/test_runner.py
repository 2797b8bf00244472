import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import yaml

from benchmarks.cli import main
from generation.manifest import read_manifest, remove_stale_temps, run_step, write_json_atomic


def _chain(root: Path, b_config: str, calls: list[str], force: bool = False) -> None:
    """A -> B -> C, and D built from A alone."""

    def fn(name):
        return lambda d: calls.append(name) or {"name": name}

    run_step(root / "a", "a", fn("a"), force=force)
    run_step(root / "b", b_config, fn("b"), upstream={"a": root / "a"}, force=force)
    run_step(root / "c", "c", fn("c"), upstream={"b": root / "b"}, force=force)
    run_step(root / "d", "d", fn("d"), upstream={"a": root / "a"}, force=force)


def test_a_changed_upstream_reruns_exactly_the_steps_downstream(tmp_path):
    calls = []
    _chain(tmp_path, "b1", calls)
    assert calls == ["a", "b", "c", "d"]
    calls.clear()
    _chain(tmp_path, "b1", calls)
    assert calls == []  # complete for the same configs and upstream
    _chain(tmp_path, "b2", calls)
    assert calls == ["b", "c"]  # B changed: C is downstream, D is not
    c = read_manifest(tmp_path / "c")
    assert c["config"]["upstream"]["b"] == read_manifest(tmp_path / "b")["config_hash"]
    calls.clear()
    _chain(tmp_path, "b2", calls, force=True)
    assert calls == ["a", "b", "c", "d"]


def test_partial_work_resumes_only_for_the_same_key(tmp_path):
    from generation.manifest import config_hash, prepare_step, update_manifest

    step = tmp_path / "s"
    assert not prepare_step(step, config_hash("k1"))
    update_manifest(step, config_hash=config_hash("k1"), status="running")
    (step / "checkpoint").write_text("partial")
    assert not prepare_step(step, config_hash("k1"))  # same key, not complete: resumed
    assert (step / "checkpoint").is_file()
    assert not prepare_step(step, config_hash("k2"))  # other inputs: cleared
    assert not (step / "checkpoint").exists()


def test_stale_temp_folders_of_dead_pids_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / "datasets" / "dlr" / f".full.tmp-{dead.pid}"
    (stale / "data").mkdir(parents=True)
    live = tmp_path / f".recipe.yaml.tmp-{os.getppid()}"
    live.write_text("being written")
    assert remove_stale_temps(tmp_path) == [stale]
    assert not stale.exists() and live.exists()


TINY = {"name": "t", "stages": ["pretraining", "adaptation"],
        "pretraining": {"sources": ["dlr"], "sizes": ["full"], "steps": 1},
        "adaptation": {"suites": ["libero_spatial"], "steps": 1}}  # fmt: skip


@pytest.fixture
def fake_run(tmp_path, monkeypatch):
    """A run folder with datasets and demos, and a ``train`` that only writes its manifest."""
    import pretraining.train

    run = tmp_path / "run"
    for data in (run / "datasets" / "dlr" / "full", run / "demos" / "libero_spatial"):
        (data / "meta").mkdir(parents=True)
        (data / "meta" / "info.json").write_text(json.dumps({"total_episodes": 3}))
    write_json_atomic(run / "datasets" / "manifest.json", {"config_hash": "d1"})
    write_json_atomic(run / "demos" / "libero_spatial" / "manifest.json", {"config_hash": "m1"})
    calls = []

    def train(cfg):
        out = Path(cfg.output_dir)
        calls.append(str(out.relative_to(run)))
        (out / "config.json").write_text("{}")
        write_json_atomic(out / "manifest.json", {"config_hash": cfg.hash(), "status": "complete"})
        return out

    monkeypatch.setattr(pretraining.train, "train", train)
    recipe = tmp_path / "t.yaml"
    recipe.write_text(yaml.safe_dump({**TINY, "run_dir": str(run)}))
    return run, recipe, calls


PRE = "pretraining/openvla/dlr/full"
ADA_DLR, ADA_NONE = (
    "adaptation/openvla/dlr/full/libero_spatial",
    "adaptation/openvla/none/n0/libero_spatial",
)


def test_runner_reruns_exactly_what_a_changed_upstream_feeds(fake_run):
    run, recipe, calls = fake_run
    assert main(["run", str(recipe)]) == 0
    assert sorted(calls) == sorted([PRE, ADA_NONE, ADA_DLR])
    calls.clear()
    assert main(["run", str(recipe)]) == 0 and calls == []
    write_json_atomic(run / "datasets" / "manifest.json", {"config_hash": "d2"})
    assert main(["run", str(recipe)]) == 0
    assert calls == [PRE, ADA_DLR]  # the scratch adaptation does not read the datasets
    calls.clear()
    write_json_atomic(run / "demos" / "libero_spatial" / "manifest.json", {"config_hash": "m2"})
    assert main(["run", str(recipe), "--only", "adaptation"]) == 0
    assert sorted(calls) == sorted([ADA_NONE, ADA_DLR])
    calls.clear()
    assert main(["run", str(recipe), "--force", "--only", "pretraining"]) == 0
    assert calls == [PRE]


def test_run_folder_keeps_the_resolved_recipe_versions_and_merged_timings(fake_run):
    from benchmarks.config import load_recipe

    run, recipe, _ = fake_run
    assert main(["run", str(recipe)]) == 0
    resolved = yaml.safe_load((run / "recipe.yaml").read_text())
    assert resolved["pretraining"]["seed"] == 0 and resolved["adaptation"]["lr"] == 1e-4
    assert load_recipe(run / "recipe.yaml") == load_recipe(recipe)  # reruns the same config
    versions = json.loads((run / "versions.json").read_text())
    assert {"torch", "lerobot", "code_version", "python"} <= set(versions)
    assert set(json.loads((run / "timings.json").read_text())) == {"pretraining", "adaptation"}
    before = json.loads((run / "timings.json").read_text())
    assert main(["run", str(recipe), "--only", "adaptation"]) == 0  # skipped: times kept
    assert json.loads((run / "timings.json").read_text()) == before


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path, capsys):
    p = tmp_path / "r.yaml"
    run = tmp_path / "run"
    p.write_text(yaml.safe_dump({
        "name": "r", "run_dir": str(run), "seed": 4, "stages": ["generation", "evaluation"],
        "generation": {"tasks": [0, 1], "num_patterns": 2, "env_steps_per_pattern": 4096,
                       "ppo": {"num_steps": 512}, "sources": ["dlr", "o2o"]},
    }))  # fmt: skip
    assert main(["run", str(p), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "kl_coef: 0.1" in out and "seed: 4" in out  # the resolved recipe
    assert "2 task(s), K=2 patterns" in out
    assert "dlr     2 PPO run(s) per task x 4096 env steps per pattern = 4 PPO update(s)" in out
    assert "o2o     1 PPO run(s) per task x 8192 env steps = 8 PPO update(s)" in out
    assert "evaluation  3 checkpoint(s), 300 closed-loop episodes" in out  # 3 x 10 tasks x 10
    assert not run.exists()


@pytest.mark.parametrize(
    "only, expected",
    [
        ("demo", "--only demo: unknown stage; valid stages: demos, generation, pretraining"),
        ("demos", "--only demos: not a stage of recipe t (its stages: pretraining, adaptation)"),
    ],
)
def test_only_rejects_unknown_stages(fake_run, capsys, only, expected):
    run, recipe, calls = fake_run
    assert main(["run", str(recipe), "--only", only]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0]
    assert not (run / "timings.json").exists() and calls == []


HOLD = """
import sys
from pathlib import Path
from benchmarks.rundir import run_lock
with run_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    sys.stdin.readline()  # held until the test says so: no race with a loaded host
"""


def test_a_second_run_of_one_folder_names_the_holder_or_waits(fake_run, capsys):
    run, recipe, calls = fake_run
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLD), str(run)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["run", str(recipe)]) == 2
        err = capsys.readouterr().err
        assert f"is in use by dlr run PID {holder.pid}" in err and "--wait" in err
        assert calls == []
        release = threading.Timer(2.0, lambda: (holder.stdin.write("go\n"), holder.stdin.flush()))
        release.start()
        assert main(["run", str(recipe), "--wait"]) == 0  # queued behind the holder
        assert holder.poll() is not None and len(calls) == 3
    finally:
        holder.kill()
        holder.wait()


def test_pretraining_names_a_subset_generation_could_not_fill(tmp_path):
    from benchmarks.config import validate_recipe
    from benchmarks.runner import run_pretraining

    meta = tmp_path / "datasets" / "dlr" / "full" / "meta"
    meta.mkdir(parents=True)
    (meta / "info.json").write_text(json.dumps({"total_episodes": 3}))
    recipe = validate_recipe(
        {"name": "t", "stages": ["pretraining"],
         "pretraining": {"archs": ["openvla"], "sources": ["dlr"], "sizes": ["full", "n6"]}}
    )  # fmt: skip
    with pytest.raises(
        FileNotFoundError, match="matched only 3 episodes.*'n6'.*max_attempts_per_kept"
    ):
        run_pretraining(recipe, tmp_path)
    assert not (tmp_path / "pretraining").exists()  # checked before anything trains


def test_force_reaches_the_generation_steps(tmp_path, monkeypatch):
    import generation.dlr.steps as steps

    seen = []

    class Stop(RuntimeError):
        pass

    def run_step(step_dir, config, fn, name=None, upstream=None, force=False):
        seen.append((Path(step_dir).name, force))
        raise Stop("recorded")

    monkeypatch.setattr(steps, "run_step", run_step)
    p = tmp_path / "g.yaml"
    p.write_text(yaml.safe_dump({"name": "g", "run_dir": str(tmp_path / "run"),
                                 "stages": ["generation"]}))  # fmt: skip
    assert main(["run", str(p)]) == 2 and seen == [("demos", False)]
    assert main(["run", str(p), "--force"]) == 2 and seen[-1] == ("demos", True)
