"""Training under a launcher: a real 2-process world, one writer, the same run as 1 process."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
ACCELERATE = Path(sys.executable).parent / "accelerate"
LAUNCH_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT",
              "ACCELERATE_USE_CPU", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")  # fmt: skip


@pytest.fixture
def no_launcher(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in LAUNCH_ENV:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_accelerate_cpu_launch_of_one_process_is_refused(no_launcher) -> None:
    """The environment accelerate's own simple launcher gives its one process for
    ``--cpu --num_processes 2`` is refused; a real launcher's is accepted."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_simple_launcher_cmd_env

    from pretraining.distributed import check_launcher, launcher_world_size, use_cpu

    args = launch_command_parser().parse_args(["--cpu", "--num_processes", "2", "x.py"])
    _, env = prepare_simple_launcher_cmd_env(_validate_launch_command(args)[0])
    for var in LAUNCH_ENV:
        if var in env:
            no_launcher.setenv(var, env[var])
    assert launcher_world_size() == 1  # accelerate started one process
    with pytest.raises(RuntimeError, match="started one process.*--multi_gpu"):
        check_launcher()
    no_launcher.setenv("WORLD_SIZE", "2")
    check_launcher()
    assert use_cpu()


def test_dlr_train_refuses_a_one_process_cpu_launch_before_any_work(
    no_launcher, tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from benchmarks.cli import main

    recipe = _recipe(tmp_path, tiny_dataset, ["pretraining"])
    no_launcher.setenv("ACCELERATE_USE_CPU", "True")  # accelerate launch --cpu --num_processes 2
    no_launcher.setenv("MASTER_ADDR", "127.0.0.1")
    assert main(["train", str(recipe), "--stage", "pretraining"]) == 2
    assert "started one process" in capsys.readouterr().err
    assert not (tmp_path / "run" / "pretraining").exists()
    assert not (tmp_path / "run" / "recipe.yaml").exists()


def test_use_cpu_only_for_several_processes_without_an_accelerator(no_launcher) -> None:
    from pretraining.distributed import check_world_size, use_cpu

    assert not use_cpu()  # single process: Accelerate's default, unchanged
    no_launcher.setenv("WORLD_SIZE", "2")
    assert use_cpu() == (not torch.accelerator.is_available())
    check_world_size(2)
    with pytest.raises(RuntimeError, match="started 2 processes but Accelerate joined 1"):
        check_world_size(1)


def test_batch_that_does_not_split_over_the_processes_fails_before_work(
    no_launcher, tiny_dataset: Path, tmp_path: Path
) -> None:
    from pretraining.train import PretrainConfig, train

    no_launcher.setenv("WORLD_SIZE", "3")
    cfg = PretrainConfig(arch="openvla", dataset_roots=[str(tiny_dataset)],
                         output_dir=str(tmp_path / "out"), batch_size=8)  # fmt: skip
    with pytest.raises(ValueError, match="batch_size 8 .* does not split over 3 processes"):
        train(cfg)
    assert not (tmp_path / "out").exists()


def test_process_shards_together_are_the_single_process_batch() -> None:
    """Global batch semantics: W ranks with batch B/W take exactly the frames of batch B."""
    from pretraining.data import ResumableBatchSampler

    single = ResumableBatchSampler(50, 8, seed=3)
    for world in (2, 4):
        ranks = [ResumableBatchSampler(50, 8 // world, 3, rank=r, world_size=world)
                 for r in range(world)]  # fmt: skip
        for micro in (0, 5, 7):  # 7 crosses an epoch boundary
            shards = [s.batch(micro) for s in ranks]
            assert sum(shards, []) == single.batch(micro)


MAIN_ONLY_SCRIPT = """
import sys
import torch.distributed as dist
from pretraining.distributed import end_processes, init_processes, on_main

init_processes()
rank = dist.get_rank()

def work():
    with open(sys.argv[1], "a") as f:
        f.write(f"{rank}\\n")
    return "made on main"

assert on_main(work) == "made on main"
try:
    on_main(lambda: 1 / 0)
except ZeroDivisionError:
    print(f"rank {rank}: ZeroDivisionError")
except RuntimeError as err:
    print(f"rank {rank}: {err}")
end_processes()
"""


def _env() -> dict[str, str]:
    """The test's environment without launcher variables, on the CPU (gloo) in any host."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_ENV}
    return env | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
                  "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip


@pytest.mark.slow
def test_main_only_work_runs_once_and_its_error_reaches_every_process(tmp_path: Path) -> None:
    """What ``dlr run`` under a launcher does with the stages that do not train."""
    script, calls = tmp_path / "main_only.py", tmp_path / "calls.txt"
    script.write_text(MAIN_ONLY_SCRIPT)
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", str(script), str(calls)]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert calls.read_text() == "0\n"
    assert "rank 0: ZeroDivisionError" in done.stdout
    assert "rank 1: the main process failed: ZeroDivisionError: division by zero" in done.stdout


def _recipe(tmp_path: Path, dataset: Path, stages: list[str]) -> Path:
    run = tmp_path / "run"
    (run / "datasets" / "dlr").mkdir(parents=True)
    (run / "datasets" / "dlr" / "full").symlink_to(dataset)
    recipe = {
        "name": "sft2", "run_dir": str(run), "stages": stages,
        "pretraining": {"archs": ["openvla"], "preset": "tiny", "sources": ["dlr"], "sizes": ["full"],
                        "steps": 3, "batch_size": 8, "warmup_steps": 1, "image_size": 32,
                        "save_every": 2, "lr": 3e-3},
    }  # fmt: skip
    path = tmp_path / "recipe.yaml"
    path.write_text(json.dumps(recipe))
    return path


def _launch(argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """``accelerate launch --multi_gpu --num_processes 2`` (torchrun underneath; without GPUs
    the processes join a gloo group), as a user runs it on a CPU-only host."""
    env = _env()
    cmd = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
           "-m", "benchmarks.cli", *argv]  # fmt: skip
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done


def _tree(out: Path) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*") if "events.out" not in p.name}


@pytest.mark.slow
def test_dlr_train_under_accelerate_launch_is_one_run_of_world_size_2(
    tiny_dataset: Path, tmp_path: Path, no_launcher
) -> None:
    """Two processes train one run: world size 2 recorded, one log without duplicate rows,
    one checkpoint, and the same files, loss and weights as one process with the same batch."""
    from safetensors.torch import load_file

    from benchmarks.runner import run_training

    recipe = _recipe(tmp_path / "two", tiny_dataset, ["pretraining"])
    _launch(["train", str(recipe), "--stage", "pretraining"], tmp_path)
    two = tmp_path / "two" / "run" / "pretraining" / "openvla" / "dlr" / "full"
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["steps_done"] == 3
    assert manifest["num_processes"] == 2 and manifest["batch_per_process"] == 4
    assert manifest["distributed_type"].endswith(("MULTI_CPU", "MULTI_GPU"))
    with (two / "train_log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [3]  # log_every 10: the last step, written once
    assert [p.name for p in (two / "checkpoints").iterdir()] == ["step_3"]
    assert {p.name for p in (two / "checkpoints" / "step_3").glob("random_states_*")} == {
        "random_states_0.pkl", "random_states_1.pkl"}  # fmt: skip

    one = run_training(_recipe(tmp_path / "one", tiny_dataset, ["pretraining"]), "pretraining")
    one = one / "openvla" / "dlr" / "full"
    single = json.loads((one / "manifest.json").read_text())
    assert single["num_processes"] == 1
    assert {**single["config"], "dataset_roots": None} == {
        **manifest["config"],
        "dataset_roots": None,
    }
    assert _tree(two) - {"checkpoints/step_3/random_states_1.pkl"} == _tree(one)
    assert manifest["final_loss"] == pytest.approx(single["final_loss"], rel=1e-5)
    with (one / "train_log.csv").open() as f:
        grad_norm = float(next(csv.DictReader(f))["grad_norm"])
    assert float(rows[0]["grad_norm"]) == pytest.approx(grad_norm, rel=1e-5)  # averaged, not summed
    # Adam divides by sqrt(v): float-order noise in tiny gradients moves a weight by << lr (3e-3)
    w1, w2 = load_file(one / "model.safetensors"), load_file(two / "model.safetensors")
    for name, tensor in w1.items():
        torch.testing.assert_close(w2[name], tensor, rtol=1e-3, atol=1e-4)
