"""The executor seam: the tiny recipe's demos, generation and evaluation as Ray tasks on a
two-node cluster write the same run folder as the local executor (every step's config hash
and result, the datasets byte for byte, the evaluation rows), and the cluster section of a
recipe is validated and changes no step's hash."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from generation.manifest import read_manifest

CLOCK = ("wall_s",)  # PPO's wall-clock seconds: the one result that differs by machine load


def _steps(run) -> dict[str, dict]:
    """Every step folder's manifest (config hash and result, wall clocks left out, the run
    folder's path written RUN) by its path."""
    out = {}
    for m in sorted(run.rglob("manifest.json")):
        manifest = read_manifest(m.parent)
        result = {k: v for k, v in manifest.get("result", {}).items() if k not in CLOCK}
        out[str(m.parent.relative_to(run))] = {
            "config_hash": manifest["config_hash"],
            "result": json.loads(json.dumps(result).replace(str(run), "RUN")),
        }
    return out


# each PPO run of the tiny recipe's task: (its folder, its Ray task's name)
PPO_JOBS = [
    ("dlr/pattern_0", "ppo libero_object/0 dlr 0"),
    ("dlr/pattern_1", "ppo libero_object/0 dlr 1"),
    ("o2o", "ppo libero_object/0 o2o None"),
    ("o2o_kl", "ppo libero_object/0 o2o_kl None"),
    ("mi", "ppo libero_object/0 mi sample"),
]


class _Killer(threading.Thread):
    """While in its block: once ``folder/checkpoint.pt`` exists, SIGKILL the process whose
    title is ``title`` (a Ray worker names itself ``ray::<task name>`` while it runs a task)."""

    def __init__(self, folder, title: str):
        super().__init__(daemon=True)
        self.checkpoint, self.title = folder / "checkpoint.pt", title
        self.killed: list[int] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            if self.checkpoint.exists():
                for proc in Path("/proc").glob("[0-9]*"):
                    try:
                        title = (proc / "cmdline").read_bytes().split(b"\0")[0].decode()
                    except OSError:
                        continue
                    if title.strip() == self.title:
                        os.kill(int(proc.name), signal.SIGKILL)
                        self.killed.append(int(proc.name))
                        return
            time.sleep(0.01)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.join(timeout=5)


@pytest.mark.slow
def test_dlr_run_on_ray_equals_local(tiny_pipeline, ray_cluster, tmp_path, monkeypatch):
    """``dlr run --ray-address`` of the tiny recipe on a two-node cluster (head + one worker
    node, one CPU each): demos, generation and evaluation run as Ray tasks and write what the
    local run of the same recipe wrote: the same steps and results, the demos and datasets
    byte for byte, the same evaluation rows, although one PPO job's worker is killed mid-run
    and Ray reruns the job; a rerun on Ray skips every step."""
    import shutil

    import yaml

    from benchmarks.cli import main

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    local, run = tiny_pipeline.run, tmp_path / "run"
    recipe = tiny_pipeline.write_recipe(tmp_path / "tiny.yaml", run)
    on_ray = ["run", str(recipe), "--ray-address", ray_cluster.address]
    # one PPO job's worker is SIGKILLed after the job's first checkpoint: Ray reruns the job,
    # which resumes from the checkpoint (the comparisons below show nothing changed)
    folder, title = random.choice(PPO_JOBS)
    where = f"worker of {title!r} killed after its first checkpoint"
    killer = _Killer(run / "generation/libero_object/0/reinforce" / folder, f"ray::{title}")
    with killer:
        assert main([*on_ray, "--only", "demos", "--only", "generation"]) == 0, where
    assert killer.killed, f"{where}: the job ended before it was found"
    assert yaml.safe_load((run / "recipe.yaml").read_text())["cluster"]["backend"] == "ray"
    steps = {k: v for k, v in _steps(run).items() if k.split("/")[0] in ("demos", "generation")}
    assert "generation/libero_object/0/reinforce/dlr/pattern_1" in steps
    expected = {k: v for k, v in _steps(local).items() if k in steps}
    assert list(steps) == list(expected)
    for step in steps:
        assert steps[step]["config_hash"] == expected[step]["config_hash"], step
        assert steps[step]["result"] == expected[step]["result"], f"{where}: {step}"
    for folder in ("demos", "datasets"):
        got, want = tiny_pipeline.files(run / folder), tiny_pipeline.files(local / folder)
        assert sorted(got) == sorted(want), folder
        for name, data in want.items():
            assert got[name] == data, f"{where}: {folder}/{name} differs"
    # pretraining and adaptation train in the driver on either backend: reuse the local
    # checkpoints, then evaluate them on Ray (closed loop, perturbed, held-out demos)
    for stage in ("pretraining", "adaptation"):
        shutil.copytree(local / stage, run / stage)
    assert main([*on_ray, "--only", "evaluation"]) == 0
    for table in ("results", "robustness", "offline"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(run / f"evaluation/{table}.parquet"),
            pd.read_parquet(local / f"evaluation/{table}.parquet"),
            obj=table,
        )
    before = _steps(run)
    assert main([*on_ray, "--only", "generation"]) == 0
    assert _steps(run) == before


def test_cluster_section_is_validated_and_changes_no_hash(tmp_path):
    from benchmarks.config import RecipeError, validate_recipe

    base = {"name": "t", "stages": ["demos", "generation"], "generation": {"tasks": [0]}}
    local = validate_recipe(base)
    ray = validate_recipe(base | {"cluster": {"backend": "ray", "address": "auto"}})
    assert local.cluster.backend == "local" and ray.cluster.address == "auto"
    assert ray.resolved()["cluster"]["backend"] == "ray"  # written to the run folder
    assert local.generation == ray.generation and local.demos == ray.demos
    from benchmarks.plan import plan

    assert plan(ray, ["demos"])[0].startswith("cluster     Ray (auto)")
    assert not plan(local, ["demos"])[0].startswith("cluster")
    with pytest.raises(RecipeError, match="cluster.backend"):
        validate_recipe(base | {"cluster": {"backend": "slurm"}})
    with pytest.raises(RecipeError, match="cluster.adress: unknown key; allowed keys here"):
        validate_recipe(base | {"cluster": {"adress": "auto"}})


def test_local_executor_runs_in_order_and_resolves_handles():
    from generation.executor import LocalExecutor

    ex, calls = LocalExecutor(), []

    def job(name, *after):
        calls.append((name, after))
        return name

    a = ex.submit(job, "a")
    b = ex.submit(job, "b", a, num_cpus=2)
    assert ex.get([a, b]) == ["a", "b"]
    assert calls == [("a", ()), ("b", ("a",))]  # run at submission, handles passed as values


def test_a_one_machine_ray_runs_its_workers_at_normal_priority(monkeypatch):
    """The Ray that ``dlr`` starts itself (no address) gets ``num_cpus`` and workers at nice 0
    (Ray's default is 15: on a shared host its env workers would lose the CPU); joining a
    cluster passes neither; a Ray already connected is kept."""
    from types import SimpleNamespace

    from generation import executor as ex

    calls = []
    fake = SimpleNamespace(
        connected=False,
        is_initialized=lambda: fake.connected,
        init=lambda **kw: calls.append(kw) or setattr(fake, "connected", True),
        shutdown=lambda: setattr(fake, "connected", False),
        cluster_resources=dict,
        remote=lambda fn: fn,
    )
    monkeypatch.setattr(ex, "ray_module", lambda: fake)
    for cluster in (ex.ClusterConfig(backend="ray", num_cpus=2),
                    ex.ClusterConfig(backend="ray", address="auto")):  # fmt: skip
        with ex.executor_session(cluster) as executor:
            assert isinstance(executor, ex.RayExecutor) and fake.connected
        assert not fake.connected  # disconnected after the block
    own, joined = calls
    assert own["address"] is None and own["num_cpus"] == 2
    assert own["_system_config"] == {"worker_niceness": 0}
    assert joined["address"] == "auto" and "_system_config" not in joined
    fake.connected = True  # already connected: kept as it is
    with ex.executor_session(ex.ClusterConfig(backend="ray")):
        pass
    assert fake.connected and len(calls) == 2
