"""Closed-loop success under LIBERO-PRO perturbations, against the nominal suite.

Each adapted policy runs on the perturbed copies (:mod:`evaluation.perturbations`) of the
tasks it was evaluated on, with the nominal evaluation's harness, init-state indices, seeds
and episodes per task (:func:`evaluation.closed_loop.evaluate`). Its rows go to
``evaluation/robustness.parquet``: the results schema (``suite`` is the package's perturbed
suite, ``task`` its task) plus ``base_suite``, ``perturbation`` and ``base_task``, the nominal
twin, so that the report compares every perturbed cell with the nominal success of the same
tasks and seeds. The table functions below are pure (frames in, frames out).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from evaluation.closed_loop import EvalPool, PolicyFn, evaluate
from evaluation.display import SOURCE_ORDER, ordered, source_label, suite_label
from evaluation.perturbations import Perturbation
from evaluation.results import merge_table
from evaluation.stats import (
    RESULT_COLUMNS,
    RESULT_KEY,
    difference_interval,
    format_rate,
    wilson_interval,
)
from generation.manifest import atomic_write

log = logging.getLogger(__name__)

ROBUSTNESS_FILE = "robustness.parquet"
DESCRIPTIONS_FILE = "perturbations.json"  # "<package suite>": what it changes, for the report
GROUP = ["arch", "source", "size", "base_suite", "perturbation"]


def evaluate_perturbed(
    policy: str | Path | PolicyFn,
    perturbation: Perturbation,
    *,
    arch: str,
    source: str,
    size: int,
    tasks: Sequence[int] | None,
    episodes_per_task: int,
    seeds: Sequence[int],
    out_dir: str | Path,
    horizon: int | None = None,
    video_episodes: int = 0,
    pool: EvalPool | None = None,
    num_workers: int = 1,
    image_size: int | None = None,
    device: str | None = None,
) -> pd.DataFrame:
    """Evaluate ``policy`` on ``perturbation``'s copies of nominal ``tasks`` (indices; None:
    all) and merge the complete rows into ``out_dir/robustness.parquet``; return the rows."""
    from generation.envs.suites import list_tasks

    out_dir = Path(out_dir)
    indices = perturbation.perturbed_indices(None if tasks is None else list(tasks))
    rows = evaluate(
        policy, arch=arch, source=source, size=size, suite=perturbation.key, tasks=indices,
        episodes_per_task=episodes_per_task, seeds=seeds, num_workers=num_workers,
        out_dir=out_dir, image_size=image_size, video_episodes=video_episodes, horizon=horizon,
        device=device, pool=pool, results_file=None,
    )  # fmt: skip
    nominal = list_tasks(perturbation.suite)
    twin_name = {t.name: nominal[perturbation.twins[t.index]].name
                 for t in list_tasks(perturbation.key)}  # fmt: skip
    rows = rows.assign(base_suite=perturbation.suite, perturbation=perturbation.name,
                       base_task=rows["task"].map(twin_name))  # fmt: skip
    complete = rows[rows["episodes"] == episodes_per_task]
    if len(complete):
        merge_table(out_dir / ROBUSTNESS_FILE, complete, RESULT_KEY, ints=("size", "seed"))
    return rows


def write_descriptions(out_dir: str | Path, families: Sequence[Perturbation]) -> Path:
    """Add the families' descriptions to ``out_dir/perturbations.json`` (the report shows
    them without importing LIBERO)."""
    import json

    path = Path(out_dir) / DESCRIPTIONS_FILE
    known = json.loads(path.read_text()) if path.is_file() else {}
    known |= {p.key: p.description for p in families}
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(known, indent=1, sort_keys=True))
    return path


# --------------------------------------------------------------------------- the report's rows
def _counts(rows: pd.DataFrame, prefix: str = "") -> dict:
    """Episodes, successes, success rate and Wilson 95% CI of ``rows`` pooled."""
    n, k = int(rows["episodes"].sum()), int(rows["successes"].sum())
    low, high = wilson_interval(k, n)
    return {f"{prefix}episodes": n, f"{prefix}successes": k,
            f"{prefix}success_rate": k / n if n else float("nan"),
            f"{prefix}ci_low": low, f"{prefix}ci_high": high}  # fmt: skip


def robustness_long(results: pd.DataFrame, perturbed: pd.DataFrame) -> pd.DataFrame:
    """Per arch x source x size x nominal suite x perturbation: perturbed success, nominal
    success on the same tasks (the perturbed tasks' twins) and seeds, both with Wilson 95% CIs
    (tasks and seeds pooled), and the drop ``nominal - perturbed`` in points with Newcombe's
    95% CI. Where the nominal evaluation lacks one of those tasks or seeds, the nominal side
    and the drop are NaN."""
    if perturbed.empty:
        return pd.DataFrame()
    if results.empty:
        results = pd.DataFrame(columns=list(RESULT_COLUMNS))
    out = []
    for key, cell in perturbed.groupby(GROUP, sort=True):
        arch, source, size, suite, _ = key
        pairs = set(zip(cell["base_task"], cell["seed"], strict=True))
        same = results[(results["arch"] == arch) & (results["source"] == source)
                       & (results["size"] == size) & (results["suite"] == suite)]  # fmt: skip
        same = same[[(t, s) in pairs for t, s in zip(same["task"], same["seed"], strict=True)]]
        row = dict(zip(GROUP, key, strict=True)) | {"tasks": cell["base_task"].nunique()}
        row |= _counts(cell)
        nan = float("nan")
        if len(same) == len(pairs):
            row |= _counts(same, "nominal_")
            low, high = difference_interval(row["nominal_successes"], row["nominal_episodes"],
                                            row["successes"], row["episodes"])  # fmt: skip
            drop = row["nominal_success_rate"] - row["success_rate"]
            row |= {"drop_points": 100 * drop, "drop_ci_low": 100 * low,
                    "drop_ci_high": 100 * high}  # fmt: skip
        else:
            row |= {f"nominal_{c}": nan for c in ("episodes", "successes", "success_rate",
                                                   "ci_low", "ci_high")}  # fmt: skip
            row |= {"drop_points": nan, "drop_ci_low": nan, "drop_ci_high": nan}
        out.append(row)
    frame = pd.DataFrame(out)
    frame["size"] = frame["size"].astype(int)
    return frame


def _drop_text(row: dict) -> str:
    if pd.isna(row["drop_points"]):
        return "-"
    return f"{row['drop_points']:+.1f} [{row['drop_ci_low']:+.1f}, {row['drop_ci_high']:+.1f}]"


def _count_text(value) -> str:
    return "-" if pd.isna(value) else str(int(value))


def robustness_table(long: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(display strings, numbers): a row per arch x source x nominal suite x perturbation at
    each run's largest pretraining size (as Table 2): nominal and perturbed success % with
    Wilson 95% CIs, the drop in points with its 95% CI, and the episodes behind each side."""
    if long.empty:
        return pd.DataFrame(), pd.DataFrame()
    largest = long.groupby(["arch", "source"])["size"].transform("max")
    at_largest = long[long["size"] == largest]
    display_rows, number_rows = [], []
    for arch in sorted(at_largest["arch"].unique()):
        sub = at_largest[at_largest["arch"] == arch]
        for source in ordered(sub["source"].tolist(), SOURCE_ORDER):
            for row in sub[sub["source"] == source].to_dict("records"):
                nominal = "-"
                if not pd.isna(row["nominal_success_rate"]):
                    rate, low, high = (
                        row[f"nominal_{c}"] for c in ("success_rate", "ci_low", "ci_high")
                    )
                    nominal = format_rate(rate, low, high)
                display_rows.append({
                    "arch": arch, "source": source_label(source), "size": int(row["size"]),
                    "suite": suite_label(row["base_suite"]), "perturbation": row["perturbation"],
                    "nominal %": nominal,
                    "perturbed %": format_rate(row["success_rate"], row["ci_low"], row["ci_high"]),
                    "drop (points)": _drop_text(row),
                    "n (nominal / perturbed)":
                        f"{_count_text(row['nominal_episodes'])} / {row['episodes']}",
                })  # fmt: skip
                number_rows.append(row)
    return pd.DataFrame(display_rows), pd.DataFrame(number_rows)


# --------------------------------------------------------------------------- the report's section
def robustness_sections(
    run_dir: Path, results: pd.DataFrame, out_dir: Path, outputs: dict
) -> list[str]:
    """The report's part on perturbations: the table, what each family changes, a plot per
    arch; written into ``out_dir``, their paths added to ``outputs``."""
    import json

    from evaluation import plots
    from evaluation.report import to_markdown, write_table

    perturbed = pd.read_parquet(run_dir / "evaluation" / "robustness.parquet")
    display, numbers = robustness_table(robustness_long(results, perturbed))
    if display.empty:
        return ["## Robustness under perturbations\n", "_No perturbed episodes yet._\n"]
    outputs |= write_table(display, numbers, out_dir, "robustness",
                           "Success % under LIBERO-PRO perturbations (Wilson 95% CI)")  # fmt: skip
    sections = [
        "## Robustness under perturbations\n",
        "Closed-loop success on LIBERO-PRO's perturbed copies of the evaluated tasks (same "
        "init-state indices, seeds and episodes per task) beside the nominal success of the same "
        "tasks and seeds, at each run's largest pretraining size; Wilson 95% CIs; the drop is "
        "nominal minus perturbed in points with Newcombe's 95% CI for a difference of two "
        "proportions. n: episodes behind each side.\n\n" + to_markdown(display)
        + "\n[csv](robustness.csv) · [tex](robustness.tex)\n",
    ]  # fmt: skip
    described = run_dir / "evaluation" / DESCRIPTIONS_FILE
    if described.is_file():
        families = json.loads(described.read_text())
        lines = [f"- `{key}`: {text}" for key, text in sorted(families.items())]
        sections.append("What each perturbation changes (read from its BDDL files):\n\n"
                        + "\n".join(lines) + "\n")  # fmt: skip
    for arch, path in plots.robustness_plots(numbers, out_dir).items():
        outputs[f"robustness_{arch}"] = path
        sections.append(f"![robustness {arch}]({path.name})\n")
    return sections
