"""The DLR generator end to end, per task:

    demos -> discover (VAE patterns) -> learn (BC: pi(a|s,z) and pi(a|s))
          -> reinforce (PPO: dlr per pattern, o2o, o2o_kl, mi) -> rollouts -> analysis
then, over all tasks: matched-size LeRobot datasets per source and the diversity tables.

Sources: ``dlr`` (one PPO run per pattern, KL-to-init leash), ``o2o`` (the paper's baseline:
BC on all demos, then ordinary PPO, ``kl_coef`` 0), ``o2o_kl`` (the same with DLR's leash, to
tell the leash from the patterns), ``mi`` (DIAYN-style bonus over sampled patterns).
Every source's PPO settings are ``generation.ppo`` overridden by ``generation.<source>.ppo``.
Budgets: each DLR pattern gets ``env_steps_per_pattern``; the other sources K times that, the
same total as DLR's K patterns together.
Unconfounded data: every source rolls out on one shared schedule of init states per task
(patterned sources once per pattern, the others K times per init state), and the datasets take
every source's episodes on the same init states in the same numbers (as many per state as
every source solved there, up to K).

Run folder (docs/architecture.md): ``generation/<suite>/<index>/{demos,discover,learn,
reinforce/<source>/[pattern_<k>],rollouts/<source>,analysis}`` and
``datasets/<source>/{full,n<size>}``, every step with a manifest.json; completed steps are
skipped, PPO resumes from checkpoints.
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
import pandas as pd
import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    field_serializer,
    field_validator,
)

from generation.data.episode import Episode
from generation.dlr import datasets as ds
from generation.dlr import occupancy as occ
from generation.dlr.discover import Discovery, VAEConfig, discover, label_report
from generation.dlr.diversity import bootstrap_ratios, diversity_table
from generation.dlr.features import feature_spec
from generation.dlr.learn import BCConfig, behaviour_clone, pattern_separation
from generation.dlr.mi import MIBonus, MIConfig
from generation.dlr.policy import load_policy, save_policy
from generation.dlr.ppo import PPOConfig, load_snapshots, train_ppo
from generation.dlr.rollouts import evaluate, init_state_schedule, rollout_schedule
from generation.envs import SCENE_VERSION
from generation.envs.libero_env import EnvConfig
from generation.envs.suites import DEFAULT_HORIZON, TaskSpec, parse_tasks
from generation.manifest import atomic_write, read_manifest, run_step

log = logging.getLogger(__name__)


SOURCES = ("dlr", "o2o", "o2o_kl", "mi")
PATTERNED = ("dlr", "mi")  # sources whose policy takes a pattern z
# what makes each source what it is, applied before the recipe's per-source overrides
SOURCE_PPO_DEFAULTS: dict[str, dict] = {"o2o": {"kl_coef": 0.0}}
# fields of the nested configs that the pipeline computes, and the recipe key that sets each
PIPELINE_SET: dict[str, dict[str, str]] = {
    "ppo": {
        "total_env_steps": "generation.env_steps_per_pattern (x num_patterns for o2o, o2o_kl, mi)",
        "num_envs": "generation.num_envs",
        "seed": "generation.seed (default: the recipe's seed)",
    },
    "vae": {
        "num_patterns": "generation.num_patterns",
        "seed": "generation.seed (default: the recipe's seed)",
    },
    "bc": {"seed": "generation.seed (default: the recipe's seed)"},
}
PIPELINE_SET_PPO = set(PIPELINE_SET["ppo"])


class SourceSettings(BaseModel):
    """Per-source settings: ``ppo`` overrides ``generation.ppo`` for this source only."""

    model_config = ConfigDict(extra="forbid")

    ppo: dict = {}

    @field_validator("ppo")
    @classmethod
    def _ppo_keys(cls, v: dict) -> dict:
        allowed = sorted(set(PPOConfig.__dataclass_fields__) - PIPELINE_SET_PPO)
        for key in v:
            if key in PIPELINE_SET_PPO:
                raise ValueError(
                    f"ppo.{key} is set by the pipeline from {PIPELINE_SET['ppo'][key]}, "
                    "not per source: remove it"
                )
            if key not in allowed:
                raise ValueError(f"unknown PPO key {key!r}; allowed: {', '.join(allowed)}")
        TypeAdapter(PPOConfig).validate_python(v)  # types and values
        return v


class GenerationConfig(BaseModel):
    """The ``generation`` section of a recipe. Budgets count env steps; sizes count episodes
    per task. Fields of ``ppo``/``vae``/``bc`` that the pipeline computes (``PIPELINE_SET``:
    budgets, ``num_envs``, ``num_patterns``, seeds) are not recipe keys and are rejected."""

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
    dlr: SourceSettings = SourceSettings()
    o2o: SourceSettings = SourceSettings()
    o2o_kl: SourceSettings = SourceSettings()
    mi: MIConfig = MIConfig()
    env_steps_per_pattern: int = Field(20_000, ge=1)
    eval_episodes: int = Field(10, ge=0, description="closed-loop BC evaluation per pattern")
    episodes_per_task: int = Field(
        30, ge=1, description="episodes per task in each full dataset (K per init state)"
    )
    subset_sizes: list[int] = Field([6, 15], description="per-task sizes of nested subsets")
    max_attempts_per_kept: int = Field(
        5, ge=1, description="candidate init states rolled out per init state wanted"
    )
    keep_failures: bool = Field(
        False, description="keep failed rollouts too (tests and tiny smoke budgets)"
    )
    bootstrap_samples: int = Field(1000, ge=10, description="resamples per diversity CI")
    image_size: int = Field(128, ge=8)
    sources: list[Literal["dlr", "o2o", "o2o_kl", "mi"]] = ["dlr", "o2o"]
    seed: int = 0

    @field_validator("ppo", "vae", "bc", mode="before")
    @classmethod
    def _no_pipeline_set_keys(cls, v, info):
        """A value the pipeline would overwrite is rejected, naming what sets it."""
        if isinstance(v, dict):
            for key, source in PIPELINE_SET[info.field_name].items():
                if key in v:
                    raise ValueError(f"{key} is set by the pipeline from {source}: remove it")
        return v

    @field_serializer("ppo", "vae", "bc")
    def _dump_recipe_keys(self, v, info) -> dict:
        """The recipe keys only: a dumped config loads back (pipeline-set fields left out)."""
        return {k: x for k, x in asdict(v).items() if k not in PIPELINE_SET[info.field_name]}

    @field_validator("suite")
    @classmethod
    def _suite_exists(cls, v: str) -> str:
        from generation.envs.suites import SUITES

        if v not in SUITES:
            raise ValueError(f"unknown suite {v!r}; valid suites: {', '.join(SUITES)}")
        return v

    @field_validator("tasks")
    @classmethod
    def _tasks_exist(cls, v, info):
        if "suite" in info.data:  # raises naming the valid tasks, before any work
            parse_tasks(info.data["suite"], v)
        return v

    @field_validator("mi")
    @classmethod
    def _mi_ppo_keys(cls, v: MIConfig) -> MIConfig:
        SourceSettings(ppo=v.ppo)
        return v

    def source_ppo(self, source: str) -> PPOConfig:
        """The PPO settings one run of ``source`` trains with (budget included)."""
        overrides = self.mi.ppo if source == "mi" else getattr(self, source).ppo
        steps = self.env_steps_per_pattern * (1 if source == "dlr" else self.num_patterns)
        return replace(
            self.ppo,
            **SOURCE_PPO_DEFAULTS.get(source, {}),
            **overrides,
            total_env_steps=steps,
            num_envs=self.num_envs,
            seed=self.seed,
        )

    def budget_warnings(self) -> list[str]:
        """Sources whose PPO would barely move the policy (fewer than 10 updates per run)."""
        out = []
        for source in self.sources:
            n = self.source_ppo(source).num_iterations
            if n < 10:
                per = " per pattern" if source == "dlr" else ""
                out.append(
                    f"generation: {source} gets {n} PPO update(s){per} (< 10): raise "
                    "env_steps_per_pattern or lower ppo.num_steps"
                )
        return out


def _dump(obj, path: Path) -> None:
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        pickle.dump(obj, f)


def _load(path: Path):
    with open(path, "rb") as f:
        return pickle.load(f)


def run_task(task: TaskSpec, cfg: GenerationConfig, run_dir: Path, force: bool = False) -> dict:
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
        # chained by content: the demos' manifest hash, not their path
        "dataset": (read_manifest(demo_root) or {}).get("config_hash")
        if demo_root.exists()
        else None,
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

    out["demos"] = run_step(tdir / "demos", demo_cfg, demos_step, force=force)
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

    out["discover"] = run_step(tdir / "discover", chain, discover_step, force=force)
    labels = out["discover"]["episode_labels"]

    # ---- 2. learn: pi(a|s,z) on labelled demos, and pi(a|s) for O2O
    chain["learn"] = {
        "bc": asdict(replace(cfg.bc, seed=cfg.seed)),
        "eval_episodes": cfg.eval_episodes,
        "eval_kept": True,  # eval_episodes.pkl: BC's own behaviour, occupancy's baseline
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
            _dump(kept, d / "eval_episodes.pkl")
        return result

    out["learn"] = run_step(tdir / "learn", chain, learn_step, force=force)

    # ---- 3. reinforce
    runs = []  # (source, pattern, policy file)
    if "dlr" in cfg.sources:
        runs += [("dlr", k, "policy_dlr.pt") for k in range(K)]
    for source in ("o2o", "o2o_kl"):
        if source in cfg.sources:
            runs.append((source, None, "policy_o2o.pt"))
    if "mi" in cfg.sources:
        runs.append(("mi", "sample", "policy_dlr.pt"))
    final_dirs: dict[str, Path] = {}
    for source, pattern, init_file in runs:
        rdir = (
            tdir / "reinforce" / source / (f"pattern_{pattern}" if isinstance(pattern, int) else "")
        )
        ppo_cfg = cfg.source_ppo(source)
        step_cfg = chain | {
            "reinforce": {
                "source": source,
                "pattern": pattern,
                "ppo": asdict(ppo_cfg),
                "mi": asdict(cfg.mi) if source == "mi" else None,
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

        out[f"reinforce/{source}/{pattern}"] = run_step(rdir, step_cfg, ppo_step, force=force)
        final_dirs[f"{source}/{pattern}"] = rdir

    # ---- rollouts of the final policies on the task's shared init-state schedule
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
            _dump(by_pattern, d / "episodes.pkl")
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
    bc = _load(bc_file) if bc_file.is_file() else {}
    for source in cfg.sources:
        # BC's own behaviour (Learn's evaluation): the baseline PPO starts from
        bc_patterns = [k for k in bc if k >= 0] if source in PATTERNED else [-1]
        for k in bc_patterns:
            if k in bc:
                group = dict(task=task.key, source=source, pattern=int(k), stage="bc", iteration=0)
                add(group, [(e.states, e.env_states) for e in bc[k] if e.success or failures])
        by_pattern = _load(tdir / "rollouts" / source / "episodes.pkl")
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


def run_generation(cfg: GenerationConfig, run_dir: Path, force: bool = False) -> dict:
    """Run every task, then write matched datasets and diversity; returns a summary.
    ``force``: rebuild every step, complete or not."""
    with torch_threads(1):
        return _run_generation(cfg, Path(run_dir), force)


def _run_generation(cfg: GenerationConfig, run_dir: Path, force: bool = False) -> dict:
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    tasks = parse_tasks(cfg.suite, cfg.tasks)
    summary: dict = {"tasks": {}, "wall_time_s": {}}
    t0 = time.time()
    for task in tasks:
        t = time.time()
        summary["tasks"][task.key] = run_task(task, cfg, run_dir, force)
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
        "bootstrap_samples": cfg.bootstrap_samples,
        "scene": SCENE_VERSION,
    }

    def datasets_step(d: Path) -> dict:
        from generation.data.schema import DatasetSpec

        rollouts_of = {
            t.key: {
                s: _load(
                    run_dir
                    / "generation"
                    / t.suite
                    / str(t.index)
                    / "rollouts"
                    / s
                    / "episodes.pkl"
                )
                for s in cfg.sources
            }
            for t in tasks
        }
        # a source whose RL lost every success on a task cannot be matched: leave it out of
        # every dataset (and say so) rather than shrink every other source to nothing
        excluded = {}
        for key, by_source in rollouts_of.items():
            for s, by_pattern in by_source.items():
                eps = [e for v in by_pattern.values() for e in v]
                if s not in excluded and not any(e.success or cfg.keep_failures for e in eps):
                    excluded[s] = f"0/{len(eps)} successful rollouts on {key}"
                    log.warning("datasets: %s left out: %s", s, excluded[s])
        sources = [s for s in cfg.sources if s not in excluded]
        if not sources or (len(cfg.sources) > 1 and len(sources) < 2):
            raise RuntimeError(
                f"too few sources with successful rollouts to compare ({excluded}): raise the "
                "RL budget or max_attempts_per_kept, or lower ppo.actor_lr"
            )
        ordered: dict[str, dict[str, list[Episode]]] = {s: {} for s in sources}
        per_task, states_used = {}, {}
        trajs: dict[tuple[str, str], list[np.ndarray]] = {}
        ci_tables = []
        for t in tasks:
            tdir = run_dir / "generation" / t.suite / str(t.index)
            rollouts = {s: rollouts_of[t.key][s] for s in sources}
            states, matched = ds.matched_by_init_state(
                rollouts,
                episodes=cfg.episodes_per_task,
                per_state=cfg.num_patterns,
                successes_only=not cfg.keep_failures,
            )
            states_used[t.key] = states
            per_task[t.key] = {s: len(v) for s, v in matched.items()}
            for s, eps in matched.items():
                ordered[s][t.key] = eps
                trajs[(s, t.key)] = [e.eef_path for e in eps if e.success]
            trajs[("demo", t.key)] = [e.eef_path for e in _load(tdir / "demos" / "demos.pkl")]
            ci_tables.append(_diversity_cis(matched, t.key, cfg))
        n_full = min(n for counts in per_task.values() for n in counts.values())
        if n_full == 0:
            raise RuntimeError(
                f"no init state solved by every source for some task (per-task counts "
                f"{per_task}): raise the RL budget or max_attempts_per_kept"
            )
        n_max = max(n for counts in per_task.values() for n in counts.values())
        sizes = ds.subset_dirs(cfg.subset_sizes, n_full, n_max)
        written = {}
        for s in sources:
            written[s] = ds.write_source_datasets(
                ordered[s],
                d / s,
                sizes,
                f"local/dlr_{s}",
                DatasetSpec(image_size=cfg.image_size),
                render_workers=cfg.num_envs,
            )
        # diversity over successful episodes only (a dataset may keep failures: n says how many)
        table = diversity_table({k: v for k, v in trajs.items() if len(v) > 0})
        n_eps = {k: len(v) for k, v in trajs.items()}
        table["n"] = [n_eps[(r.source, r.task)] for r in table.itertuples()]
        table.to_parquet(d / "diversity.parquet", index=False)
        table.to_csv(d / "diversity.csv", index=False)
        cis = pd.concat(ci_tables, ignore_index=True) if ci_tables else pd.DataFrame()
        cis.to_parquet(d / "diversity_ci.parquet", index=False)
        cis.to_csv(d / "diversity_ci.csv", index=False)
        result = {
            "per_task_counts": per_task,
            "init_states": states_used,
            "written": written,
            "excluded_sources": excluded,
        }
        if len(cis):
            per_state = cis[(cis["scope"] == "per_init_state") & (cis["num"] == "dlr")]
            result["dlr_ratios_per_init_state"] = {
                f"{r.task}/{r.metric}/{r.den}": [r.ratio, r.ci_low, r.ci_high]
                for r in per_state.itertuples()
            }
        return result

    t = time.time()
    summary["datasets"] = run_step(run_dir / "datasets", ds_cfg, datasets_step, force=force)
    summary["wall_time_s"]["datasets"] = time.time() - t
    summary["wall_time_s"]["total"] = time.time() - t0
    return summary


def _diversity_cis(matched: dict[str, list[Episode]], task_key: str, cfg) -> pd.DataFrame:
    """Every other source's diversity over each single-pattern RL source's (O2O, O2O-KL) on
    one task's successful matched episodes, with bootstrap CIs, pooled and per init state."""
    ok = {s: [e for e in eps if e.success] for s, eps in matched.items()}
    tables = []
    for den_source in ("o2o", "o2o_kl"):
        den = ok.get(den_source, [])
        for source, eps in ok.items():
            if source in (den_source, "o2o") or len(eps) < 2 or len(den) < 2:
                continue
            table = bootstrap_ratios(
                ([e.eef_path for e in eps], [e.init_state_index for e in eps]),
                ([e.eef_path for e in den], [e.init_state_index for e in den]),
                n_boot=cfg.bootstrap_samples,
                seed=cfg.seed,
            )
            tables.append(table.assign(task=task_key, num=source, den=den_source))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


__all__ = ["GenerationConfig", "run_generation", "run_task", "Discovery"]
