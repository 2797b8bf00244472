import numpy as np
import pytest

from generation.dlr import diversity as dv


def line(start, end, n=11):
    return np.linspace(np.asarray(start, float), np.asarray(end, float), n)


def test_mean_pairwise_distance_of_parallel_lines():
    a, b = line([0, 0, 0], [1, 0, 0]), line([0, 2, 0], [1, 2, 0])
    assert dv.mean_pairwise_distance([a, b]) == pytest.approx(2.0)
    # three lines at y = 0, 1, 3: pairs 1, 3, 2
    c = line([0, 3, 0], [1, 3, 0], n=31)  # other length: resampled in time
    assert dv.mean_pairwise_distance([a, line([0, 1, 0], [1, 1, 0]), c]) == pytest.approx(2.0)
    assert dv.mean_pairwise_distance([a]) == 0.0


def test_final_state_and_direction_variance():
    up, right = line([0, 0, 0], [0, 0, 2]), line([0, 0, 0], [4, 0, 0])
    # final states (0,0,2) and (4,0,0): var_x = 4, var_z = 1
    assert dv.final_state_variance([up, right]) == pytest.approx(5.0)
    # unit directions (0,0,1), (1,0,0): var_x = var_z = 0.25
    assert dv.direction_variance([up, right]) == pytest.approx(0.5)
    assert dv.direction_variance([right, line([1, 1, 1], [3, 1, 1])]) == pytest.approx(0.0)


def test_path_length_variance():
    assert dv.path_length(line([0, 0, 0], [3, 4, 0])) == pytest.approx(5.0)
    trajs = [line([0, 0, 0], [1, 0, 0]), line([0, 0, 0], [3, 0, 0])]  # lengths 1 and 3
    assert dv.path_length_variance(trajs) == pytest.approx(1.0)


def test_dtw_known_values():
    a = np.array([[0.0], [1.0], [2.0]])
    assert dv.dtw_distance(a, a) == 0.0
    # a repeated point is absorbed by warping: zero cost
    assert dv.dtw_distance(a, np.array([[0.0], [0.0], [1.0], [2.0], [2.0]])) == 0.0
    # sqrt of the summed squared distances along the alignment (dtaidistance's definition)
    assert dv.dtw_distance(np.array([[0.0], [0.0]]), np.array([[1.0]])) == pytest.approx(2**0.5)
    # symmetric
    b = np.array([[0.0], [3.0], [1.0], [2.5]])
    assert dv.dtw_distance(a, b) == pytest.approx(dv.dtw_distance(b, a))


def test_state_coverage_counts_voxels():
    pts = np.array(
        [[0.001, 0.001, 0.001], [0.005, 0.0, 0.0], [0.025, 0.0, 0.0], [0.0, 0.0, -0.001]]
    )
    assert dv.state_coverage([pts], voxel_size=0.02) == 3


def test_diversity_table_and_ratio():
    narrow = [line([0, 0, 0], [1, 0, 0]) + [0, 0.01 * i, 0] for i in range(3)]
    wide = [line([0, 0, 0], [1, 0, 0]) + [0, 0.5 * i, 0] for i in range(3)]
    table = dv.diversity_table({("o2o", "t0"): narrow, ("dlr", "t0"): wide})
    assert list(table.columns) == ["source", "task", "metric", "value"]
    assert set(table.metric) == set(dv.METRICS) and len(table) == 2 * len(dv.METRICS)
    ratios = dv.diversity_ratios(table).set_index("metric")["ratio"]
    assert ratios["mean_pairwise_distance"] == pytest.approx(50.0)


def test_pathset_metrics_match_the_plain_functions():
    rng = np.random.default_rng(0)
    trajs = [np.cumsum(rng.normal(size=(20 + i, 3)), axis=0) * 0.01 for i in range(6)]
    got = dv.PathSet(trajs).metrics()
    assert got["mean_pairwise_distance"] == pytest.approx(dv.mean_pairwise_distance(trajs))
    assert got["final_state_variance"] == pytest.approx(dv.final_state_variance(trajs))
    assert got["direction_variance"] == pytest.approx(dv.direction_variance(trajs))
    assert got["path_length_variance"] == pytest.approx(dv.path_length_variance(trajs))
    assert got["state_coverage"] == dv.state_coverage(trajs)
    r = [dv.resample(t) for t in trajs]
    pairs = [dv.dtw_distance(r[i], r[j]) for i in range(6) for j in range(i + 1, 6)]
    assert got["mean_pairwise_dtw"] == pytest.approx(np.mean(pairs))


def _layouts(spread: float, n_states: int = 6, per_state: int = 3, seed: int = 0):
    """``per_state`` paths per init state; states far apart (layout), paths within a state
    ``spread`` apart (strategy)."""
    rng = np.random.default_rng(seed)
    trajs, states = [], []
    for s in range(n_states):
        offset = np.array([0.3 * s, 0.0, 0.0])
        for k in range(per_state):
            bend = np.array([0.0, spread * (k - 1), 0.0])
            t = line([0, 0, 0], [0.2, 0, 0]) + offset
            t[5:-5] += bend + rng.normal(scale=1e-4, size=3)
            trajs.append(t)
            states.append(s)
    return trajs, states


def test_bootstrap_ratio_ci_and_per_state_scope():
    wide, narrow = _layouts(0.2), _layouts(0.01, seed=1)
    table = dv.bootstrap_ratios(wide, narrow, n_boot=200).set_index(["scope", "metric"])
    row = table.loc[("per_init_state", "mean_pairwise_distance")]
    assert (
        row["ratio"] > 5 and row["ci_low"] > 1 and row["ci_low"] <= row["ratio"] <= row["ci_high"]
    )
    assert row["n_states"] == 6 and row["n_num"] == row["n_den"] == 18
    # pooled, the layouts' spread dominates both sources: the ratio is far smaller
    pooled = table.loc[("pooled", "mean_pairwise_distance")]
    assert pooled["ratio"] < row["ratio"] / 2
    # a source against itself: ratio 1, inside its CI
    same = dv.bootstrap_ratios(wide, wide, n_boot=200).set_index(["scope", "metric"])
    for scope in ("pooled", "per_init_state"):
        r = same.loc[(scope, "final_state_variance")]
        assert r["ratio"] == pytest.approx(1.0) and r["ci_low"] <= 1.0 <= r["ci_high"]
