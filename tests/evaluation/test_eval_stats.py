"""Wilson intervals and pooling."""

from __future__ import annotations

import pandas as pd
import pytest

from evaluation.stats import (
    difference_interval,
    format_rate,
    pool,
    suite_average,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        (0, 10, 0.0, 0.27753),
        (5, 10, 0.23659, 0.76341),
        (10, 10, 0.72247, 1.0),
        (1, 50, 0.00354, 0.10495),
        (25, 50, 0.36645, 0.63355),
    ],
)
def test_wilson_known_values(successes: int, n: int, low: float, high: float) -> None:
    lo, hi = wilson_interval(successes, n)
    assert lo == pytest.approx(low, abs=1e-4)
    assert hi == pytest.approx(high, abs=1e-4)


def test_wilson_edge_cases() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes <= n"):
        wilson_interval(3, 2)


@pytest.mark.parametrize(
    ("a", "n_a", "b", "n_b", "low", "high"),
    [  # Newcombe (1998), Table II, method 10
        (56, 70, 48, 80, 0.0524, 0.3339),
        (9, 10, 3, 10, 0.1705, 0.8090),
        (0, 10, 0, 10, -0.2775, 0.2775),
    ],
)
def test_difference_interval_known_values(a, n_a, b, n_b, low, high) -> None:
    assert difference_interval(a, n_a, b, n_b) == pytest.approx((low, high), abs=1e-4)
    swapped = difference_interval(b, n_b, a, n_a)
    assert swapped == pytest.approx((-high, -low), abs=1e-4)


def test_difference_interval_edges() -> None:
    assert difference_interval(6, 6, 0, 6)[1] == 1.0  # clipped to the possible range
    assert difference_interval(0, 0, 3, 5) == (-1.0, 1.0)


def test_pool_and_suite_average() -> None:
    rows = pd.DataFrame(
        {
            "suite": ["a", "a", "b", "b"],
            "seed": [0, 1, 0, 1],
            "episodes": [10, 10, 10, 10],
            "successes": [2, 4, 10, 10],
        }
    )
    per_suite = pool(rows, ["suite"])
    assert per_suite["success_rate"].tolist() == pytest.approx([0.3, 1.0])
    assert per_suite["episodes"].tolist() == [20, 20]
    per_suite["run"] = "x"
    avg = suite_average(per_suite, ["run"])
    assert avg["success_rate"].iloc[0] == pytest.approx(0.65)
    assert avg["ci_low"].iloc[0] < 0.65 < avg["ci_high"].iloc[0]
    assert format_rate(0.1645, 0.12, 0.215) == "16.4 [12.0, 21.5]"
