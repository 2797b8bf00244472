"""SFT throughput of our pretraining loop vs lerobot's training step, per architecture preset.

For each architecture, one fresh process trains the same policy config on the same dataset with
the same batch size twice: (1) ``pretraining.train.train`` and (2) the loop of
``lerobot-train`` (lerobot's dataset + DataLoader, ``accelerator.prepare`` and its
``update_policy`` step function). It prints samples/s of both (after warm-up steps), the share
of step time spent waiting for data, and the process's peak memory (CUDA peak allocation on a
GPU, peak RSS on CPU). Runs on CPU with tiny presets by default:

    .venv/bin/python -m benchmarks.bench_pretraining --archs openvla pi0 smolvla --steps 30
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import os
import resource
import tempfile
import time
from itertools import cycle
from pathlib import Path


def _lerobot_loop(arch: str, preset: str, root: Path, args: argparse.Namespace) -> dict:
    import torch
    from accelerate import Accelerator
    from lerobot.datasets import LeRobotDataset
    from lerobot.datasets.factory import resolve_delta_timestamps
    from lerobot.policies.factory import make_policy, make_pre_post_processors
    from lerobot.scripts.lerobot_train import update_policy
    from lerobot.utils.logging_utils import AverageMeter, MetricsTracker

    from pretraining.factory import make_config

    torch.manual_seed(0)
    accelerator = Accelerator(step_scheduler_with_optimizer=False)
    cfg = make_config(arch, preset, image_size=args.image_size, device=str(accelerator.device))
    meta_ds = LeRobotDataset(f"local/{root.name}", root=root, video_backend="pyav")
    delta = resolve_delta_timestamps(cfg, meta_ds.meta)
    dataset = LeRobotDataset(
        f"local/{root.name}", root=root, video_backend="pyav", delta_timestamps=delta
    )
    policy = make_policy(cfg, ds_meta=dataset.meta)
    pre, _ = make_pre_post_processors(cfg, dataset_stats=dataset.meta.stats)
    optimizer = cfg.get_optimizer_preset().build(policy.get_optim_params())
    scheduler = cfg.get_scheduler_preset().build(optimizer, args.warmup + args.steps)
    loader = torch.utils.data.DataLoader(
        dataset,
        num_workers=args.num_workers,
        batch_size=args.batch_size,
        shuffle=True,
        pin_memory=accelerator.device.type == "cuda",
        drop_last=False,
        prefetch_factor=2 if args.num_workers > 0 else None,
    )
    policy, optimizer, loader, scheduler = accelerator.prepare(policy, optimizer, loader, scheduler)
    metrics = {
        k: AverageMeter(k, ":.3f")
        for k in ("loss", "grad_norm", "lr", "update_s", "dataloading_s", "samples_per_s")
    }
    tracker = MetricsTracker(
        args.batch_size, dataset.num_frames, dataset.num_episodes, metrics, accelerator=accelerator
    )
    it = cycle(loader)
    policy.train()
    data_time, t_start = 0.0, 0.0
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            data_time, t_start = 0.0, time.perf_counter()
        t0 = time.perf_counter()
        batch = pre(next(it))
        data_time += time.perf_counter() - t0
        tracker, _ = update_policy(
            tracker, policy, batch, optimizer, cfg.optimizer_grad_clip_norm, accelerator, scheduler
        )
    elapsed = time.perf_counter() - t_start
    return {"sps": args.steps * args.batch_size / elapsed, "data_share": data_time / elapsed}


def _our_loop(arch: str, preset: str, root: Path, args: argparse.Namespace, out: Path) -> dict:
    from pretraining.train import PretrainConfig, train

    cfg = PretrainConfig(
        arch=arch,
        preset=preset,
        dataset_roots=[str(root)],
        output_dir=str(out),
        steps=args.warmup + args.steps,
        batch_size=args.batch_size,
        warmup_steps=1,
        image_size=args.image_size,
        save_every=10**9,
        log_every=1,
        num_workers=args.num_workers,
    )
    run_dir = train(cfg)
    with (run_dir / "train_log.csv").open() as f:
        rows = list(csv.DictReader(f))
    timed = rows[args.warmup :]
    elapsed = float(rows[-1]["elapsed_s"]) - float(rows[args.warmup - 1]["elapsed_s"])
    share = sum(float(r["data_time_share"]) for r in timed) / len(timed)
    return {"sps": args.steps * args.batch_size / elapsed, "data_share": share}


def _measure(arch: str, preset: str, root: str, args: argparse.Namespace, queue) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        ours = _our_loop(arch, preset, Path(root), args, Path(tmp) / "run")
    theirs = _lerobot_loop(arch, preset, Path(root), args)
    if torch.cuda.is_available():
        peak = torch.cuda.max_memory_allocated() / 2**20
        kind = "cuda"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        kind = "rss"
    from pretraining.factory import count_parameters, make_config

    params = None
    if preset == "tiny":
        from lerobot.datasets import LeRobotDatasetMetadata
        from lerobot.policies.factory import make_policy

        meta = LeRobotDatasetMetadata(f"local/{Path(root).name}", root=root)
        cfg = make_config(arch, preset, image_size=args.image_size, device="cpu")
        params = count_parameters(make_policy(cfg, ds_meta=meta))
    queue.put(dict(arch=arch, preset=preset, ours=ours, lerobot=theirs, peak_mb=peak,
                   mem_kind=kind, params=params))  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["openvla", "pi0", "smolvla"])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from pretraining.synthetic import make_synthetic_dataset

    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        root = make_synthetic_dataset(
            Path(tmp) / "bench", episodes=args.episodes, frames=40, image_size=args.image_size
        )
        results = []
        for arch in args.archs:
            queue = ctx.Queue()
            proc = ctx.Process(target=_measure, args=(arch, args.preset, str(root), args, queue))
            proc.start()
            results.append(queue.get())
            proc.join()
    header = (
        f"{'arch':9} {'preset':6} {'params':>8} {'ours smp/s':>10} {'lerobot smp/s':>13} "
        f"{'speedup':>7} {'data% ours':>10} {'data% lerobot':>13} {'peak MB':>9}"
    )
    print(f"batch {args.batch_size}, {args.steps} timed steps after {args.warmup} warm-up, "
          f"{args.num_workers} workers, image {args.image_size}px")  # fmt: skip
    print(header)
    for r in results:
        params = f"{r['params'] / 1e6:.2f}M" if r["params"] else "-"
        print(
            f"{r['arch']:9} {r['preset']:6} {params:>8} {r['ours']['sps']:10.1f} "
            f"{r['lerobot']['sps']:13.1f} {r['ours']['sps'] / r['lerobot']['sps']:6.2f}x "
            f"{100 * r['ours']['data_share']:9.1f}% {100 * r['lerobot']['data_share']:12.1f}% "
            f"{r['peak_mb']:8.0f} ({r['mem_kind']})"
        )


if __name__ == "__main__":
    main()
