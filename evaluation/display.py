"""How the report shows sources, patterns and suites: labels, order and colours in one place.

Plots, tables and the HTML report all import from here, so DLR is the same red and pattern 1
the same purple in every figure, and no report module imports another for its constants.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

SOURCE_ORDER = ("none", "demo", "o2o", "o2o_kl", "dlr", "mi")
SOURCE_LABELS = {
    "none": "none",
    "demo": "scripted demos",
    "o2o": "O2O-RL",
    "o2o_kl": "O2O-RL + KL leash",
    "dlr": "DLR",
    "mi": "MI-RL",
    "imported": "imported",
}
# tab10 colours; patterns below use the rest of the palette so no two meanings share a colour
SOURCE_COLORS = {
    "none": "#7f7f7f",  # grey: the no-pretraining baseline
    "demo": "#17becf",
    "o2o": "#1f77b4",
    "o2o_kl": "#000080",  # navy: O2O's blue, darker
    "dlr": "#d62728",
    "mi": "#2ca02c",
    "imported": "#bcbd22",
}
SOURCE_MARKERS = {"none": "s", "demo": "P", "o2o": "o", "o2o_kl": "v", "dlr": "D", "mi": "^"}

NO_PATTERN = -1  # pattern_id of episodes that have none (O2O, demos)
NO_PATTERN_COLOR = "#7f7f7f"
PATTERN_COLORS = ("#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#556b2f", "#daa520")

SUITE_LABELS = {
    "libero_spatial": "Spatial",
    "libero_object": "Object",
    "libero_goal": "Goal",
    "libero_10": "Long",
    "libero_90": "LIBERO-90",
}

# Table 1's metrics: the label and unit shown (end-effector positions are in metres)
DIVERSITY_METRICS = {
    "mean_pairwise_distance": ("mean pairwise distance", "m"),
    "final_state_variance": ("final-state variance", "m²"),
    "direction_variance": ("direction variance", "unit vectors, total variance"),
    "path_length_variance": ("path-length variance", "m²"),
    "mean_pairwise_dtw": ("mean pairwise DTW", "m, root of squares summed along the warping"),
    "state_coverage": ("state coverage", "2 cm voxels visited"),
}


def ordered(values: Iterable[str], order: Sequence[str] = SOURCE_ORDER) -> list[str]:
    """The distinct ``values`` in ``order``, unknown ones after, sorted."""
    present = list(dict.fromkeys(values))
    return [v for v in order if v in present] + sorted(v for v in present if v not in order)


def source_label(source: str) -> str:
    return SOURCE_LABELS.get(source, source)


def source_color(source: str) -> str:
    return SOURCE_COLORS.get(source, "#000000")


def source_marker(source: str) -> str:
    return SOURCE_MARKERS.get(source, "o")


def pattern_label(pattern: int) -> str:
    return "no pattern" if pattern < 0 else f"pattern {pattern}"


def pattern_color(pattern: int) -> str:
    return NO_PATTERN_COLOR if pattern < 0 else PATTERN_COLORS[pattern % len(PATTERN_COLORS)]


def suite_label(suite: str) -> str:
    """``Spatial``; a LIBERO-PRO perturbed suite as ``Spatial + swap``."""
    if suite in SUITE_LABELS:
        return SUITE_LABELS[suite]
    for base in sorted(SUITE_LABELS, key=len, reverse=True):
        if suite.startswith(base + "_"):
            return f"{SUITE_LABELS[base]} + {suite.removeprefix(base + '_')}"
    return suite
