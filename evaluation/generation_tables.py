"""What the generator did, per task: read from its manifests and learning curves only.

Tables for the report (the figures the DLR paper's method section rests on):
  - ``generation_tasks``: demos, pattern discovery (episode NMI / ARI against the
    demonstrators' strategies, pattern sizes), how far apart the BC patterns' paths are, and
    the wall time of every step;
  - ``generation_success``: per source and pattern, closed-loop success of the BC policy
    (Learn), of PPO's first and last training iterations, and of the final policy's rollouts
    (Reinforce), with counts so that small samples show as small;
  - ``learning_curves``: PPO's success per iteration with its Wilson CI, KL to init, entropy;
  - ``occupancy``: which ways of solving each task the rollouts use (VAE pattern and
    demonstrator strategy), per source and pattern, during PPO and in the final rollouts;
  - ``diversity_ci``: every source's diversity over O2O's with bootstrap CIs;
and ``answers``: the collapse questions in a few sentences, computed from those tables.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from evaluation.stats import wilson_interval
from generation.dlr import occupancy as occ
from generation.manifest import read_manifest

STEPS = ("demos", "discover", "learn", "reinforce", "rollouts")


def _manifest(d: Path) -> dict | None:
    """The step's manifest if the step is complete."""
    m = read_manifest(d)
    return m if m and m.get("status") == "complete" else None


def task_dirs(run_dir: Path) -> list[tuple[str, int, Path]]:
    """``generation/<suite>/<index>/`` folders, sorted."""
    out = []
    for d in sorted((Path(run_dir) / "generation").glob("*/*")):
        if d.is_dir() and d.name.isdigit():
            out.append((d.parent.name, int(d.name), d))
    return sorted(out)


def _seconds(d: Path) -> float | None:
    """Total wall time of the complete manifests under ``d`` (the step's sub-runs summed)."""
    times = [m["wall_time_s"] for f in d.rglob("manifest.json") if (m := _manifest(f.parent))]
    return round(sum(times), 1) if times else None


def generation_tasks(run_dir: Path) -> pd.DataFrame:
    rows = []
    for suite, index, d in task_dirs(run_dir):
        row: dict = {"suite": suite, "task": index}
        if m := _manifest(d / "demos"):
            row["demos"] = m["result"].get("episodes")
        if m := _manifest(d / "discover"):
            r = m["result"]
            row |= {"episode_nmi": r.get("episode_nmi"), "episode_ari": r.get("episode_ari"),
                    "pattern_sizes": " / ".join(map(str, r.get("pattern_sizes", [])))}  # fmt: skip
        if m := _manifest(d / "learn"):
            row["bc_separation_ratio"] = m["result"].get("separation_ratio")
        for step in STEPS:
            row[f"{step}_s"] = _seconds(d / step) if (d / step).is_dir() else None
        rows.append(row)
    return pd.DataFrame(rows)


def _curve_success(curves: Path, which: str) -> tuple[int, int] | None:
    """(successes, episodes) of PPO's first or last training iteration."""
    if not curves.is_file():
        return None
    df = pd.read_csv(curves)
    if df.empty:
        return None
    row = df.iloc[0] if which == "first" else df.iloc[-1]
    if pd.isna(row["episodes"]) or row["episodes"] == 0 or pd.isna(row["success_rate"]):
        return 0, 0  # no episode finished within the iteration (tiny budgets)
    return round(row["success_rate"] * row["episodes"]), int(row["episodes"])


def generation_success(run_dir: Path) -> pd.DataFrame:
    rows = []
    for suite, index, d in task_dirs(run_dir):
        learn = _manifest(d / "learn")
        n_eval = (learn or {}).get("config", {}).get("learn", {}).get("eval_episodes", 0)
        for source_dir in sorted((d / "rollouts").glob("*")):
            source = source_dir.name
            rollouts = _manifest(source_dir)
            if rollouts is None:
                continue
            for pattern, stats in rollouts["result"].items():
                key = "success_o2o" if source in ("o2o", "o2o_kl") else f"success_pattern_{pattern}"
                # MI trains one policy over sampled patterns; DLR one per pattern
                rdir = d / "reinforce" / source
                if source == "dlr":
                    rdir = rdir / f"pattern_{pattern}"
                first = _curve_success(rdir / "curves.csv", "first")
                last = _curve_success(rdir / "curves.csv", "last")
                bc = (learn or {}).get("result", {}).get(key)
                rows.append({
                    "suite": suite, "task": index, "source": source,
                    "pattern": "-" if pattern == "None" else pattern,
                    "bc_success": bc, "bc_episodes": n_eval if bc is not None else 0,
                    "ppo_first_iter": f"{first[0]}/{first[1]}" if first else None,
                    "ppo_last_iter": f"{last[0]}/{last[1]}" if last else None,
                    "rollout_successes": stats["succeeded"], "rollout_attempts": stats["attempted"],
                    "rollout_success": stats["success_rate"], "kept": stats["kept"],
                })  # fmt: skip
    return pd.DataFrame(rows)


def pooled_success(success: pd.DataFrame) -> pd.DataFrame:
    """Per source, over tasks and patterns: BC success and final-policy rollout success."""
    if success.empty:
        return success
    df = success.assign(bc_successes=success["bc_success"].fillna(0) * success["bc_episodes"])
    g = df.groupby("source")[["bc_successes", "bc_episodes", "rollout_successes",
                              "rollout_attempts", "kept"]].sum()  # fmt: skip
    g["bc_success"] = g["bc_successes"] / g["bc_episodes"].where(g["bc_episodes"] > 0)
    g["rollout_success"] = g["rollout_successes"] / g["rollout_attempts"].where(
        g["rollout_attempts"] > 0
    )
    g["bc_successes"] = g["bc_successes"].round().astype(int)
    return g.reset_index()


def _runs(d: Path) -> list[tuple[str, int, Path]]:
    """(source, pattern, folder) of every PPO run of a task (pattern -1: none or sampled)."""
    out = []
    for source_dir in sorted((d / "reinforce").glob("*")):
        subs = sorted(source_dir.glob("pattern_*"))
        if subs:
            out += [(source_dir.name, int(p.name.split("_")[1]), p) for p in subs]
        else:
            out.append((source_dir.name, -1, source_dir))
    return out


def learning_curves(run_dir: Path) -> pd.DataFrame:
    """PPO's learning curves, one row per (task, source, pattern, iteration)."""
    frames = []
    for suite, index, d in task_dirs(run_dir):
        for source, pattern, rdir in _runs(d):
            f = rdir / "curves.csv"
            if not f.is_file():
                continue
            c = pd.read_csv(f)
            if c.empty or not {"iteration", "episodes", "success_rate"} <= set(c.columns):
                continue  # older or partial curves: nothing to plot per iteration
            episodes = c["episodes"].fillna(0).astype(int)
            successes = (c["success_rate"].fillna(0) * episodes).round().astype(int)
            ci = [wilson_interval(s, n) for s, n in zip(successes, episodes, strict=True)]
            frames.append(
                c.assign(
                    task=f"{suite}/{index}",
                    source=source,
                    pattern=pattern,
                    successes=successes,
                    ci_low=[a for a, _ in ci],
                    ci_high=[b for _, b in ci],
                )
            )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def occupancy(run_dir: Path) -> pd.DataFrame:
    """Mode occupancy summaries (``generation.dlr.occupancy.summarise``) of every task."""
    frames = []
    for _suite, _index, d in task_dirs(run_dir):
        f, disc = d / "analysis" / "occupancy.parquet", _manifest(d / "discover")
        demos = _manifest(d / "demos")
        if not f.is_file() or disc is None:
            continue
        counts = pd.read_parquet(f)
        if counts.empty:
            continue
        n_labels = {
            "vae": len(disc["result"]["pattern_sizes"]),
            "strategy": len((demos or {}).get("result", {}).get("strategies", [])) or 1,
        }
        failures = (_manifest(d / "analysis") or {}).get("config", {}).get("keep_failures")
        episodes = "all kept (failures too)" if failures else "successes"
        frames.append(occ.summarise(counts, n_labels).assign(episodes=episodes))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def diversity_ci(run_dir: Path) -> pd.DataFrame:
    f = Path(run_dir) / "datasets" / "diversity_ci.parquet"
    return pd.read_parquet(f) if f.is_file() else pd.DataFrame()


def _rate(s: int, n: int) -> str:
    lo, hi = wilson_interval(s, n)
    return f"{s}/{n} = {s / n:.0%} [{lo:.0%}, {hi:.0%}]" if n else "no episodes"


def answers(run_dir: Path) -> list[str]:
    """The collapse questions, answered from the run's own tables (markdown bullets)."""
    out = []
    success = generation_success(run_dir)
    if not success.empty:
        lines = []
        for r in success.itertuples():
            bc_n = int(r.bc_episodes or 0)
            bc_s = round((r.bc_success or 0) * bc_n)
            lo_bc, hi_bc = wilson_interval(bc_s, bc_n)
            lo_rl, hi_rl = wilson_interval(int(r.rollout_successes), int(r.rollout_attempts))
            verdict = (
                "higher (CIs apart)" if lo_rl > hi_bc
                else "lower (CIs apart)" if hi_rl < lo_bc
                else "not distinguishable (CIs overlap)"
            )  # fmt: skip
            who = r.source if r.pattern == "-" else f"{r.source} pattern {r.pattern}"
            lines.append(
                f"  - {r.suite}/{r.task} {who}: BC {_rate(bc_s, bc_n)} -> after PPO "
                f"{_rate(int(r.rollout_successes), int(r.rollout_attempts))}: {verdict}"
            )
        out.append("1. **Did PPO raise success over BC?**\n" + "\n".join(lines))
    occupancy_summary = occupancy(run_dir)
    if not occupancy_summary.empty:
        lines = []
        strat = occupancy_summary[occupancy_summary["labeler"] == "strategy"]
        for (task, source, pattern), g in strat.groupby(["task", "source", "pattern"]):
            stages = {
                st: g[g["stage"] == st].sort_values("iteration") for st in ("bc", "ppo", "rollouts")
            }
            who = source if pattern < 0 else f"{source} pattern {pattern}"
            parts = []
            if len(stages["bc"]):
                r = stages["bc"].iloc[0]
                parts.append(f"BC {r.entropy:.2f} (n={r.n}; {r.shares})")
            parts += [
                f"it<={r.iteration} {r.entropy:.2f} (n={r.n})" for r in stages["ppo"].itertuples()
            ]
            if len(stages["rollouts"]):
                r = stages["rollouts"].iloc[0]
                parts.append(f"final {r.entropy:.2f} (n={r.n}; {r.shares})")
            if parts:
                lines.append(
                    f"  - {task} {who}, strategy entropy in nats (max {g['max_entropy'].iloc[0]:.2f};"
                    " shares of the strategies): " + " -> ".join(parts)
                )
        leak = occupancy_summary[
            (occupancy_summary["labeler"] == "vae")
            & (occupancy_summary["stage"] == "rollouts")
            & occupancy_summary.get("leakage", pd.Series(dtype=float)).notna()
        ]
        for r in leak.itertuples():
            lines.append(
                f"  - {r.task} {r.source} pattern {r.pattern}: leakage {r.leakage:.0%} of "
                f"{r.n} successful rollouts labelled as another pattern by the VAE"
            )
        out.append(
            "2. **Did O2O's strategy entropy fall during RL? Does DLR keep its patterns?**\n"
            + "\n".join(lines)
        )
    cis = diversity_ci(run_dir)
    lines = []
    if not cis.empty:
        for r in cis[cis["num"] == "dlr"].itertuples():
            side = (
                "DLR more diverse" if r.ci_low > 1
                else f"{r.den} more diverse" if r.ci_high < 1
                else "no difference resolved"
            )  # fmt: skip
            lines.append(
                f"  - {r.task} DLR/{r.den} {r.scope} {r.metric}: {r.ratio:.2f} [{r.ci_low:.2f}, "
                f"{r.ci_high:.2f}] ({side}; n={r.n_num}/{r.n_den}, {r.n_states} init states)"
            )
    excluded = ((_manifest(Path(run_dir) / "datasets") or {}).get("result") or {}).get(
        "excluded_sources"
    )
    if excluded:
        lines += [f"  - {s} has no dataset and no ratio: {why}" for s, why in excluded.items()]
    if lines:
        out.append(
            "3. **DLR's diversity over single-pattern RL's, on successful same-init-state "
            "episodes** (ratio [bootstrap 95% CI]):\n" + "\n".join(lines)
        )
    return out
