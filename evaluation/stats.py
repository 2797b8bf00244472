"""Success-rate statistics: Wilson score intervals and pooling of per-seed result rows.

Everything here is a pure function (counts or data frames in, numbers or frames out).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

Z_95 = 1.959963984540054  # two-sided 95% normal quantile

RESULT_KEY = ("arch", "source", "size", "suite", "task", "seed")
RESULT_COLUMNS = (*RESULT_KEY, "episodes", "successes", "success_rate", "ci_low", "ci_high")


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; ``(0, 1)`` when there are no trials.

    Unlike the normal approximation it stays inside [0, 1] and is sensible at 0 or n
    successes, which is where low-budget VLA evaluations often land.
    """
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, center - half), min(1.0, center + half)


def difference_interval(
    successes_a: int, n_a: int, successes_b: int, n_b: int, z: float = Z_95
) -> tuple[float, float]:
    """Confidence interval of ``p_a - p_b`` for two independent proportions: Newcombe's hybrid
    score interval (method 10 of Newcombe, Statistics in Medicine 1998), which combines the two
    Wilson intervals and so shares their good behaviour at 0 or n successes.
    ``(-1, 1)`` when either side has no trials."""
    if n_a <= 0 or n_b <= 0:
        return -1.0, 1.0
    p_a, p_b = successes_a / n_a, successes_b / n_b
    low_a, high_a = wilson_interval(successes_a, n_a, z)
    low_b, high_b = wilson_interval(successes_b, n_b, z)
    diff = p_a - p_b
    low = diff - math.sqrt((p_a - low_a) ** 2 + (high_b - p_b) ** 2)
    high = diff + math.sqrt((high_a - p_a) ** 2 + (p_b - low_b) ** 2)
    return max(-1.0, low), min(1.0, high)


def with_rates(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``success_rate``, ``ci_low``, ``ci_high`` from ``episodes`` and ``successes``."""
    out = df.copy()
    episodes = out["episodes"].astype(int).to_numpy()
    successes = out["successes"].astype(int).to_numpy()
    out["success_rate"] = [s / n if n else 0.0 for s, n in zip(successes, episodes, strict=True)]
    cis = [wilson_interval(int(s), int(n)) for s, n in zip(successes, episodes, strict=True)]
    out["ci_low"] = [lo for lo, _ in cis]
    out["ci_high"] = [hi for _, hi in cis]
    return out


def pool(results: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Sum episodes and successes over every column not in ``by`` (tasks, seeds), then rate + CI.

    Pooling counts weights each episode equally; with equal episodes per task and seed (the
    protocol) that equals the mean of per-task success rates.
    """
    by = list(by)
    if results.empty:
        return pd.DataFrame(
            columns=[*by, "episodes", "successes", "success_rate", "ci_low", "ci_high"]
        )
    summed = results.groupby(by, as_index=False, sort=True)[["episodes", "successes"]].sum()
    return with_rates(summed)


def suite_average(per_suite: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """The paper's "avg" column: mean of per-suite success rates, CI from the pooled counts."""
    by = list(by)
    grouped = per_suite.groupby(by, as_index=False, sort=True)
    mean_rate = grouped["success_rate"].mean()
    counts = grouped[["episodes", "successes"]].sum()
    out = with_rates(counts)
    out["success_rate"] = mean_rate["success_rate"].to_numpy()
    return out


def format_rate(rate: float, low: float | None = None, high: float | None = None) -> str:
    """``'16.4 [12.0, 21.5]'``: a success rate and its CI in percent, one decimal."""
    text = f"{100 * rate:.1f}"
    if low is not None and high is not None and not (pd.isna(low) or pd.isna(high)):
        text += f" [{100 * low:.1f}, {100 * high:.1f}]"
    return text
