"""One task's steps, as three jobs that an executor (``generation/executor.py``) may run
anywhere that sees the run folder:

    prepare_task: demos -> discover (VAE patterns) -> learn (BC: pi(a|s,z) and pi(a|s))
    reinforce_run: one PPO run of one (source, pattern), independent of the others
    finish_task: rollouts of the final policies -> analysis (mode occupancy)

Every step is a ``run_step`` folder under ``generation/<suite>/<index>/`` with a manifest:
complete steps are skipped, PPO resumes from its checkpoints, and a job that is rerun
(resumed, or retried after its worker died) redoes only its unfinished steps.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from generation.data.episode import Episode
from generation.dlr import occupancy as occ
from generation.dlr.discover import Discovery, discover, label_report
from generation.dlr.features import feature_spec
from generation.dlr.learn import behaviour_clone, pattern_separation
from generation.dlr.mi import MIBonus
from generation.dlr.policy import load_policy, save_policy
from generation.dlr.ppo import load_snapshots, train_ppo
from generation.dlr.rollouts import evaluate, init_state_schedule, rollout_schedule
from generation.envs.libero_env import EnvConfig
from generation.envs.suites import DEFAULT_HORIZON, TaskSpec
from generation.manifest import atomic_pickle, read_manifest, run_step

if TYPE_CHECKING:
    from generation.dlr.pipeline import GenerationConfig

PATTERNED = ("dlr", "mi")  # sources whose policy takes a pattern z


def load(path: Path):
    with open(path, "rb") as f:
        return pickle.load(f)


def task_dir(run_dir: Path, task: TaskSpec) -> Path:
    return Path(run_dir) / "generation" / task.suite / str(task.index)


def _env_config(task: TaskSpec, cfg: GenerationConfig) -> EnvConfig:
    return EnvConfig(horizon=cfg.horizon or DEFAULT_HORIZON[task.suite])


def _chain(task: TaskSpec, cfg: GenerationConfig, run_dir: Path) -> dict:
    """The configs of the demos, discover and learn steps, each chained to those before."""
    demo_root = Path(run_dir) / "demos" / task.suite
    chain = {
        "demos": {
            "task": task.key,
            "demos_per_strategy": cfg.demos_per_strategy,
            "seed": cfg.seed,
            # chained by content: the demos' manifest hash, not their path
            "dataset": (read_manifest(demo_root) or {}).get("config_hash")
            if demo_root.exists()
            else None,
            "horizon": cfg.horizon or DEFAULT_HORIZON[task.suite],
        }
    }
    chain["discover"] = {
        "vae": asdict(replace(cfg.vae, num_patterns=cfg.num_patterns, seed=cfg.seed))
    }
    chain["learn"] = {
        "bc": asdict(replace(cfg.bc, seed=cfg.seed)),
        "eval_episodes": cfg.eval_episodes,
        "eval_kept": True,  # eval_episodes.pkl: BC's own behaviour, occupancy's baseline
    }
    return chain


def prepare_task(task: TaskSpec, cfg: GenerationConfig, run_dir: Path, force: bool = False) -> dict:
    """Demos, discover and learn of one task; returns their results."""
    run_dir = Path(run_dir)
    tdir = task_dir(run_dir, task)
    K = cfg.num_patterns
    horizon = cfg.horizon or DEFAULT_HORIZON[task.suite]
    env_config = _env_config(task, cfg)
    full_chain = _chain(task, cfg, run_dir)
    demo_cfg = full_chain["demos"]
    demo_root = run_dir / "demos" / task.suite
    out: dict = {}

    # ---- demonstrations: the recipe's demo dataset if there is one, else scripted demos
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
        atomic_pickle(eps, d / "demos.pkl")
        return {"episodes": len(eps), "strategies": sorted({e.strategy_id for e in eps})}

    out["demos"] = run_step(tdir / "demos", demo_cfg, demos_step, force=force)
    demos = load(tdir / "demos" / "demos.pkl")
    chain = {"demos": demo_cfg}

    # ---- 1. discover
    chain["discover"] = full_chain["discover"]

    def discover_step(d: Path) -> dict:
        relative = feature_spec(task, "goal")["relative"] if cfg.vae.goal_relative else []
        disc = discover(demos, replace(cfg.vae, num_patterns=K, seed=cfg.seed), horizon, relative)
        disc.save(d / "vae.pt")
        report = label_report(disc, demos)
        state_labels = [disc.label_states(e.states, e.env_states).tolist() for e in demos]
        atomic_pickle(
            {"episode_labels": report["episode_labels"], "state_labels": state_labels},
            d / "labels.pkl",
        )
        return report

    out["discover"] = run_step(tdir / "discover", chain, discover_step, force=force)
    labels = out["discover"]["episode_labels"]

    # ---- 2. learn: pi(a|s,z) on labelled demos, and pi(a|s) for O2O
    chain["learn"] = full_chain["learn"]

    def learn_step(d: Path) -> dict:
        bc_cfg = replace(cfg.bc, seed=cfg.seed)
        spec = feature_spec(task, bc_cfg.features)
        dlr_policy, dlr_losses = behaviour_clone(demos, labels, K, bc_cfg, spec)
        o2o_policy, o2o_losses = behaviour_clone(demos, None, 0, bc_cfg, spec)
        save_policy(dlr_policy, d / "policy_dlr.pt")
        save_policy(o2o_policy, d / "policy_o2o.pt")
        result = {"bc_nll_dlr": dlr_losses[-1], "bc_nll_o2o": o2o_losses[-1]}
        if cfg.eval_episodes:
            paths, kept = {}, {}
            for k in range(K):
                r = evaluate(
                    dlr_policy, task, k, cfg.eval_episodes, env_config, cfg.num_envs, cfg.seed
                )
                result[f"success_pattern_{k}"] = r.success_rate
                paths[k] = [e.eef_path for e in r.episodes]
                kept[k] = r.episodes
            r = evaluate(
                o2o_policy, task, None, cfg.eval_episodes, env_config, cfg.num_envs, cfg.seed
            )
            result["success_o2o"] = r.success_rate
            kept[-1] = r.episodes
            result |= pattern_separation(paths)
            atomic_pickle(kept, d / "eval_episodes.pkl")
        return result

    out["learn"] = run_step(tdir / "learn", chain, learn_step, force=force)
    return out


def reinforce_runs(cfg: GenerationConfig) -> list[tuple[str, int | str | None]]:
    """The (source, pattern) PPO runs of every task: one per DLR pattern, one per other source."""
    runs: list[tuple[str, int | str | None]] = []
    if "dlr" in cfg.sources:
        runs += [("dlr", k) for k in range(cfg.num_patterns)]
    runs += [(s, None) for s in ("o2o", "o2o_kl") if s in cfg.sources]
    if "mi" in cfg.sources:
        runs.append(("mi", "sample"))
    return runs


def reinforce_dir(tdir: Path, source: str, pattern: int | str | None) -> Path:
    return tdir / "reinforce" / source / (f"pattern_{pattern}" if isinstance(pattern, int) else "")


def reinforce_run(
    task: TaskSpec,
    cfg: GenerationConfig,
    run_dir: Path,
    source: str,
    pattern: int | str | None,
    force: bool = False,
    *after: object,
) -> dict:
    """One PPO run from the learnt policy (``after``: the jobs it waits for, unused)."""
    tdir = task_dir(run_dir, task)
    init_file = "policy_o2o.pt" if source in ("o2o", "o2o_kl") else "policy_dlr.pt"
    ppo_cfg = cfg.source_ppo(source)
    step_cfg = _chain(task, cfg, run_dir) | {
        "reinforce": {
            "source": source,
            "pattern": pattern,
            "ppo": asdict(ppo_cfg),
            "mi": asdict(cfg.mi) if source == "mi" else None,
        }
    }

    def ppo_step(d: Path) -> dict:
        init = load_policy(tdir / "learn" / init_file)
        bonus = MIBonus(init, cfg.mi, cfg.seed) if source == "mi" else None
        res = train_ppo(
            init, task, pattern, ppo_cfg, d, env_config=_env_config(task, cfg), bonus=bonus
        )
        save_policy(res.policy, d / "policy.pt")
        last = res.curves.iloc[-1].to_dict()
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in last.items()}

    return run_step(reinforce_dir(tdir, source, pattern), step_cfg, ppo_step, force=force)


def finish_task(
    task: TaskSpec, cfg: GenerationConfig, run_dir: Path, force: bool = False, *after: object
) -> dict:
    """Rollouts of the final policies on the task's shared init-state schedule, then the
    analysis (``after``: the PPO jobs it waits for, unused)."""
    tdir = task_dir(run_dir, task)
    K = cfg.num_patterns
    env_config = _env_config(task, cfg)
    final_dirs = {
        f"{source}/{pattern}": reinforce_dir(tdir, source, pattern)
        for source, pattern in reinforce_runs(cfg)
    }
    out: dict = {}

    n_states = math.ceil(cfg.episodes_per_task / K)
    schedule = init_state_schedule(task, n_states * cfg.max_attempts_per_kept, cfg.seed)
    for source in cfg.sources:
        patterns = list(range(K)) if source in PATTERNED else [None]
        runs_of = {p: final_dirs[f"{source}/{'sample' if source == 'mi' else p}"] for p in patterns}
        # an unpatterned source rolls K episodes per init state, a patterned one one per pattern
        repeats = 1 if source in PATTERNED else K
        step_cfg = {
            "policies": {str(p): read_manifest(runs_of[p])["config_hash"] for p in patterns},
            "schedule": schedule,
            "repeats": repeats,
            "keep_failures": cfg.keep_failures,
        }

        def rollout_step(
            d: Path, source=source, patterns=patterns, runs_of=runs_of, repeats=repeats
        ):
            by_pattern, stats = {}, {}
            for p in patterns:
                r = rollout_schedule(
                    load_policy(runs_of[p] / "policy.pt"),
                    task,
                    p,
                    [s for s in schedule for _ in range(repeats)],
                    source,
                    env_config,
                    cfg.num_envs,
                    seed=cfg.seed + 1,
                )
                by_pattern[-1 if p is None else p] = r.episodes
                stats[str(p)] = {
                    "attempted": r.attempted,
                    "succeeded": r.succeeded,
                    "success_rate": r.success_rate,
                    "kept": r.attempted if cfg.keep_failures else r.succeeded,
                }
            atomic_pickle(by_pattern, d / "episodes.pkl")
            return stats

        out[f"rollouts/{source}"] = run_step(
            tdir / "rollouts" / source, step_cfg, rollout_step, force=force
        )

    # ---- analysis: mode occupancy of the rollouts and of PPO's snapshots
    analysis_cfg = {
        "keep_failures": cfg.keep_failures,
        "discover": read_manifest(tdir / "discover")["config_hash"],
        "rollouts": {s: read_manifest(tdir / "rollouts" / s)["config_hash"] for s in cfg.sources},
        "reinforce": {k: read_manifest(v)["config_hash"] for k, v in final_dirs.items()},
    }

    def analysis_step(d: Path) -> dict:
        demos = load(tdir / "demos" / "demos.pkl")
        counts = occupancy_counts(task, cfg, tdir, final_dirs, demos)
        counts.to_parquet(d / "occupancy.parquet", index=False)
        n_labels = {"vae": K, "strategy": strategy_count(demos)}
        summary = occ.summarise(counts, n_labels) if len(counts) else pd.DataFrame()
        final = summary[summary["stage"] == "rollouts"] if len(summary) else summary
        return {
            f"{r.source}/{r.pattern}/{r.labeler}": {"n": r.n, "entropy": r.entropy}
            for r in final.itertuples()
        }

    out["analysis"] = run_step(tdir / "analysis", analysis_cfg, analysis_step, force=force)
    return out


def strategy_count(demos: list[Episode]) -> int:
    return max((e.strategy_id for e in demos), default=0) + 1


def occupancy_counts(
    task: TaskSpec,
    cfg: GenerationConfig,
    tdir: Path,
    final_dirs: dict[str, Path],
    demos: list[Episode],
) -> pd.DataFrame:
    """Long table of label counts over the kept episodes (successes; failures too when
    ``keep_failures``): BC's evaluation episodes (``stage='bc'``, iteration 0), PPO's
    snapshots pooled over six windows of training (``stage='ppo'``, iteration = the window's
    last) and the final rollouts (``stage='rollouts'``)."""
    failures = cfg.keep_failures
    disc = Discovery.load(tdir / "discover" / "vae.pt")
    demo_paths = [e.eef_path for e in demos]
    demo_strategies = [e.strategy_id for e in demos]
    has_strategies = bool(demos) and min(demo_strategies) >= 0

    K = cfg.num_patterns

    def vote(states: np.ndarray, env_states: np.ndarray) -> int:
        return int(np.bincount(disc.label_states(states, env_states), minlength=K).argmax())

    rows: list[dict] = []

    def add(group: dict, episodes: list[tuple[np.ndarray, np.ndarray]]) -> None:
        if not episodes:
            return
        rows.extend(occ.count_rows([vote(s, e) for s, e in episodes], labeler="vae", **group))
        if has_strategies:
            paths = [s[:, :3] for s, _ in episodes]
            labels = occ.nearest_strategy(paths, demo_paths, demo_strategies)
            rows.extend(occ.count_rows(labels, labeler="strategy", **group))

    bc_file = tdir / "learn" / "eval_episodes.pkl"
    bc = load(bc_file) if bc_file.is_file() else {}
    for source in cfg.sources:
        # BC's own behaviour (Learn's evaluation): the baseline PPO starts from
        bc_patterns = [k for k in bc if k >= 0] if source in PATTERNED else [-1]
        for k in bc_patterns:
            if k in bc:
                group = dict(task=task.key, source=source, pattern=int(k), stage="bc", iteration=0)
                add(group, [(e.states, e.env_states) for e in bc[k] if e.success or failures])
        by_pattern = load(tdir / "rollouts" / source / "episodes.pkl")
        last_iter = {
            key: int(read_manifest(d)["result"].get("iteration") or 0)
            for key, d in final_dirs.items()
            if key.startswith(f"{source}/")
        }
        for pattern, eps in by_pattern.items():
            run_key = (
                f"{source}/{'sample' if source == 'mi' else (None if pattern < 0 else pattern)}"
            )
            group = dict(
                task=task.key,
                source=source,
                pattern=int(pattern),
                stage="rollouts",
                iteration=last_iter.get(run_key, 0),
            )
            add(group, [(e.states, e.env_states) for e in eps if e.success or failures])
        for key, d in final_dirs.items():
            if not key.startswith(f"{source}/"):
                continue
            # snapshots pooled in six windows of training (each iteration holds few episodes);
            # a window is named by its last iteration
            n_iter = cfg.source_ppo(source).num_iterations
            width = max(1, math.ceil(n_iter / 6))
            windows: dict[int, list[dict]] = {}
            for iteration, eps in load_snapshots(d).items():
                end = min(n_iter, math.ceil(iteration / width) * width)
                windows.setdefault(end, []).extend(e for e in eps if e["success"] or failures)
            for end, ok in sorted(windows.items()):
                for z in sorted({e["z"] for e in ok}):
                    group = dict(
                        task=task.key, source=source, pattern=int(z), stage="ppo", iteration=end
                    )
                    add(group, [(e["states"], e["env_states"]) for e in ok if e["z"] == z])
    columns = ["task", "source", "pattern", "stage", "iteration", "labeler", "label", "count"]
    return pd.DataFrame(rows, columns=columns)
