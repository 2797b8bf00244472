"""What a recipe will do, counted without running anything (``dlr run --dry-run``)."""

from __future__ import annotations

from benchmarks.config import Recipe
from generation.envs.suites import parse_tasks


def _n_tasks(suite: str, tasks) -> int:
    return len(parse_tasks(suite, tasks))


def plan(recipe: Recipe, stages: list[str]) -> list[str]:
    """One line per unit of work of each stage in ``stages``: tasks, env steps, PPO updates,
    checkpoints and episodes, as the stages compute them."""
    lines = []
    if recipe.cluster.backend == "ray":
        where = (
            recipe.cluster.address or f"a one-machine Ray, {recipe.cluster.num_cpus or 'all'} CPUs"
        )
        lines.append(
            f"cluster     Ray ({where}): demos, generation and evaluation jobs as Ray tasks"
        )
    if "demos" in stages:
        d = recipe.demos
        for suite in d.suites:
            n = _n_tasks(suite, d.tasks)
            lines.append(f"demos       {suite}: {n} task(s) x {d.episodes_per_task} episodes = "
                         f"{n * d.episodes_per_task} scripted episodes")  # fmt: skip
    if "generation" in stages:
        g = recipe.generation
        n = _n_tasks(g.suite, g.tasks)
        K = g.num_patterns
        lines.append(f"generation  {g.suite}: {n} task(s), K={K} patterns, sources "
                     f"{', '.join(g.sources)}")  # fmt: skip
        for source in g.sources:
            ppo = g.source_ppo(source)
            runs = K if source == "dlr" else 1
            per = " per pattern" if source == "dlr" else ""
            lines.append(
                f"  {source:7s} {runs} PPO run(s) per task x {ppo.total_env_steps} env steps"
                f"{per} = {ppo.num_iterations} PPO update(s){per} "
                f"({runs * n * ppo.total_env_steps} env steps in all)"
            )
        lines.append(f"  datasets: {g.episodes_per_task} episodes per task per source (full), "
                     f"subsets {g.subset_sizes}")  # fmt: skip
    pre, ada, ev = recipe.pretraining, recipe.adaptation, recipe.evaluation
    n_pre = len(pre.archs) * len(pre.sources) * len(pre.sizes) if pre else 0
    if "pretraining" in stages:
        lines.append(f"pretraining {n_pre} checkpoint(s) ({'/'.join(pre.archs)} x "
                     f"{'/'.join(pre.sources)} x {'/'.join(pre.sizes)}), {pre.steps} steps of "
                     f"batch {pre.batch_size} each")  # fmt: skip
    n_ada = (n_pre + len(pre.archs)) * len(ada.suites) if ada else 0
    if "adaptation" in stages:
        lines.append(f"adaptation  {n_ada} checkpoint(s) (each pretrained one and one from "
                     f"scratch per arch, x {len(ada.suites)} suite(s)), {ada.method}, "
                     f"{ada.steps} steps each")  # fmt: skip
    if "evaluation" in stages:
        episodes, perturbed = 0, 0
        families = {r.suite: len(r.perturbations) for r in ev.robustness}
        for suite in ada.suites:
            tasks = ev.tasks
            if tasks is None:
                tasks = recipe.demos.tasks if suite in recipe.demos.suites else "all"
            per_ckpt = _n_tasks(suite, tasks) * ev.episodes_per_task * len(ev.seeds)
            episodes += per_ckpt * (n_pre + len(pre.archs))
            perturbed += per_ckpt * (n_pre + len(pre.archs)) * families.get(suite, 0)
        lines.append(f"evaluation  {n_ada} checkpoint(s), {episodes} closed-loop episodes in all"
                     + (f" (+ {perturbed} under {sum(families.values())} perturbation "
                        "families)" if perturbed else "")
                     + (f", {ev.offline_episodes_per_task} held-out demo(s) per task offline"
                        if ev.offline_episodes_per_task else ""))  # fmt: skip
    if "report" in stages:
        lines.append("report      tables, plots and index.html from the results files")
    return lines
