"""GPU check of the presets: build, bf16 forward+backward, SFT throughput, bf16 vs fp32.

For each architecture at ``--preset`` one fresh process builds the policy from its config (a
preset that would load pretrained weights is reported and skipped), runs one probe
forward+backward under bf16 autocast (the Linear layers must compute in bf16 and every gradient
must be finite), then trains a fresh policy with the project's loop (``pretraining.train.train``,
Accelerate, ``mixed_precision=bf16``) on the synthetic dataset at the preset's image size. It
reports parameters, samples/s after warm-up steps, peak CUDA memory of the training run and the
loss curve (finite, and whether its tail mean is below its head mean).

For each ``--compare`` architecture, bf16 and fp32 (``mixed_precision="no"``) runs of the same
seed and data follow in interleaved rounds (order alternating): first/last loss of each, the
largest gap between the two loss curves, the bf16/fp32 throughput ratio of each round (median
and range) and peak memory. Tables are printed and written as JSON and CSV to ``--out``
(default ``$OUT``, else ``outputs/bench_gpu``). On the GPU (docs/gpu.md has the device recipe):

    python -m benchmarks.bench_gpu --preset base

On a CPU, as a smoke run of the same code:

    nice -n 15 .venv/bin/python -m benchmarks.bench_gpu --preset tiny --steps 4 --warmup 1 \\
        --batch-size 2 --num-workers 0 --rounds 1 --episodes 2 --frames 12
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import resource
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PRECISIONS = {"bf16": "bf16", "fp32": "no"}  # label -> Accelerate mixed_precision
TABLE_FIELDS = [
    "arch", "preset", "precision", "round", "params_m", "probe", "samples_per_s",
    "data_time_share", "peak_mem_mib", "peak_reserved_mib", "first_loss", "last_loss",
    "decreased", "finite", "error",
]  # fmt: skip


@dataclass
class Job:
    """One training run in a fresh process (fresh Accelerate state and CUDA peak counter)."""

    arch: str
    preset: str
    precision: str
    dataset_root: str
    steps: int
    warmup: int
    batch_size: int
    num_workers: int
    lr: float
    seed: int
    probe: bool
    round: int = 0


def weights_source(policy_cfg: Any) -> str | None:
    """Why building this config would load pretrained weights (a download if not local), or None."""
    for name in ("vision_pretrained_path", "lm_pretrained_path", "init_from"):
        if getattr(policy_cfg, name, None):
            return f"{name}={getattr(policy_cfg, name)}"
    if getattr(policy_cfg, "load_vlm_weights", False):
        return f"load_vlm_weights=True ({policy_cfg.vlm_model_name})"
    vlm = getattr(policy_cfg, "vlm_model_name", "")
    if vlm and not vlm.startswith("dlr-smolvlm-"):
        return f"vlm_model_name={vlm} (not a locally built backbone)"
    return None


def loss_summary(losses: list[float], window: int = 5) -> dict[str, Any]:
    """First/last loss, means of the first and last ``window`` steps, finite, decreased."""
    window = max(1, min(window, len(losses) // 2))
    head = statistics.fmean(losses[:window])
    tail = statistics.fmean(losses[-window:])
    return {
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "head_mean": head,
        "tail_mean": tail,
        "finite": all(math.isfinite(x) for x in losses),
        "decreased": tail < head,
    }


def curve_gap(a: list[float], b: list[float]) -> dict[str, float]:
    """Largest step-wise gap between two loss curves, absolute and relative to ``b``."""
    gaps = [abs(x - y) for x, y in zip(a, b, strict=True)]
    rel = [g / max(abs(y), 1e-12) for g, y in zip(gaps, b, strict=True)]
    return {"max_abs_gap": max(gaps), "max_rel_gap": max(rel)}


def throughput(rows: list[dict[str, str]], warmup: int, batch_size: int) -> tuple[float, float]:
    """Samples/s and data-wait share over the steps after ``warmup`` (train_log.csv, every step)."""
    timed = rows[warmup:]
    elapsed = float(rows[-1]["elapsed_s"]) - float(rows[warmup - 1]["elapsed_s"])
    share = statistics.fmean(float(r["data_time_share"]) for r in timed)
    return len(timed) * batch_size / elapsed, share


def _probe(job: Job, device: str) -> dict[str, Any]:
    """One forward+backward under bf16 autocast: dtypes seen, gradients finite, parameters."""
    import torch
    from lerobot.policies.factory import make_policy, make_pre_post_processors
    from torch.utils.data import default_collate

    from pretraining.data import load_mixture
    from pretraining.factory import count_parameters, make_config

    torch.manual_seed(job.seed)
    policy_cfg = make_config(job.arch, job.preset, device=device)
    dataset, meta, stats = load_mixture([job.dataset_root], policy_cfg)
    policy = make_policy(policy_cfg, ds_meta=meta)
    pre, _ = make_pre_post_processors(policy_cfg, dataset_stats=stats)
    batch = pre(default_collate([dataset[i] for i in range(job.batch_size)]))
    linear_dtypes: set[str] = set()
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: linear_dtypes.add(str(out.dtype)))
        for m in policy.modules()
        if isinstance(m, torch.nn.Linear)
    ]
    policy.train()
    with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16):
        loss, _ = policy(batch)
    loss.backward()
    for hook in hooks:
        hook.remove()
    trainable = [p for p in policy.parameters() if p.requires_grad]
    grads = [p.grad for p in trainable if p.grad is not None]
    result = {
        "params": count_parameters(policy),
        "param_dtypes": sorted({str(p.dtype) for p in policy.parameters()}),
        "linear_out_dtypes": sorted(linear_dtypes),
        "loss": float(loss.detach()),
        "loss_finite": bool(torch.isfinite(loss)),
        "params_without_grad": len(trainable) - len(grads),
        "grads_finite": all(bool(torch.isfinite(g).all()) for g in grads),
    }
    result["ok"] = (
        result["loss_finite"]
        and result["grads_finite"]
        and "torch.bfloat16" in result["linear_out_dtypes"]
    )
    return result


def _peak_mem_mib(device: str) -> tuple[float, float | None]:
    """Peak allocated and reserved CUDA memory; peak RSS (and None) on a CPU."""
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20, torch.cuda.max_memory_reserved() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, None


def run_job(job: Job) -> dict[str, Any]:
    """Probe (optional) then train; runs in its own process, returns one table row."""
    import torch

    from pretraining.factory import make_config
    from pretraining.train import PretrainConfig, train

    device = "cuda" if torch.cuda.is_available() else "cpu"
    row: dict[str, Any] = {"arch": job.arch, "preset": job.preset, "precision": job.precision,
                           "round": job.round}  # fmt: skip
    reason = weights_source(make_config(job.arch, job.preset))
    if reason:
        return {**row, "error": f"skipped: the preset would load pretrained weights ({reason})"}
    if job.probe:
        row["probe_detail"] = _probe(job, device)
        row["probe"] = "ok" if row["probe_detail"]["ok"] else "FAILED"
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        cfg = PretrainConfig(
            arch=job.arch, preset=job.preset, dataset_roots=[job.dataset_root],
            output_dir=str(Path(tmp) / "run"), steps=job.steps, batch_size=job.batch_size,
            lr=job.lr, warmup_steps=job.warmup, mixed_precision=PRECISIONS[job.precision],
            seed=job.seed, save_every=10**9, log_every=1, num_workers=job.num_workers,
        )  # fmt: skip
        t0 = time.perf_counter()
        run_dir = train(cfg)
        row["train_call_s"] = time.perf_counter() - t0
        with (run_dir / "train_log.csv").open() as f:
            rows = list(csv.DictReader(f))
        manifest = json.loads((run_dir / "manifest.json").read_text())
    losses = [float(r["loss"]) for r in rows]
    sps, share = throughput(rows, job.warmup, job.batch_size)
    peak, reserved = _peak_mem_mib(device)
    row.update(loss_summary(losses))
    row.update(
        params_m=manifest["num_parameters"] / 1e6, samples_per_s=sps, data_time_share=share,
        peak_mem_mib=peak, peak_reserved_mib=reserved, losses=losses,
    )  # fmt: skip
    return row


def _run_isolated(job: Job) -> dict[str, Any]:
    """``run_job`` in a fresh spawned process; a failure becomes the row's ``error``."""
    logger.info("Running %s/%s %s round %d", job.arch, job.preset, job.precision, job.round)
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        try:
            return pool.submit(run_job, job).result()
        except Exception as err:  # one failing arch must not hide the others
            logger.exception("%s/%s %s failed", job.arch, job.preset, job.precision)
            return {"arch": job.arch, "preset": job.preset, "precision": job.precision,
                    "round": job.round, "error": f"{type(err).__name__}: {err}"}  # fmt: skip


def compare_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """bf16 vs fp32 per architecture: losses of round 0, curve gap, throughput ratio per round."""
    out = []
    for arch in sorted({r["arch"] for r in rows}):
        by = {(r["precision"], r["round"]): r for r in rows if r["arch"] == arch}
        rounds = sorted({k[1] for k in by})
        if any("error" in by.get((p, n), {"error": 1}) for p in PRECISIONS for n in rounds):
            out.append({"arch": arch, "error": "a bf16 or fp32 run failed; see the runs table"})
            continue
        bf, fp = by[("bf16", rounds[0])], by[("fp32", rounds[0])]
        ratios = [
            by[("bf16", n)]["samples_per_s"] / by[("fp32", n)]["samples_per_s"] for n in rounds
        ]
        out.append({
            "arch": arch, "rounds": len(rounds),
            "bf16_first_loss": bf["first_loss"], "bf16_last_loss": bf["last_loss"],
            "fp32_first_loss": fp["first_loss"], "fp32_last_loss": fp["last_loss"],
            **curve_gap(bf["losses"], fp["losses"]),
            "sps_ratio_median": statistics.median(ratios), "sps_ratio_min": min(ratios),
            "sps_ratio_max": max(ratios),
            "bf16_peak_mem_mib": max(by[("bf16", n)]["peak_mem_mib"] for n in rounds),
            "fp32_peak_mem_mib": max(by[("fp32", n)]["peak_mem_mib"] for n in rounds),
        })  # fmt: skip
    return out


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_tables(runs: list[dict[str, Any]], compare: list[dict[str, Any]]) -> str:
    lines = [
        f"{'arch':8} {'preset':6} {'prec':5} {'rd':>2} {'params':>8} {'probe':6} {'smp/s':>8} "
        f"{'data%':>6} {'peak MiB':>9} {'loss first':>10} {'loss last':>10} {'down':5} {'finite':6}"
    ]
    for r in runs:
        if "samples_per_s" not in r:
            lines.append(f"{r['arch']:8} {r['preset']:6} {r['precision']:5} ERROR {r['error']}")
            continue
        lines.append(
            f"{r['arch']:8} {r['preset']:6} {r['precision']:5} {r['round']:>2} "
            f"{r['params_m']:7.1f}M {r.get('probe', '-'):6} {r['samples_per_s']:8.1f} "
            f"{100 * r['data_time_share']:5.1f}% {r['peak_mem_mib']:9.0f} "
            f"{r['first_loss']:10.4f} {r['last_loss']:10.4f} {r['decreased']!s:5} {r['finite']!s:6}"
        )
    if compare:
        lines += ["", f"{'arch':8} {'bf16 first/last':>17} {'fp32 first/last':>17} "
                      f"{'max gap':>12} {'bf16/fp32 smp/s':>22} {'peak MiB bf16/fp32':>19}"]  # fmt: skip
        for c in compare:
            if "error" in c:
                lines.append(f"{c['arch']:8} ERROR {c['error']}")
                continue
            lines.append(
                f"{c['arch']:8} {c['bf16_first_loss']:8.4f}/{c['bf16_last_loss']:<8.4f} "
                f"{c['fp32_first_loss']:8.4f}/{c['fp32_last_loss']:<8.4f} "
                f"{c['max_abs_gap']:6.4f} ({100 * c['max_rel_gap']:3.0f}%) "
                f"{c['sps_ratio_median']:5.2f}x [{c['sps_ratio_min']:.2f}-{c['sps_ratio_max']:.2f}]"
                f" n={c['rounds']:<3} {c['bf16_peak_mem_mib']:9.0f}/{c['fp32_peak_mem_mib']:<9.0f}"
            )
    return "\n".join(lines)


def _environment() -> dict[str, Any]:
    import accelerate
    import lerobot
    import torch
    import transformers

    env = {"torch": torch.__version__, "transformers": transformers.__version__,
           "accelerate": accelerate.__version__, "lerobot": lerobot.__version__,
           "device": "cpu", "tf32_matmul": torch.backends.cuda.matmul.allow_tf32}  # fmt: skip
    if torch.cuda.is_available():
        env["device"] = torch.cuda.get_device_name()
    return env


def write_outputs(out: Path, runs: list[dict], compare: list[dict], meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_gpu.json").write_text(
        json.dumps({"meta": meta, "runs": runs, "compare": compare}, indent=1, default=str)
    )
    with (out / "bench_gpu_runs.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=TABLE_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(runs)
    if compare:
        fields = sorted({k for c in compare for k in c}, key=lambda k: (k != "arch", k))
        with (out / "bench_gpu_compare.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(compare)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["openvla", "pi0", "smolvla"])
    parser.add_argument("--preset", default="base")
    parser.add_argument("--compare", nargs="*", default=["pi0"], help="archs for bf16 vs fp32")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved bf16/fp32 rounds")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=10, help="steps left out of the timing")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--out", default=os.environ.get("OUT") or "outputs/bench_gpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from pretraining.factory import list_archs, list_presets, make_config

    for arch in [*args.archs, *args.compare]:
        if arch not in list_archs() or args.preset not in list_presets(arch):
            parser.error(f"--archs/--compare {arch!r} at --preset {args.preset!r}: valid archs "
                         f"{list_archs()}, presets {list_presets(arch) if arch in list_archs() else '?'}")  # fmt: skip
    if args.compare and args.rounds < 1:
        parser.error(f"--rounds must be >= 1 when --compare is given, got {args.rounds}")
    if not 1 <= args.warmup < args.steps:
        parser.error(f"--warmup must be in [1, --steps), got {args.warmup} with {args.steps} steps")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # an accidental download fails instead of running
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from pretraining.synthetic import make_synthetic_dataset

    out = Path(args.out)
    meta = {"args": vars(args), "env": _environment()}
    runs: list[dict[str, Any]] = []
    compare_runs: list[dict[str, Any]] = []
    common = dict(preset=args.preset, steps=args.steps, warmup=args.warmup,
                  batch_size=args.batch_size, num_workers=args.num_workers, lr=args.lr,
                  seed=args.seed)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench_gpu_data_") as tmp:
        roots: dict[int, str] = {}

        def root_for(arch: str) -> str:
            size = int(make_config(arch, args.preset).image_size)
            if size not in roots:
                path = Path(tmp) / f"synthetic_{size}"
                roots[size] = str(make_synthetic_dataset(
                    path, episodes=args.episodes, frames=args.frames, image_size=size,
                    seed=args.seed,
                ))  # fmt: skip
            return roots[size]

        for arch in args.archs:
            job = Job(
                arch=arch, precision="bf16", dataset_root=root_for(arch), probe=True, **common
            )
            runs.append(_run_isolated(job))
            write_outputs(out, runs, [], meta)
        for arch in args.compare:
            for rnd in range(args.rounds):
                order = ["bf16", "fp32"] if rnd % 2 == 0 else ["fp32", "bf16"]
                for precision in order:
                    job = Job(arch=arch, precision=precision, dataset_root=root_for(arch),
                              probe=False, round=rnd, **common)  # fmt: skip
                    compare_runs.append(_run_isolated(job))
                    write_outputs(out, runs + compare_runs, [], meta)
    compare = compare_rows(compare_runs)
    all_runs = runs + compare_runs
    write_outputs(out, all_runs, compare, meta)
    print(f"{meta['env']}\nbatch {args.batch_size}, {args.steps} steps ({args.warmup} warm-up "
          f"steps untimed), lr {args.lr}, {args.num_workers} workers, seed {args.seed}")  # fmt: skip
    print(format_tables(all_runs, compare))
    print(f"Wrote {out}/bench_gpu.json, bench_gpu_runs.csv, bench_gpu_compare.csv")
    failed = [r for r in all_runs if "error" in r or r.get("probe") == "FAILED"]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
