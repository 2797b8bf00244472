"""What the generator did, per task: read from its manifests and learning curves only.

Two tables for the report (the figures the DLR paper's method section rests on):
  - ``generation_tasks``: demos, pattern discovery (episode NMI / ARI against the
    demonstrators' strategies, pattern sizes), how far apart the BC patterns' paths are, and
    the wall time of every step;
  - ``generation_success``: per source and pattern, closed-loop success of the BC policy
    (Learn), of PPO's first and last training iterations, and of the final policy's rollouts
    (Reinforce), with counts so that small samples show as small.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

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
                key = "success_o2o" if source == "o2o" else f"success_pattern_{pattern}"
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
