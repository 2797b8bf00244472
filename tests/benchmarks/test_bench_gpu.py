"""benchmarks/bench_gpu.py: its summaries, its weight-download guard, and a tiny CPU run."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import bench_gpu


def test_loss_summary_flags_decrease_and_non_finite() -> None:
    down = bench_gpu.loss_summary([4.0, 3.0, 2.0, 1.0], window=2)
    assert down["first_loss"] == 4.0 and down["last_loss"] == 1.0
    assert down["head_mean"] == 3.5 and down["tail_mean"] == 1.5
    assert down["decreased"] and down["finite"]
    flat = bench_gpu.loss_summary([1.0, 2.0, math.nan, 1.0], window=2)
    assert not flat["finite"] and not flat["decreased"]


def test_curve_gap_and_throughput() -> None:
    gap = bench_gpu.curve_gap([1.0, 2.0, 3.0], [1.0, 2.5, 3.0])
    assert gap == {"max_abs_gap": 0.5, "max_rel_gap": 0.2}
    rows = [{"elapsed_s": str(t), "data_time_share": str(s)}
            for t, s in [(10.0, 0.9), (11.0, 0.1), (13.0, 0.3)]]  # fmt: skip
    sps, share = bench_gpu.throughput(rows, warmup=1, batch_size=4)
    assert sps == pytest.approx(8 / 3.0) and share == pytest.approx(0.2)


def test_compare_rows_ratio_per_round_and_failed_run() -> None:
    def row(precision: str, rnd: int, sps: float) -> dict:
        return {"arch": "pi0", "preset": "base", "precision": precision, "round": rnd,
                "samples_per_s": sps, "params_m": 1.0, "data_time_share": 0.1, "decreased": True,
                "finite": True, "first_loss": 2.0, "last_loss": 1.0, "losses": [2.0, 1.0],
                "peak_mem_mib": 100.0 if precision == "bf16" else 150.0}  # fmt: skip

    rows = [row("bf16", 0, 30.0), row("fp32", 0, 10.0), row("fp32", 1, 10.0), row("bf16", 1, 20.0)]
    (cmp,) = bench_gpu.compare_rows(rows)
    assert cmp["rounds"] == 2 and cmp["sps_ratio_median"] == 2.5
    assert (cmp["sps_ratio_min"], cmp["sps_ratio_max"]) == (2.0, 3.0)
    assert cmp["max_abs_gap"] == 0.0 and cmp["fp32_peak_mem_mib"] == 150.0
    rows[1] = {"arch": "pi0", "preset": "base", "precision": "fp32", "round": 0, "error": "boom"}
    assert "error" in bench_gpu.compare_rows(rows)[0]
    assert "ERROR" in bench_gpu.format_tables(rows, bench_gpu.compare_rows(rows))


@pytest.mark.parametrize("arch", ["openvla", "pi0", "smolvla"])
def test_base_presets_load_no_weights_but_pretrained_paths_are_caught(arch: str) -> None:
    from pretraining.factory import make_config

    assert bench_gpu.weights_source(make_config(arch, "base")) is None
    if arch == "smolvla":
        cfg = make_config(arch, "base", vlm_model_name="HuggingFaceTB/SmolVLM2-500M-Video-Instruct")
    else:
        cfg = make_config(arch, "base", lm_pretrained_path="/models/llama")
    assert bench_gpu.weights_source(cfg) is not None


def test_bad_arguments_fail_before_any_work(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench_gpu.main(["--archs", "nope"])
    assert "valid archs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_gpu.main(["--steps", "5", "--warmup", "5"])


@pytest.mark.slow
def test_tiny_cpu_run_writes_tables(tmp_path) -> None:
    code = bench_gpu.main([
        "--archs", "openvla", "--preset", "tiny", "--compare", "--steps", "3", "--warmup", "1",
        "--batch-size", "2", "--num-workers", "0", "--episodes", "2", "--frames", "8",
        "--out", str(tmp_path),
    ])  # fmt: skip
    result = json.loads((tmp_path / "bench_gpu.json").read_text())
    (run,) = result["runs"]
    assert code == 0 and "error" not in run, run
    assert run["probe"] == "ok" and "torch.bfloat16" in run["probe_detail"]["linear_out_dtypes"]
    assert run["finite"] and len(run["losses"]) == 3 and run["samples_per_s"] > 0
    assert run["params_m"] * 1e6 == pytest.approx(run["probe_detail"]["params"])
    assert (tmp_path / "bench_gpu_runs.csv").read_text().startswith("arch,preset,precision")
