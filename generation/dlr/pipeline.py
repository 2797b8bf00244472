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

The per-task steps are jobs in ``steps.py``; an executor (``generation/executor.py``) runs
them here one after another, or as Ray tasks across a cluster, into the same run folder.

Run folder (docs/architecture.md): ``generation/<suite>/<index>/{demos,discover,learn,
reinforce/<source>/[pattern_<k>],rollouts/<source>,analysis}`` and
``datasets/<source>/{full,n<size>}``, every step with a manifest.json; completed steps are
skipped, PPO resumes from checkpoints.
"""

from __future__ import annotations

import logging
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
from generation.dlr import steps
from generation.dlr.discover import Discovery, VAEConfig
from generation.dlr.diversity import bootstrap_ratios, diversity_table
from generation.dlr.learn import BCConfig
from generation.dlr.mi import MIConfig
from generation.dlr.ppo import PPOConfig
from generation.envs import SCENE_VERSION
from generation.envs.suites import parse_tasks
from generation.executor import Executor, LocalExecutor, RayExecutor
from generation.manifest import read_manifest, run_step

log = logging.getLogger(__name__)


SOURCES = ("dlr", "o2o", "o2o_kl", "mi")
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


def run_generation(
    cfg: GenerationConfig, run_dir: Path, force: bool = False, executor: Executor | None = None
) -> dict:
    """Run every task, then write matched datasets and diversity; returns a summary.
    ``force``: rebuild every step, complete or not. ``executor``: where the jobs run (each
    task's prepare, its PPO runs and its rollouts, and each source's rendering); by default
    in this process, one after another."""
    with torch_threads(1):
        return _run_generation(cfg, Path(run_dir), force, executor or LocalExecutor())


def _run_generation(cfg: GenerationConfig, run_dir: Path, force: bool, executor: Executor) -> dict:
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    tasks = parse_tasks(cfg.suite, cfg.tasks)
    if isinstance(executor, RayExecutor):
        executor.check_fits(cfg.num_envs, "generation.num_envs")  # else it would wait forever
        run_dir = run_dir.resolve()  # a worker's working folder is not ours
    summary: dict = {"tasks": {}, "wall_time_s": {}}
    t0 = time.time()
    jobs = {}
    for task in tasks:  # the local executor runs each job here; Ray runs them as it can
        cpus = {"num_cpus": cfg.num_envs}  # each job's env worker processes
        prep = executor.submit(
            steps.prepare_task, task, cfg, run_dir, force, label=f"prepare {task.key}", **cpus
        )
        ppo = {}
        for source, pattern in steps.reinforce_runs(cfg):  # each PPO run its own job
            ppo[f"reinforce/{source}/{pattern}"] = executor.submit(
                steps.reinforce_run, task, cfg, run_dir, source, pattern, force, prep,
                label=f"ppo {task.key} {source} {pattern}", **cpus,
            )  # fmt: skip
        finish = executor.submit(
            steps.finish_task, task, cfg, run_dir, force, *ppo.values(),
            label=f"rollouts {task.key}", **cpus,
        )  # fmt: skip
        jobs[task.key] = (prep, ppo, finish)
    for key, (prep, ppo, finish) in jobs.items():
        (prepared,) = executor.get([prep])
        reinforced = dict(zip(ppo, executor.get(list(ppo.values())), strict=True))
        (finished,) = executor.get([finish])
        summary["tasks"][key] = prepared | reinforced | finished
        summary["wall_time_s"][key] = time.time() - t0  # from the start until the task is done

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
                s: steps.load(
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
            trajs[("demo", t.key)] = [e.eef_path for e in steps.load(tdir / "demos" / "demos.pkl")]
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
            # one render job per source (its own render worker processes)
            written[s] = executor.submit(
                ds.write_source_datasets, ordered[s], d / s, sizes, f"local/dlr_{s}",
                DatasetSpec(image_size=cfg.image_size), None, cfg.num_envs,
                num_cpus=cfg.num_envs, label=f"render {s}",
            )  # fmt: skip
        written = dict(zip(written, executor.get(list(written.values())), strict=True))
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


__all__ = ["GenerationConfig", "run_generation", "Discovery"]
