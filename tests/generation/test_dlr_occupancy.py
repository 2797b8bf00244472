import math

import numpy as np
import pandas as pd
import pytest
from test_dlr_synthetic import synthetic_demos

from generation.dlr import occupancy as occ


def test_entropy_of_histograms():
    assert occ.entropy([5, 5, 5]) == pytest.approx(math.log(3))
    assert occ.entropy([9, 0, 0]) == 0.0
    assert math.isnan(occ.entropy([0, 0, 0]))


def test_nearest_strategy_recovers_synthetic_strategies():
    demos = synthetic_demos(per_strategy=5, seed=0)
    probes = synthetic_demos(per_strategy=4, seed=1)
    labels = occ.nearest_strategy(
        [e.eef_path for e in probes], [e.eef_path for e in demos], [e.strategy_id for e in demos]
    )
    assert labels.tolist() == [e.strategy_id for e in probes]


def test_summary_histogram_entropy_and_leakage():
    rows = []
    group = dict(task="t", source="dlr", pattern=1, stage="rollouts", iteration=30)
    rows += occ.count_rows(np.array([1, 1, 1, 0]), labeler="vae", **group)  # 1 of 4 leaks
    rows += occ.count_rows(np.array([2, 2, 2, 2]), labeler="strategy", **group)
    o2o = dict(task="t", source="o2o", pattern=-1, stage="ppo", iteration=1)
    rows += occ.count_rows(np.array([0, 1, 2, 0, 1, 2]), labeler="strategy", **o2o)
    summary = occ.summarise(pd.DataFrame(rows), {"vae": 3, "strategy": 3})
    by = summary.set_index(["source", "labeler"])
    assert by.loc[("dlr", "vae"), "leakage"] == pytest.approx(0.25)
    assert by.loc[("dlr", "vae"), "shares"] == "0.25 / 0.75 / 0.00"
    assert by.loc[("dlr", "strategy"), "entropy"] == 0.0  # one mode
    assert by.loc[("o2o", "strategy"), "entropy"] == pytest.approx(math.log(3))
    assert by.loc[("o2o", "strategy"), "n"] == 6
    assert math.isnan(by.loc[("o2o", "strategy"), "leakage"])  # no pattern, no leakage
