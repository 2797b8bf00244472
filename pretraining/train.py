"""One Accelerate training loop for every VLA architecture (supervised fine-tuning on datasets).

Runs unchanged on a CPU, one GPU, or under a launcher (``torchrun``, ``accelerate launch``) on
several GPUs or CPU processes (``pretraining.distributed``). Reads in order:
config -> skip/resume decision -> data -> policy + processors -> optimiser and warm-up/cosine
schedule -> loop (forward, finite-loss check, backward with accumulation, clipping, step, log,
checkpoint) -> final ``save_pretrained`` checkpoint + manifest. DLR and O2O pretraining runs
differ only in ``dataset_roots``: the step budget, batch and schedule are fixed by the config.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from lerobot.policies.factory import make_policy, make_pre_post_processors
from torch.optim.lr_scheduler import LambdaLR
from tqdm.auto import tqdm

from generation.manifest import config_hash, publish_dir, read_manifest
from generation.manifest import update_manifest as write_manifest
from pretraining.data import load_mixture, make_loader
from pretraining.distributed import check_launcher, check_world_size, launcher_world_size, use_cpu
from pretraining.factory import PRESETS, canonical_arch, count_parameters, make_config
from pretraining.lora import apply_lora, load_weights, save_adapter_meta, save_lora_base

logger = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
TRAIN_STATE = "train_state.json"
LOG_CSV = "train_log.csv"
CSV_FIELDS = ["step", "loss", "lr", "grad_norm", "samples_per_s", "data_time_share", "elapsed_s"]
# Fields that do not change what is trained (left out of the config hash).
_NOT_HASHED = {
    "output_dir",
    "save_every",
    "log_every",
    "num_workers",
    "wandb",
    "stop_after",
}


WANDB_KEYS = ("project", "entity", "name", "group", "tags", "notes", "mode", "dir")


def _check_wandb(options: dict[str, Any]) -> None:
    """A bad ``wandb`` setting fails before any work, naming the key and the fix."""
    unknown = sorted(set(options) - set(WANDB_KEYS))
    if unknown:
        raise ValueError(f"pretraining.wandb: unknown key(s) {unknown}; valid: {list(WANDB_KEYS)}")
    if not options.get("project"):
        raise ValueError("pretraining.wandb needs a project, e.g. {project: dlr-bench}")
    try:
        import wandb  # noqa: F401
    except ImportError as e:
        raise ValueError(
            "pretraining.wandb is set but wandb is not installed: `pip install wandb`, or drop "
            "pretraining.wandb"
        ) from e


def _trackers(cfg: PretrainConfig) -> list:
    """TensorBoard always; Weights & Biases when ``cfg.wandb`` is set."""
    if cfg.wandb is None:
        return ["tensorboard"]
    from accelerate.tracking import WandBTracker

    options = dict(cfg.wandb)
    return ["tensorboard", WandBTracker(options.pop("project"), **options)]


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


@dataclass
class PretrainConfig:
    """Everything that defines one pretraining run (a recipe builds this).

    ``steps`` counts optimiser steps; one step sees ``batch_size * grad_accum`` frames however
    many processes train: under a launcher each of W processes takes ``batch_size / W`` of
    every micro-batch (the same frames a single process would take), so a config means one
    experiment on any number of GPUs. ``policy_overrides`` sets any field of the
    architecture's lerobot config.
    ``stop_after`` stops after that many steps as if the run were killed (resume tests).
    ``wandb`` (off by default) also logs to Weights & Biases: ``wandb.init`` arguments among
    :data:`WANDB_KEYS`, ``project`` required, e.g. ``{"project": "dlr-bench", "mode": "offline"}``.
    """

    arch: str = "openvla"
    preset: str = "tiny"
    dataset_roots: list[str] = field(default_factory=list)
    output_dir: str = "runs/pretraining"
    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    grad_accum: int = 1
    mixed_precision: str = "no"
    seed: int = 0
    image_size: int | None = None
    save_every: int = 500
    log_every: int = 10
    num_workers: int = 2
    vision_pretrained_path: str | None = None
    lm_pretrained_path: str | None = None
    policy_overrides: dict[str, Any] = field(default_factory=dict)
    wandb: dict[str, Any] | None = None
    stop_after: int | None = None
    init_from: str | None = None  # a checkpoint to start from (adaptation of a pretrained policy)
    lora: dict[str, Any] | None = None  # LoRA instead of full fine-tuning: see pretraining.lora
    # config hashes of the steps this run is built from (``dataset``, ``base``): chained freshness
    upstream: dict[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        arch = canonical_arch(self.arch)
        if self.preset not in PRESETS[arch]:
            raise ValueError(f"Unknown preset {self.preset!r}; valid: {sorted(PRESETS[arch])}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(
                f"mixed_precision must be no, fp16 or bf16, not {self.mixed_precision!r}"
            )
        for name in ("steps", "batch_size", "grad_accum", "save_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        self.dataset_roots = [str(r) for r in self.dataset_roots]
        if self.wandb is not None:
            _check_wandb(self.wandb)

    def hash(self) -> str:
        skip = _NOT_HASHED | ({"init_from"} if "base" in self.upstream else set())
        return config_hash({k: v for k, v in asdict(self).items() if k not in skip})

    def portable(self) -> dict[str, Any]:
        """The config with paths relative to the output folder: a published manifest names
        no host folder."""
        out = Path(self.output_dir).resolve()

        def rel(p: str | None) -> str | None:
            return None if p is None or not Path(p).is_absolute() else os.path.relpath(p, out)

        cfg = asdict(self)
        for key in ("init_from", "vision_pretrained_path", "lm_pretrained_path"):
            cfg[key] = rel(cfg[key]) or cfg[key]
        cfg["dataset_roots"] = [rel(r) or r for r in cfg["dataset_roots"]]
        cfg["output_dir"] = "."
        return cfg


def lr_lambda(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up to the peak, then cosine decay to ``min_ratio`` of it."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def forward_loss(model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict]:
    """One forward pass; a module-level function so tests can inject failures."""
    return model(batch)


def _latest_checkpoint(out_dir: Path) -> Path | None:
    ckpts = sorted((out_dir / CHECKPOINTS).glob("step_*"), key=lambda p: int(p.name[5:]))
    return ckpts[-1] if ckpts else None


def _save_checkpoint(accelerator: Accelerator, out_dir: Path, step: int, micro: int) -> Path:
    """accelerate state (model, optimizer, scheduler, RNG) + data position, then rename."""
    root = out_dir / CHECKPOINTS
    tmp, final = root / f".tmp_step_{step}", root / f"step_{step}"
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()  # every process's RNG state is in tmp before the rename
    if accelerator.is_main_process:
        (tmp / TRAIN_STATE).write_text(json.dumps({"step": step, "micro_batches": micro}))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        for old in root.glob("step_*"):
            if old != final:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def _open_csv(out_dir: Path, start_step: int) -> None:
    """Keep rows up to ``start_step`` (a resumed run rewrites the steps after it)."""
    path = out_dir / LOG_CSV
    rows = []
    if path.exists() and start_step > 0:
        with path.open() as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= start_step]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def _append_csv(out_dir: Path, row: dict[str, float]) -> None:
    with (out_dir / LOG_CSV).open("a", newline="") as f:
        csv.DictWriter(f, fieldnames=CSV_FIELDS).writerow(row)


def _check_existing(cfg: PretrainConfig, out_dir: Path) -> bool:
    """True when a complete run of this config exists; raise if the folder holds another one."""
    manifest = read_manifest(out_dir)
    if manifest is None:
        return False
    if manifest.get("config_hash") != cfg.hash():
        raise ValueError(
            f"{out_dir} holds a pretraining run of another config (hash "
            f"{manifest.get('config_hash')} != {cfg.hash()}); remove it or pick another output_dir"
        )
    return manifest.get("status") == "complete"


def train(cfg: PretrainConfig) -> Path:
    """Train (or resume, or skip) the run described by ``cfg``; return its output folder."""
    out_dir = Path(cfg.output_dir)
    check_launcher()
    world = launcher_world_size()
    if cfg.batch_size % world:
        raise ValueError(
            f"batch_size {cfg.batch_size} (the global batch) does not split over {world} "
            f"processes: make it a multiple of {world} or launch another number of processes"
        )
    if _check_existing(cfg, out_dir):
        logger.info("Skipping pretraining: %s is complete for config %s", out_dir, cfg.hash())
        return out_dir
    accelerator = Accelerator(
        cpu=use_cpu(), mixed_precision=cfg.mixed_precision, log_with=_trackers(cfg),
        project_dir=str(out_dir),
    )  # fmt: skip
    check_world_size(accelerator.num_processes)
    batch_per_process = cfg.batch_size // accelerator.num_processes
    device = accelerator.device  # lerobot takes "cuda:1" but not "cpu:0" (a CPU process group's)
    device = str(device) if device.type == "cuda" else device.type
    # each process its own noise (pi0/smolvla flow times); DDP gives all rank 0's initial weights
    set_seed(cfg.seed, device_specific=True)

    policy_cfg = make_config(
        cfg.arch,
        cfg.preset,
        image_size=cfg.image_size,
        vision_pretrained_path=cfg.vision_pretrained_path,
        lm_pretrained_path=cfg.lm_pretrained_path,
        device=device,
        **cfg.policy_overrides,
    )
    dataset, meta, stats = load_mixture(cfg.dataset_roots, policy_cfg)
    policy = make_policy(policy_cfg, ds_meta=meta)
    if cfg.init_from:
        load_weights(policy, cfg.init_from)
    if cfg.lora is not None:
        base_dir = save_lora_base(policy, cfg, out_dir, accelerator.is_main_process)
        policy = apply_lora(policy, cfg.lora, base_dir)
    preprocessor, postprocessor = make_pre_post_processors(policy_cfg, dataset_stats=stats)
    n_params = count_parameters(policy)
    params = [p for p in policy.parameters() if p.requires_grad]
    # the policy config's preset (as lerobot's trainer); the run's lr is the peak of its schedule
    optim_cfg = replace(policy_cfg.get_optimizer_preset(), lr=cfg.lr)
    optimizer = optim_cfg.build(params)
    scheduler = LambdaLR(
        optimizer, lambda s: lr_lambda(s, cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio)
    )
    model, optimizer = accelerator.prepare(policy, optimizer)
    accelerator.register_for_checkpointing(scheduler)  # stepped once per optimiser step

    start_step, micro, wall_before = 0, 0, 0.0
    ckpt = _latest_checkpoint(out_dir)
    if ckpt is not None:
        accelerator.load_state(str(ckpt))
        state = json.loads((ckpt / TRAIN_STATE).read_text())
        start_step, micro = state["step"], state["micro_batches"]
        wall_before = float((read_manifest(out_dir) or {}).get("wall_time_s", 0.0))
        logger.info("Resuming %s from step %d (%s)", out_dir, start_step, ckpt)
    loader = make_loader(
        dataset, batch_per_process, cfg.seed, cfg.num_workers, start=micro,
        rank=accelerator.process_index, world_size=accelerator.num_processes,
    )  # fmt: skip

    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        _open_csv(out_dir, start_step)
        write_manifest(
            out_dir, status="running", config=cfg.portable(), config_hash=cfg.hash(),
            optimizer={"type": optim_cfg.type, **asdict(optim_cfg)},
            policy_type=policy_cfg.type, num_parameters=n_params, seed=cfg.seed,
            datasets=cfg.portable()["dataset_roots"], steps_done=start_step, wall_time_s=wall_before,
            num_processes=accelerator.num_processes, batch_per_process=batch_per_process,
            distributed_type=str(accelerator.distributed_type),
        )  # fmt: skip
    accelerator.init_trackers("pretrain")
    if cfg.wandb is not None:  # TensorBoard's hparams take scalars only: the config goes to W&B
        accelerator.get_tracker("wandb").store_init_configuration(asdict(cfg))
    logger.info("Training %s/%s (%.2fM params) for %d steps on %s x %d", cfg.arch, cfg.preset,
                n_params / 1e6, cfg.steps, accelerator.device, accelerator.num_processes)  # fmt: skip

    t_start = time.perf_counter()
    step, data_time, window_start = start_step, 0.0, time.perf_counter()
    last_loss = float("nan")
    data_iter = iter(loader)
    progress = tqdm(total=cfg.steps, initial=start_step, disable=not accelerator.is_main_process,
                    desc=f"pretrain {cfg.arch}")  # fmt: skip
    model.train()
    try:
        while step < cfg.steps:
            step_loss = torch.zeros((), device=accelerator.device)
            for i in range(cfg.grad_accum):
                t_data = time.perf_counter()
                batch = preprocessor(next(data_iter))
                data_time += time.perf_counter() - t_data
                micro += 1
                sync = i == cfg.grad_accum - 1
                ctx = contextlib.nullcontext() if sync else accelerator.no_sync(model)
                with ctx:
                    with accelerator.autocast():
                        loss, _ = forward_loss(model, batch)
                    if not torch.isfinite(accelerator.reduce(loss.detach(), "mean")):
                        raise NonFiniteLossError(
                            f"Non-finite loss ({loss.item()}) at step {step + 1}; stopped. Last good "
                            f"checkpoint: {_latest_checkpoint(out_dir) or 'none (no step saved yet)'}"
                        )
                    accelerator.backward(loss / cfg.grad_accum)
                step_loss += loss.detach() / cfg.grad_accum
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), optim_cfg.grad_clip_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            last_loss = accelerator.reduce(step_loss, "mean").item()
            progress.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                elapsed = time.perf_counter() - window_start
                n_steps = cfg.log_every if step % cfg.log_every == 0 else step % cfg.log_every
                frames = n_steps * cfg.batch_size * cfg.grad_accum
                row = {
                    "step": step, "loss": last_loss, "lr": scheduler.get_last_lr()[0],
                    "grad_norm": float(grad_norm), "samples_per_s": frames / max(elapsed, 1e-9),
                    "data_time_share": data_time / max(elapsed, 1e-9),
                    "elapsed_s": wall_before + time.perf_counter() - t_start,
                }  # fmt: skip
                accelerator.log({f"train/{k}": v for k, v in row.items() if k != "step"}, step=step)
                if accelerator.is_main_process:
                    _append_csv(out_dir, row)
                progress.set_postfix(loss=f"{last_loss:.4f}")
                data_time, window_start = 0.0, time.perf_counter()
            if step % cfg.save_every == 0 and step < cfg.steps:
                _save_checkpoint(accelerator, out_dir, step, micro)
                if accelerator.is_main_process:
                    write_manifest(out_dir, steps_done=step,
                                   wall_time_s=wall_before + time.perf_counter() - t_start)  # fmt: skip
            if cfg.stop_after is not None and step >= cfg.stop_after and step < cfg.steps:
                logger.warning(
                    "Stopping at step %d (stop_after); resume by calling train again", step
                )
                return out_dir
    except NonFiniteLossError as err:
        if accelerator.is_main_process:
            write_manifest(out_dir, status="failed", error=str(err), steps_done=step)
        raise
    finally:
        progress.close()
        for tracker in accelerator.trackers:  # not end_training(): it ends the process group
            tracker.finish()

    _save_checkpoint(accelerator, out_dir, step, micro)
    if accelerator.is_main_process:
        tmp = out_dir / ".final_tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        final = accelerator.unwrap_model(model)
        final.save_pretrained(tmp)
        if cfg.lora is not None:  # an adapter alone: record its policy config and base beside it
            save_adapter_meta(final, policy_cfg, tmp)
        preprocessor.save_pretrained(tmp)
        postprocessor.save_pretrained(tmp)
        publish_dir(tmp, out_dir)
        write_manifest(
            out_dir, status="complete", steps_done=step, final_loss=last_loss,
            wall_time_s=wall_before + time.perf_counter() - t_start,
        )  # fmt: skip
    accelerator.wait_for_everyone()
    logger.info("Pretraining done: %s (final loss %.4f)", out_dir, last_loss)
    return out_dir
