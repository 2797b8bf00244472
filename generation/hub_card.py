"""The dataset card of a published dataset: what it holds, how it was made, how to replay it.

Built from the dataset's episode metadata, ``meta/info.json`` and the producing stage's
manifest (only its stage name, config hash and code version), with lerobot's card template.
"""

from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path

import pandas as pd

from generation.data.reader import read_episode_meta
from generation.data.replay import SETTLE_ACTION, fixture_poses, replay_with_libero
from generation.data.schema import EPISODE_META_FILE, FPS
from generation.data.writer import REPLAY_TOLERANCE
from generation.manifest import MANIFEST

log = logging.getLogger(__name__)

LICENSE = "mit"  # LIBERO's assets and code are MIT-licensed
_SOURCE_TEXT = {
    "demo": "scripted LIBERO demonstrators (ground-truth strategy in `strategy_id`)",
    "dlr": "DLR rollouts: PPO policies conditioned on behaviour patterns discovered from the "
    "demonstrations (pattern in `pattern_id`)",
    "o2o": "offline-to-online RL rollouts without pattern conditioning (the DLR baseline)",
    "mi": "mutual-information skill-discovery rollouts",
    "imported": "real LIBERO demonstrations imported with `dlr import`",
}


def _counts_table(series: pd.Series, name: str) -> str:
    counts = series.value_counts().sort_index()
    rows = "\n".join(f"| {k} | {v} |" for k, v in counts.items())
    return f"| {name} | episodes |\n|---|---|\n{rows}"


def _manifest(root: Path) -> dict | None:
    for path in (root / MANIFEST, root.parent / MANIFEST):
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError:
                return None
    return None


def card_description(root: str | Path) -> str:
    """The dataset-specific part of the card, in Markdown."""
    root = Path(root)
    meta = read_episode_meta(root)
    info = json.loads((root / "meta" / "info.json").read_text())
    n_eps, n_frames = int(info.get("total_episodes", len(meta))), int(info.get("total_frames", 0))
    fps = info.get("fps", FPS)
    sources = sorted(meta.source.unique())

    tasks = (
        meta.groupby(["suite", "task_index", "task_name", "language"], sort=True)
        .agg(
            episodes=("episode_index", "size"),
            success_rate=("success", "mean"),
            frames=("length", "sum"),
        )
        .reset_index()
    )
    task_rows = "\n".join(
        f"| {r.suite} | {r.task_index} | {r.language} | {r.episodes} | {r.frames} | {r.success_rate:.2f} |"
        for r in tasks.itertuples()
    )
    features = "\n".join(
        f"| `{k}` | {v['dtype']} | {tuple(v['shape'])} |"
        for k, v in info.get("features", {}).items()
    )
    generated = "\n".join(
        f"- `{s}`: {_SOURCE_TEXT.get(s, 'see the producing stage')}" for s in sources
    )
    manifest = _manifest(root)
    if manifest:
        generated += (
            f"\n\nStage `{manifest.get('stage', '?')}`, config hash `{manifest.get('config_hash', '?')}`, "
            f"code version `{manifest.get('code_version', '?')}`."
        )
    return f"""\
A DLR-Bench dataset of LIBERO manipulation episodes in the
[LeRobot](https://github.com/huggingface/lerobot) v3.0 format, following lerobot's LIBERO
conventions so that lerobot's tools read it directly.

### Size
- **Episodes:** {n_eps}
- **Frames:** {n_frames} ({n_frames / fps / 60:.1f} minutes at {fps} fps)
- **Suites:** {", ".join(sorted(meta.suite.unique()))}
- **Tasks:** {len(tasks)}

### Sources
{_counts_table(meta.source, "source")}

### Behaviour patterns
`pattern_id` is the DLR pattern an episode was generated for (-1: none).

{_counts_table(meta.pattern_id, "pattern_id")}

### Tasks
| suite | task | instruction | episodes | frames | success rate |
|---|---|---|---|---|---|
{task_rows}

### Schema
| feature | dtype | shape |
|---|---|---|
{features}

`observation.state` is the end-effector position (3), axis-angle (3) and gripper qpos (2);
`action` is LIBERO's OSC_POSE delta in [-1, 1] with the gripper last. Per-episode metadata
(source, suite, task, init state, seed, success, strategy and pattern, settle steps) is in
lerobot's episode table `meta/episodes/*/*.parquet`, as columns `stats/dlr_episode/<field>`
holding one-element lists (`init_state`: the whole vector), where `lerobot-edit-dataset`
(delete, split, merge) keeps it; `{EPISODE_META_FILE}` is a flat copy keyed by
`episode_index`.

{replay_section(meta)}
### How it was generated
{generated}
"""


def replay_section(meta: pd.DataFrame) -> str:
    """How to replay every episode with LIBERO's own API: init state, settle steps, fixtures."""
    replayable = meta[[len(s) > 0 for s in meta.init_state]]
    if replayable.empty:
        return "### Replaying an episode\nNo episode stores an init state: none is replayable.\n"
    settle = replayable.settle_steps.value_counts().sort_index()
    settle_text = ", ".join(f"{k} ({v} episode(s))" for k, v in settle.items())
    action = ", ".join(f"{a:g}" for a in SETTLE_ACTION)
    tasks = (
        replayable[["suite", "task_index"]].drop_duplicates().sort_values(["suite", "task_index"])
    )
    log.info("looking up the fixture poses of %d task(s) for the card", len(tasks))
    rows, poses = [], {}
    for suite, task_index in tasks.itertuples(index=False):
        poses[(suite, task_index)] = fixture_poses(suite, int(task_index))
        for body, (pos, quat) in poses[(suite, task_index)].items():
            rows.append(f"| {suite} | {task_index} | `{body}` | {pos} | {quat} |")
    fixtures = "\n".join(rows) or "| (no fixtures) | | | | |"
    not_replayable = len(meta) - len(replayable)
    missing = (
        f" {not_replayable} episode(s) store no init state (imported from LeRobot datasets): "
        "they cannot be replayed."
        if not_replayable
        else ""
    )
    first = replayable.iloc[0]
    example_fixtures = poses[(first.suite, first.task_index)]
    return f"""\
### Replaying an episode
Every episode with an init state replays in LIBERO's own env: its `observation.state` comes
back within {REPLAY_TOLERANCE:g} (DLR-Bench's writer checks every episode it renders; bit for
bit where the actions were stepped as stored, float32). Reset the task's env, put the fixtures where
the episode had them (table below: LIBERO re-places fixtures at random on every reset and a
MuJoCo state does not hold them), `set_init_state(init_state)`, step the settle action
`[{action}]` (arm still, gripper open) `settle_steps` times, then step the episode's
`action`s in order. The observation before action `t` is frame `t` of the episode.
Settle steps in this dataset: {settle_text}.{missing}

| suite | task | fixture body | pos (m) | quat (wxyz) |
|---|---|---|---|---|
{fixtures}

```python
{inspect.getsource(replay_with_libero)}
# episode {int(first.episode_index)} of this dataset:
import glob

import numpy as np
import pandas as pd

episodes = pd.concat(pd.read_parquet(f) for f in glob.glob("meta/episodes/*/*.parquet"))
row = episodes.set_index("episode_index").loc[{int(first.episode_index)}]
field = lambda name: row[f"stats/dlr_episode/{{name}}"]
frames = pd.concat(pd.read_parquet(f) for f in glob.glob("data/*/*.parquet"))
actions = frames[frames.episode_index == {int(first.episode_index)}].sort_values("frame_index")["action"]
observations = replay_with_libero(
    field("suite")[0], field("task_name")[0], field("init_state"), list(actions),
    int(field("settle_steps")[0]), fixtures={example_fixtures!r},
)
```
"""


def render_card(root: str | Path, repo_id: str, license: str = LICENSE) -> str:
    """The full README.md (YAML header + body) built with lerobot's dataset card template."""
    from lerobot.datasets.utils import create_lerobot_dataset_card

    root = Path(root)
    suites = sorted(read_episode_meta(root).suite.unique())  # first: it explains a wrong folder
    info = json.loads((root / "meta" / "info.json").read_text())
    structure = f"[meta/info.json](meta/info.json):\n```json\n{json.dumps(info, indent=4)}\n```\n"
    card = create_lerobot_dataset_card(
        tags=["LIBERO", "DLR-Bench", *suites],
        license=license,
        repo_id=repo_id,
        dataset_description=card_description(root),
        dataset_structure=structure,
        url="https://libero-project.github.io",
    )
    return str(card)
