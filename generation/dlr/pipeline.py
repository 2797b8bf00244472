"""The DLR generator end to end, per task:

    demos -> discover (VAE patterns) -> learn (BC: pi(a|s,z) and pi(a|s))
          -> reinforce (PPO: dlr per pattern, o2o, optionally mi) -> rollouts (successes)
then, over all tasks: matched-size LeRobot datasets per source and the diversity table.

Run folder (ARCHITECTURE.md): ``generation/<suite>/<index>/{demos,discover,learn,
reinforce/<dlr|o2o|mi>/pattern_<k>,rollouts/<source>}`` and ``datasets/<source>/{full,n<size>}``,
every step with a manifest.json; completed steps are skipped, PPO resumes from checkpoints.
Budgets: each DLR pattern gets ``env_steps_per_pattern``; O2O and MI get K times that, the
same total as DLR's K patterns together.
"""

from __future__ import annotations

import logging
import math
import pickle
import time
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from generation.data.episode import Episode
from generation.dlr import datasets as ds
from generation.dlr.discover import Discovery, VAEConfig, discover, label_report
from generation.dlr.diversity import diversity_ratios, diversity_table
from generation.dlr.features import feature_spec
from generation.dlr.learn import BCConfig, behaviour_clone, pattern_separation
from generation.dlr.mi import MIBonus, MIConfig
from generation.dlr.policy import load_policy, save_policy
from generation.dlr.ppo import PPOConfig, train_ppo
from generation.dlr.rollouts import collect, evaluate
from generation.envs import SCENE_VERSION
from generation.envs.libero_env import EnvConfig
from generation.envs.suites import DEFAULT_HORIZON, TaskSpec, parse_tasks
from generation.manifest import read_manifest, run_step

log = logging.getLogger(__name__)


class GenerationConfig(BaseModel):
    """The ``generation`` section of a recipe. Budgets count env steps; sizes count episodes
    per task. ``ppo.total_env_steps`` is overridden by the budgets below."""

    model_config = ConfigDict(extra="forbid")

    suite: str = "libero_object"
    tasks: list[int | str] | str = [0]
    num_patterns: int = Field(3, ge=1, description="K")
    demos_per_strategy: int = Field(10, ge=1, description="scripted demos when no demo dataset")
    horizon: int | None = Field(None, description="episode length limit; None: the suite's")
    num_envs: int = Field(2, ge=1)
    vae: VAEConfig = VAEConfig()
    bc: BCConfig = BCConfig()
    ppo: PPOConfig = PPOConfig()
    mi: MIConfig = MIConfig()
    env_steps_per_pattern: int = Field(20_000, ge=1)
    eval_episodes: int = Field(10, ge=0, description="closed-loop BC evaluation per pattern")
    episodes_per_task: int = Field(30, ge=1, description="episodes per task in each full dataset")
    subset_sizes: list[int] = Field([6, 15], description="per-task sizes of nested subsets")
    max_attempts_per_kept: int = Field(5, ge=1, description="rollout attempts per wanted episode")
    keep_failures: bool = Field(
        False, description="keep failed rollouts too (tests and tiny smoke budgets)"
    )
    image_size: int = Field(128, ge=8)
    sources: list[Literal["dlr", "o2o", "mi"]] = ["dlr", "o2o"]
    seed: int = 0


def _dump(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        pickle.dump(obj, f)
    tmp.replace(path)


def _load(path: Path):
    with open(path, "rb") as f:
        return pickle.load(f)


def run_task(task: TaskSpec, cfg: GenerationConfig, run_dir: Path) -> dict:
    """Every per-task step; returns the steps' results."""
    tdir = run_dir / "generation" / task.suite / str(task.index)
    K = cfg.num_patterns
    horizon = cfg.horizon or DEFAULT_HORIZON[task.suite]
    env_config = EnvConfig(horizon=horizon)
    out: dict = {}

    # ---- demonstrations: the recipe's demo dataset if there is one, else scripted demos
    demo_root = run_dir / "demos" / task.suite
    demo_cfg = {
        "task": task.key,
        "demos_per_strategy": cfg.demos_per_strategy,
        "seed": cfg.seed,
        "dataset": str(demo_root) if demo_root.exists() else None,
        "horizon": horizon,
    }

    def demos_step(d: Path) -> dict:
        if demo_cfg["dataset"]:
            from generation.data.reader import load_episodes

            eps = [e for e in load_episodes(demo_root) if e.task_index == task.index and e.success]
        else:
            from generation.demonstrators import demonstrator_for
            from generation.demos import collect_state_only

            n = cfg.demos_per_strategy * demonstrator_for(task).n_strategies
            _, eps = collect_state_only([task], n, d / "cache", cfg.num_envs, cfg.seed)
            eps = [e for e in eps if e.success]
        _dump(eps, d / "demos.pkl")
        return {"episodes": len(eps), "strategies": sorted({e.strategy_id for e in eps})}

    out["demos"] = run_step(tdir / "demos", demo_cfg, demos_step)
    demos = _load(tdir / "demos" / "demos.pkl")
    chain = {"demos": demo_cfg}

    # ---- 1. discover
    chain["discover"] = {"vae": asdict(replace(cfg.vae, num_patterns=K, seed=cfg.seed))}

    def discover_step(d: Path) -> dict:
        relative = feature_spec(task, "goal")["relative"] if cfg.vae.goal_relative else []
        disc = discover(demos, replace(cfg.vae, num_patterns=K, seed=cfg.seed), horizon, relative)
        disc.save(d / "vae.pt")
        report = label_report(disc, demos)
        state_labels = [disc.label_states(e.states, e.env_states).tolist() for e in demos]
        _dump(
            {"episode_labels": report["episode_labels"], "state_labels": state_labels},
            d / "labels.pkl",
        )
        return report

    out["discover"] = run_step(tdir / "discover", chain, discover_step)
    labels = out["discover"]["episode_labels"]

    # ---- 2. learn: pi(a|s,z) on labelled demos, and pi(a|s) for O2O
    chain["learn"] = {
        "bc": asdict(replace(cfg.bc, seed=cfg.seed)),
        "eval_episodes": cfg.eval_episodes,
    }

    def learn_step(d: Path) -> dict:
        bc_cfg = replace(cfg.bc, seed=cfg.seed)
        spec = feature_spec(task, bc_cfg.features)
        dlr_policy, dlr_losses = behaviour_clone(demos, labels, K, bc_cfg, spec)
        o2o_policy, o2o_losses = behaviour_clone(demos, None, 0, bc_cfg, spec)
        save_policy(dlr_policy, d / "policy_dlr.pt")
        save_policy(o2o_policy, d / "policy_o2o.pt")
        result = {"bc_nll_dlr": dlr_losses[-1], "bc_nll_o2o": o2o_losses[-1]}
        if cfg.eval_episodes:
            paths = {}
            for k in range(K):
                r = evaluate(
                    dlr_policy, task, k, cfg.eval_episodes, env_config, cfg.num_envs, cfg.seed
                )
                result[f"success_pattern_{k}"] = r.success_rate
                paths[k] = [e.eef_path for e in r.episodes]
            r = evaluate(
                o2o_policy, task, None, cfg.eval_episodes, env_config, cfg.num_envs, cfg.seed
            )
            result["success_o2o"] = r.success_rate
            result |= pattern_separation(paths)
        return result

    out["learn"] = run_step(tdir / "learn", chain, learn_step)

    # ---- 3. reinforce
    runs = []  # (source, pattern, policy file, budget)
    if "dlr" in cfg.sources:
        runs += [("dlr", k, "policy_dlr.pt", cfg.env_steps_per_pattern) for k in range(K)]
    if "o2o" in cfg.sources:
        runs.append(("o2o", None, "policy_o2o.pt", K * cfg.env_steps_per_pattern))
    if "mi" in cfg.sources:
        runs.append(("mi", "sample", "policy_dlr.pt", K * cfg.env_steps_per_pattern))
    final_dirs: dict[str, Path] = {}
    for source, pattern, init_file, budget in runs:
        rdir = (
            tdir / "reinforce" / source / (f"pattern_{pattern}" if isinstance(pattern, int) else "")
        )
        ppo_cfg = replace(cfg.ppo, total_env_steps=budget, num_envs=cfg.num_envs, seed=cfg.seed)
        step_cfg = chain | {
            "reinforce": {
                "source": source,
                "pattern": pattern,
                "ppo": asdict(ppo_cfg),
                "mi": cfg.mi.__dict__ if source == "mi" else None,
            }
        }

        def ppo_step(
            d: Path, pattern=pattern, init_file=init_file, ppo_cfg=ppo_cfg, source=source
        ) -> dict:
            init = load_policy(tdir / "learn" / init_file)
            bonus = MIBonus(init, cfg.mi, cfg.seed) if source == "mi" else None
            res = train_ppo(init, task, pattern, ppo_cfg, d, env_config, bonus=bonus)
            save_policy(res.policy, d / "policy.pt")
            last = res.curves.iloc[-1].to_dict()
            return {
                k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in last.items()
            }

        out[f"reinforce/{source}/{pattern}"] = run_step(rdir, step_cfg, ppo_step)
        final_dirs[f"{source}/{pattern}"] = rdir

    # ---- rollouts of the final policies: successful episodes, state only
    per_pattern_target = math.ceil(cfg.episodes_per_task / K)
    for source in cfg.sources:
        patterns = [None] if source == "o2o" else list(range(K))
        target = cfg.episodes_per_task if source == "o2o" else per_pattern_target
        policies = {
            p: final_dirs[f"{source}/{'sample' if source == 'mi' else p}"] / "policy.pt"
            for p in patterns
        }
        step_cfg = {
            "policies": {
                str(p): read_manifest(policies[p].parent)["config_hash"] for p in patterns
            },
            "target": target,
            "attempts": cfg.max_attempts_per_kept,
            "keep_failures": cfg.keep_failures,
        }

        def rollout_step(
            d: Path, source=source, patterns=patterns, policies=policies, target=target
        ) -> dict:
            by_pattern, stats = {}, {}
            for p in patterns:
                r = collect(
                    load_policy(policies[p]),
                    task,
                    p,
                    target,
                    cfg.max_attempts_per_kept * target,
                    source,
                    env_config,
                    cfg.num_envs,
                    successes_only=not cfg.keep_failures,
                    seed=cfg.seed + 1,
                )
                by_pattern[-1 if p is None else p] = r.episodes
                stats[str(p)] = {
                    "attempted": r.attempted,
                    "succeeded": r.succeeded,
                    "success_rate": r.success_rate,
                    "kept": len(r.episodes),
                }
            _dump(by_pattern, d / "episodes.pkl")
            return stats

        out[f"rollouts/{source}"] = run_step(tdir / "rollouts" / source, step_cfg, rollout_step)
    return out


@contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` torch threads. The generator's networks are small MLPs and
    its env workers hold the cores: extra learner threads only spin against them (on 2 cores,
    BC training with the default 2 threads beside 2 env workers ran >10x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_generation(cfg: GenerationConfig, run_dir: Path) -> dict:
    """Run every task, then write matched datasets and diversity; returns a summary."""
    with torch_threads(1):
        return _run_generation(cfg, Path(run_dir))


def _run_generation(cfg: GenerationConfig, run_dir: Path) -> dict:
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    tasks = parse_tasks(cfg.suite, cfg.tasks)
    summary: dict = {"tasks": {}, "wall_time_s": {}}
    t0 = time.time()
    for task in tasks:
        t = time.time()
        summary["tasks"][task.key] = run_task(task, cfg, run_dir)
        summary["wall_time_s"][task.key] = time.time() - t

    # ---- matched datasets over all tasks
    rollout_hashes = {
        f"{t.key}/{s}": read_manifest(
            run_dir / "generation" / t.suite / str(t.index) / "rollouts" / s
        )["config_hash"]
        for t in tasks
        for s in cfg.sources
    }
    ds_cfg = {
        "rollouts": rollout_hashes,
        "episodes_per_task": cfg.episodes_per_task,
        "subset_sizes": cfg.subset_sizes,
        "image_size": cfg.image_size,
        "scene": SCENE_VERSION,
    }

    def datasets_step(d: Path) -> dict:
        from generation.data.schema import DatasetSpec

        ordered: dict[str, dict[str, list[Episode]]] = {s: {} for s in cfg.sources}
        trajs: dict[tuple[str, str], list[np.ndarray]] = {}
        per_task = {}
        for t in tasks:
            tdir = run_dir / "generation" / t.suite / str(t.index)
            available = {s: _load(tdir / "rollouts" / s / "episodes.pkl") for s in cfg.sources}
            matched = ds.matched_episodes(available, cfg.episodes_per_task)
            per_task[t.key] = {s: len(v) for s, v in matched.items()}
            for s, eps in matched.items():
                ordered[s][t.key] = eps
                trajs[(s, t.key)] = [e.eef_path for e in eps]
            trajs[("demo", t.key)] = [e.eef_path for e in _load(tdir / "demos" / "demos.pkl")]
        n_full = min(n for counts in per_task.values() for n in counts.values())
        if n_full == 0:
            raise RuntimeError(
                f"no matched episodes for some task/source (per-task counts {per_task}): "
                "raise the RL budget or max_attempts_per_kept"
            )
        n_max = max(n for counts in per_task.values() for n in counts.values())
        sizes = ds.subset_dirs(cfg.subset_sizes, n_full, n_max)
        written = {}
        for s in cfg.sources:
            written[s] = ds.write_source_datasets(
                ordered[s],
                d / s,
                sizes,
                f"local/dlr_{s}",
                DatasetSpec(image_size=cfg.image_size),
                render_workers=cfg.num_envs,
            )
        table = diversity_table({k: v for k, v in trajs.items() if len(v) > 0})
        table.to_parquet(d / "diversity.parquet", index=False)
        table.to_csv(d / "diversity.csv", index=False)
        result = {"per_task_counts": per_task, "written": written}
        if {"dlr", "o2o"} <= set(cfg.sources) and len(table):
            ratios = diversity_ratios(table)
            result["dlr_over_o2o"] = {f"{r.task}/{r.metric}": r.ratio for r in ratios.itertuples()}
        return result

    t = time.time()
    summary["datasets"] = run_step(run_dir / "datasets", ds_cfg, datasets_step)
    summary["wall_time_s"]["datasets"] = time.time() - t
    summary["wall_time_s"]["total"] = time.time() - t0
    return summary


__all__ = ["GenerationConfig", "run_generation", "run_task", "Discovery"]
