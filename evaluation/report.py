"""The benchmark report: pure functions of a run's results, diversity metrics and datasets.

``build_report(runs/<x>)`` reads ``evaluation/results.parquet``, ``evaluation/diversity.parquet``,
the generator's manifests and learning curves, and the kept datasets
(``datasets/<source>/full``), and writes into ``report/``:
  - ``success``: Table 2 of the paper, arch x pretraining source x suite success % (Wilson 95%
    CI) with the episodes behind each cell, plus the average over suites (.md .csv .tex);
  - ``diversity``: Table 1, metrics (with units) x sources, mean over tasks with its standard
    error, and the DLR/O2O ratio (.md .csv .tex);
  - ``scaling_<arch>.png``: success against pretraining size, a line per source, error bars;
  - ``offline`` and ``offline_<arch>.png``: held-out action error (``evaluation/offline.parquet``,
    when the recipe asks for it) per arch x source x size, and against pretraining size;
  - ``robustness`` and ``robustness_<arch>.png``: success under LIBERO-PRO perturbations
    (``evaluation/robustness.parquet``) against the nominal success of the same tasks;
  - the generator's tables and ``learning_curves.png`` (PPO, per source and pattern);
  - ``tsne.png`` and ``pairwise_distances.png`` of end-effector trajectories;
  - ``report.md``, an index of all of them, and ``index.html``, the same as one page with
    rollout clips, the resolved recipe and versions (:mod:`evaluation.html_report`).
It never runs a model; whatever input is missing skips its part with a note.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.display import (
    DIVERSITY_METRICS,
    SOURCE_LABELS,
    SOURCE_ORDER,
    SUITE_LABELS,
    ordered,
    source_label,
)
from evaluation.stats import format_rate, pool, suite_average
from generation.manifest import atomic_write

log = logging.getLogger(__name__)

__all__ = ["SOURCE_LABELS", "SOURCE_ORDER", "SUITE_LABELS", "build_report"]
AVG = "avg"
_ordered = ordered  # evaluation.offline imports it from here


# --------------------------------------------------------------------------- Table 2: success
def success_long(results: pd.DataFrame) -> pd.DataFrame:
    """Per arch x source x suite (plus ``avg``) at each run's largest pretraining size.

    Tasks and seeds are pooled (Wilson CI of the pooled counts); ``avg`` is the mean of the
    suite success rates, as in the paper, with the CI of all episodes pooled.
    """
    if results.empty:
        return pd.DataFrame()
    largest = results.groupby(["arch", "source"])["size"].transform("max")
    df = results[results["size"] == largest]
    per_suite = pool(df, ["arch", "source", "size", "suite"])
    avg = suite_average(per_suite, ["arch", "source", "size"]).assign(suite=AVG)
    return pd.concat([per_suite, avg], ignore_index=True)


def _episodes_text(counts: list[int]) -> str:
    """Episodes behind each suite's cell: ``40``, or ``40 / 40 / 30`` when they differ."""
    return str(counts[0]) if len(set(counts)) == 1 else " / ".join(map(str, counts))


def success_table(results: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 2 as (display strings, numbers): rows arch x source, columns suites and avg, and
    ``n``, the episodes behind each suite's cell."""
    long = success_long(results)
    if long.empty:
        return pd.DataFrame(), pd.DataFrame()
    suites = ordered([s for s in long["suite"] if s != AVG], list(SUITE_LABELS))
    columns = [*suites, AVG] if len(suites) > 1 else suites
    display_rows, number_rows = [], []
    for arch in sorted(long["arch"].unique()):
        sub = long[long["arch"] == arch]
        for source in ordered(sub["source"].tolist(), SOURCE_ORDER):
            cells = sub[sub["source"] == source].set_index("suite")
            size = int(cells["size"].iloc[0])
            shown = {"arch": arch, "source": source_label(source), "size": size}
            numbers = {"arch": arch, "source": source, "size": size}
            for suite in columns:
                label = SUITE_LABELS.get(suite, suite) if suite != AVG else "Avg"
                if suite in cells.index:
                    c = cells.loc[suite]
                    shown[label] = format_rate(c["success_rate"], c["ci_low"], c["ci_high"])
                    numbers[f"{suite}_success_rate"] = float(c["success_rate"])
                    numbers[f"{suite}_ci_low"] = float(c["ci_low"])
                    numbers[f"{suite}_ci_high"] = float(c["ci_high"])
                    numbers[f"{suite}_episodes"] = int(c["episodes"])
                else:
                    shown[label] = "-"
            shown["n per suite"] = _episodes_text(
                [int(cells.loc[s, "episodes"]) for s in suites if s in cells.index]
            )
            display_rows.append(shown)
            number_rows.append(numbers)
    return pd.DataFrame(display_rows), pd.DataFrame(number_rows)


# --------------------------------------------------------------------------- Table 1: diversity
def _mean_se(values: pd.Series) -> tuple[float, float, int]:
    n = int(values.count())
    se = float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return float(values.mean()), se, n


def _value_text(mean: float, se: float) -> str:
    return f"{mean:.4g}" if np.isnan(se) else f"{mean:.4g} ± {se:.2g}"


def diversity_table(
    diversity: pd.DataFrame, num: str = "dlr", den: str = "o2o"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 1 as (display, numbers): a row per metric with its unit; per source the mean over
    tasks ± its standard error (none with one task), and the ratio of the ``num`` and ``den``
    means with the range of the per-task ratios."""
    if diversity.empty:
        return pd.DataFrame(), pd.DataFrame()
    sources = ordered(diversity["source"], [s for s in SOURCE_ORDER if s != "none"])
    metrics = list(dict.fromkeys(diversity["metric"]))
    wide = diversity.pivot_table(index=["metric", "task"], columns="source", values="value")
    display_rows, number_rows = [], []
    for metric in metrics:
        label, unit = DIVERSITY_METRICS.get(metric, (metric, ""))
        per_task = wide.loc[metric]
        shown = {"metric": label, "unit": unit}
        numbers = {"metric": metric, "unit": unit}
        for source in sources:
            mean, se, n = _mean_se(per_task[source]) if source in per_task else (np.nan, np.nan, 0)
            shown[source_label(source)] = "-" if n == 0 else _value_text(mean, se)
            numbers |= {f"{source}_mean": mean, f"{source}_se": se, f"{source}_tasks": n}
        if num in per_task and den in per_task:
            ratio = (
                numbers[f"{num}_mean"] / numbers[f"{den}_mean"]
                if numbers[f"{den}_mean"]
                else np.nan
            )
            per = (per_task[num] / per_task[den].where(per_task[den] != 0)).dropna()
            text = "-" if np.isnan(ratio) else f"{ratio:.3g}"
            if len(per) > 1 and per.min() != per.max():
                text += f" (tasks {per.min():.3g}-{per.max():.3g})"
            shown[f"{source_label(num)} / {source_label(den)}"] = text
            numbers |= {f"{num}/{den}": ratio, f"{num}/{den}_min": per.min() if len(per) else np.nan,
                        f"{num}/{den}_max": per.max() if len(per) else np.nan}  # fmt: skip
        display_rows.append(shown)
        number_rows.append(numbers)
    return pd.DataFrame(display_rows), pd.DataFrame(number_rows)


# --------------------------------------------------------------------------- table formats
def _cell(value: object) -> str:
    if isinstance(value, float):
        return "-" if pd.isna(value) else f"{value:.4g}"
    return str(value)


def to_markdown(df: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *rows]) + "\n"


def _tex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"),
                 ("#", r"\#"), ("$", r"\$")):  # fmt: skip
        text = text.replace(a, b)
    return text


def to_latex(df: pd.DataFrame, caption: str = "") -> str:
    lines = [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{" + "l" * df.shape[1] + "}",
             r"\toprule", " & ".join(_tex_escape(str(c)) for c in df.columns) + r" \\",
             r"\midrule"]  # fmt: skip
    for row in df.itertuples(index=False):
        lines.append(" & ".join(_tex_escape(_cell(v)) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(r"\caption{" + _tex_escape(caption) + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def _write_text(path: Path, text: str) -> Path:
    with atomic_write(path) as tmp:
        tmp.write_text(text)
    return path


def write_table(
    display: pd.DataFrame, numbers: pd.DataFrame, out_dir: Path, name: str, caption: str
) -> dict[str, Path]:
    """``<name>.md`` and ``<name>.tex`` from the display strings, ``<name>.csv`` from numbers."""
    out = {
        f"{name}_md": _write_text(out_dir / f"{name}.md", to_markdown(display)),
        f"{name}_tex": _write_text(out_dir / f"{name}.tex", to_latex(display, caption)),
    }
    with atomic_write(out_dir / f"{name}.csv") as tmp:
        numbers.to_csv(tmp, index=False)
    out[f"{name}_csv"] = out_dir / f"{name}.csv"
    return out


# --------------------------------------------------------------------------- generation
def _generation_sections(run_dir: Path, out_dir: Path, outputs: dict) -> list[str]:
    """The generator's per-task figures (discovery, success before and after Reinforce, wall
    times) from its manifests; nothing when the run has no generation folder."""
    from evaluation.generation_tables import generation_success, generation_tasks, pooled_success

    tasks = generation_tasks(run_dir)
    if tasks.empty:
        return []
    sections = ["## Generation (Discover, Learn, Reinforce)\n"]
    outputs |= write_table(tasks, tasks, out_dir, "generation_tasks", "Generation per task")
    sections.append(
        "Per task: demonstrations, discovery against the demonstrators' strategies (episode "
        "NMI / ARI), pattern sizes, BC path separation (between / within patterns) and wall "
        "time per step in seconds.\n\n" + to_markdown(tasks)
    )
    success = generation_success(run_dir)
    if not success.empty:
        outputs |= write_table(success, success, out_dir, "generation_success",
                               "Success before and after Reinforce")  # fmt: skip
        pooled = pooled_success(success)
        outputs |= write_table(pooled, pooled, out_dir, "generation_success_pooled",
                               "Success before and after Reinforce, pooled")  # fmt: skip
        sections.append(
            "Closed-loop success per source and pattern: the BC policy (Learn, `bc_episodes` "
            "episodes), PPO's first and last training iterations (successes / episodes), and "
            "the final policy's rollouts (kept = episodes that went into the datasets). MI "
            "trains one policy over sampled patterns, starting from DLR's BC policy.\n\n"
            + to_markdown(success) + "\nPooled over tasks and patterns:\n\n"
            + to_markdown(pooled)
        )  # fmt: skip
    sections += _collapse_sections(run_dir, out_dir, outputs)
    return sections


def _collapse_sections(run_dir: Path, out_dir: Path, outputs: dict) -> list[str]:
    """Learning curves, mode occupancy and diversity with CIs, and the answers they give."""
    from evaluation import generation_tables as gt
    from evaluation.generation_plots import learning_curves_plot, occupancy_plot

    sections = []
    answers = gt.answers(run_dir)
    if answers:
        sections.append(
            "## Does RL collapse? (answers from this run)\n\n" + "\n".join(answers) + "\n"
        )
    curves = gt.learning_curves(run_dir)
    if not curves.empty:
        outputs["learning_curves"] = learning_curves_plot(curves, out_dir / "learning_curves.png")
        cols = ["task", "source", "pattern", "iteration", "global_step", "successes", "episodes",
                "success_rate", "ci_low", "ci_high", "kl_to_init", "entropy", "approx_kl", "epochs"]  # fmt: skip
        curves[[c for c in cols if c in curves]].to_csv(
            out_dir / "learning_curves.csv", index=False
        )
        outputs["learning_curves_csv"] = out_dir / "learning_curves.csv"
        sections.append(
            "## PPO learning curves\n\nTraining success per iteration (Wilson 95% band), KL to "
            "the initial policy and entropy ([csv](learning_curves.csv)).\n\n"
            "![learning curves](learning_curves.png)\n"
        )
    occ = gt.occupancy(run_dir)
    if not occ.empty:
        cols = [c for c in ("task", "source", "pattern", "stage", "iteration", "labeler", "n",
                            "shares", "entropy", "max_entropy", "leakage", "episodes") if c in occ]  # fmt: skip
        table = occ[cols]
        outputs |= write_table(table, table, out_dir, "occupancy", "Mode occupancy")
        outputs["occupancy_plot"] = occupancy_plot(occ, out_dir / "occupancy.png")
        sections.append(
            "## Mode occupancy\n\nWhich way of solving the task each episode uses (column "
            "`episodes`: successes only, or failures too where the recipe keeps them): "
            "`strategy` is the scripted demonstrators' strategy of the nearest demonstration "
            "(1-NN on end-effector paths), `vae` the Discover VAE's pattern. `bc` rows are Learn's "
            "evaluation of the BC policy (iteration 0), `ppo` rows pool PPO's training episodes "
            "over a window of iterations ending at `iteration`, `rollouts` the final policy's "
            "rollouts. Entropy in nats (max = log of the number "
            "of labels: every mode used equally); leakage: share of a DLR pattern's episodes "
            "that the VAE gives another pattern.\n\n![occupancy](occupancy.png)\n\n"
            + to_markdown(table)
        )
    cis = gt.diversity_ci(run_dir)
    if cis.empty and (run_dir / "datasets" / "diversity_ci.parquet").is_file():
        sections.append(
            "## Diversity ratios with bootstrap 95% CIs\n\n_None: fewer than two successful "
            "episodes per source in the matched datasets (diversity is measured on successes "
            "only). Raise the RL budget._\n"
        )
    if not cis.empty:
        table = cis[["task", "num", "den", "scope", "metric", "num_value", "den_value", "ratio",
                     "ci_low", "ci_high", "n_num", "n_den", "n_states"]]  # fmt: skip
        outputs |= write_table(table, table, out_dir, "diversity_ci", "Diversity ratios with CIs")
        sections.append(
            "## Diversity ratios with bootstrap 95% CIs\n\nEach source's metric over O2O's, "
            "on the successful episodes of the matched datasets (every source on the same init "
            "states). `pooled`: over all of a task's episodes, episodes resampled; "
            "`per_init_state`: within each init state, averaged over states, states resampled "
            "(paired). Units: metres (distances, DTW), m^2 (variances of positions and path "
            "lengths), unitless (direction variance), voxels of 2 cm (coverage).\n\n"
            + to_markdown(table)
        )
    return sections


# --------------------------------------------------------------------------- the whole report
def find_dataset_roots(run_dir: Path) -> dict[str, Path]:
    """``datasets/<source>/full`` folders that hold a LeRobot dataset, by source."""
    roots = {}
    for info in sorted((run_dir / "datasets").glob("*/full/meta/info.json")):
        roots[info.parents[2].name] = info.parents[1]
    return roots


def build_report(
    run_dir: str | Path, dataset_roots: Mapping[str, str | Path] | None = None
) -> dict[str, Path]:
    """Write every table and plot whose inputs exist into ``run_dir/report``; return their paths.

    ``dataset_roots`` (source -> LeRobot dataset) defaults to ``datasets/<source>/full``.
    """
    from generation.manifest import atomic_dir

    run_dir = Path(run_dir)
    with atomic_dir(run_dir / "report") as tmp:  # a failed report leaves the last one whole
        outputs = _build_report(run_dir, tmp, dataset_roots)
    return {k: run_dir / "report" / p.relative_to(tmp) for k, p in outputs.items()}


def _build_report(
    run_dir: Path, out_dir: Path, dataset_roots: Mapping[str, str | Path] | None
) -> dict[str, Path]:
    from evaluation import plots
    from evaluation.stats import RESULT_COLUMNS
    from generation.integrity import check_dataset, read_table

    outputs: dict[str, Path] = {}
    sections: list[str] = [f"# DLR-Bench report: {run_dir.name}\n"]

    results_path = run_dir / "evaluation" / "results.parquet"
    fix = "delete it and rerun the evaluation stage (dlr run <recipe> --only evaluation)"
    results = (
        read_table(results_path, RESULT_COLUMNS, fix) if results_path.is_file() else pd.DataFrame()
    )
    sections.append("## Downstream success (Table 2)\n")
    if results.empty:
        sections.append(f"_Skipped: no evaluation results at `{results_path}`._\n")
    else:
        display, numbers = success_table(results)
        outputs |= write_table(display, numbers, out_dir, "success",
                               "Success % (Wilson 95% CI) at the largest pretraining size")  # fmt: skip
        sections.append(
            "Success % with Wilson 95% CI, tasks and seeds pooled, at each run's largest "
            "pretraining size; Avg is the mean over suites; n: closed-loop episodes behind each "
            "suite's cell.\n\n" + to_markdown(display)
            + "\n[csv](success.csv) · [tex](success.tex)\n"
        )  # fmt: skip
        sections.append("Against pretraining size, every size of the run:\n")
        for arch, path in plots.scaling_curves(results, out_dir).items():
            outputs[f"scaling_{arch}"] = path
            sections.append(f"![scaling {arch}]({path.name})\n")

    offline_path = run_dir / "evaluation" / "offline.parquet"
    if offline_path.is_file():
        from evaluation.offline import offline_table

        offline = read_table(offline_path, fix=fix)
        display, numbers = offline_table(offline)
        outputs |= write_table(display, numbers, out_dir, "offline",
                               "Held-out action MSE (95% CI) and gripper agreement")  # fmt: skip
        sections.append("## Held-out action error\n")
        sections.append(
            "Mean squared error of each adapted policy's first action against held-out scripted "
            "demonstrations of the same tasks (episodes adaptation never saw; lower is better), "
            "± 1.96 standard errors over episodes, and the share of frames whose gripper command "
            "has the demonstrator's sign. An offline proxy: closed-loop success is the measure.\n\n"
            + to_markdown(display) + "\n[csv](offline.csv) · [tex](offline.tex)\n"
        )  # fmt: skip
        for arch, path in plots.offline_curves(offline, out_dir).items():
            outputs[f"offline_{arch}"] = path
            sections.append(f"![held-out action error {arch}]({path.name})\n")

    if (run_dir / "evaluation" / "robustness.parquet").is_file():
        from evaluation.robustness import robustness_sections

        sections += robustness_sections(run_dir, results, out_dir, outputs)

    diversity_path = run_dir / "evaluation" / "diversity.parquet"
    diversity = read_table(diversity_path) if diversity_path.is_file() else pd.DataFrame()
    sections.append("## Trajectory diversity (Table 1)\n")
    if diversity.empty:
        sections.append(f"_Skipped: no diversity metrics at `{diversity_path}`._\n")
    else:
        display, numbers = diversity_table(diversity)
        outputs |= write_table(display, numbers, out_dir, "diversity", "Trajectory diversity")
        n_tasks = diversity["task"].nunique()
        sections.append(
            f"End-effector paths of each source's matched episodes (and of the scripted demos the "
            f"generator started from): mean over {n_tasks} task(s) ± its standard error over "
            "tasks (none with one task); positions in metres. The last column is the ratio of "
            "the DLR and O2O means, with the range of the per-task ratios.\n\n"
            + to_markdown(display) + "\n[csv](diversity.csv) · [tex](diversity.tex)\n"
        )  # fmt: skip

    sections.append("## Trajectories\n")
    roots = {k: Path(v) for k, v in (dataset_roots or find_dataset_roots(run_dir)).items()}
    for root in roots.values():
        check_dataset(root)
    if not roots:
        sections.append(f"_Skipped: no datasets under `{run_dir / 'datasets'}`._\n")
    else:
        trajectories = plots.load_trajectories(roots)
        for name, path in (
            ("tsne", plots.tsne_plot(trajectories, out_dir / "tsne.png")),
            ("pairwise_distances", plots.pairwise_plot(trajectories, out_dir / "pairwise_distances.png")),
        ):  # fmt: skip
            if path is None:
                sections.append(f"_{name}: too few episodes to plot._\n")
                continue
            outputs[name] = path
            sections.append(f"![{name}]({path.name})\n")

    sections += _generation_sections(run_dir, out_dir, outputs)
    outputs["report"] = _write_text(out_dir / "report.md", "\n".join(sections))
    from evaluation.html_report import write_html_report

    outputs["html"] = write_html_report(run_dir, roots, folder=out_dir)
    log.info("report of %s written (%d files)", run_dir, len(outputs))
    return outputs
