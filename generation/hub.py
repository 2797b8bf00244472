"""Publish one of our datasets to the Hugging Face Hub with a dataset card.

The card (sources, DLR patterns, sizes, tasks, suites, schema, provenance, license) is built
from the dataset's sidecar metadata and ``meta/info.json`` and uploaded as ``README.md`` in the
same commit as the data: it is never written into the local dataset, and a failed push leaves
the folder untouched. Like lerobot's ``LeRobotDataset.push_to_hub``, the repo is tagged with the
codebase version (``v3.0``) so lerobot loads the right revision.
"""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd

from generation.data.reader import read_episode_meta
from generation.data.schema import FPS
from generation.integrity import check_dataset

log = logging.getLogger(__name__)

LICENSE = "mit"  # LIBERO's assets and code are MIT-licensed
# images/: lerobot's temporary PNG folder; README.md: replaced by the generated card.
_SKIP_TOP = ("images", "README.md")
_SOURCE_TEXT = {
    "demo": "scripted LIBERO demonstrators (ground-truth strategy in `strategy_id`)",
    "dlr": "DLR rollouts: PPO policies conditioned on behaviour patterns discovered from the "
    "demonstrations (pattern in `pattern_id`)",
    "o2o": "offline-to-online RL rollouts without pattern conditioning (the DLR baseline)",
    "mi": "mutual-information skill-discovery rollouts",
    "imported": "real LIBERO demonstrations imported with `dlr import`",
}


class HubPublishError(RuntimeError):
    """The dataset could not be published; nothing was changed locally."""


def dataset_files(root: str | Path) -> list[tuple[str, int]]:
    """``(path in repo, size in bytes)`` of every file that would be uploaded, sorted."""
    root = Path(root)
    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if rel.parts[0] in _SKIP_TOP or any(part.startswith(".") for part in rel.parts):
            continue
        out.append((rel.as_posix(), path.stat().st_size))
    return out


def _counts_table(series: pd.Series, name: str) -> str:
    counts = series.value_counts().sort_index()
    rows = "\n".join(f"| {k} | {v} |" for k, v in counts.items())
    return f"| {name} | episodes |\n|---|---|\n{rows}"


def _manifest(root: Path) -> dict | None:
    for path in (root / "manifest.json", root.parent / "manifest.json"):
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
(source, suite, task, init state, seed, success, strategy and pattern) is in
`meta/dlr_episodes.parquet`, keyed by `episode_index`; where an init state is stored, it and
the actions replay the episode in LIBERO (`settle_steps` no-op steps after setting it).

### How it was generated
{generated}
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


def _resolve_token(token: str | None) -> str:
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise HubPublishError(
            "no Hugging Face token: run `huggingface-cli login` (or `hf auth login`) or set HF_TOKEN"
        )
    return token


def _check_network(timeout_s: float = 5.0) -> None:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise HubPublishError("HF_HUB_OFFLINE is set: unset it to publish; nothing was uploaded")
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as e:
        raise HubPublishError(
            f"cannot reach {constants.ENDPOINT} ({e}); check your network or HF_ENDPOINT. Nothing was uploaded"
        ) from e


def push_dataset(
    root: str | Path,
    repo_id: str,
    private: bool = False,
    dry_run: bool = False,
    token: str | None = None,
    license: str = LICENSE,
) -> dict:
    """Upload the dataset at ``root`` to the Hub dataset repo ``repo_id`` with a generated card.

    Returns ``{"repo_id", "files": [(path, bytes)], "total_bytes", "card", "dry_run"}`` plus
    ``url`` and ``commit`` after a real push. ``dry_run`` only lists what would be uploaded.
    Raises :class:`HubPublishError` without a token, without network, or if the upload fails.
    """
    root = Path(root)
    card = render_card(root, repo_id, license=license)  # validates that root is one of ours
    check_dataset(root)  # a truncated data file must not be published under a card claiming it
    files = dataset_files(root)
    listing = files + [("README.md", len(card.encode()))]
    result = {
        "repo_id": repo_id,
        "files": listing,
        "total_bytes": sum(size for _, size in listing),
        "card": card,
        "dry_run": dry_run,
    }
    if dry_run:
        log.info(
            "dry run: %d files (%d bytes) would go to %s",
            len(listing),
            result["total_bytes"],
            repo_id,
        )
        return result

    token = _resolve_token(token)
    _check_network()
    from huggingface_hub import CommitOperationAdd, HfApi

    version = json.loads((root / "meta" / "info.json").read_text()).get("codebase_version", "v3.0")
    api = HfApi(token=token)
    try:
        repo = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        ops = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(root / p)) for p, _ in files]
        ops.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode()))
        commit = api.create_commit(
            repo_id,
            operations=ops,
            repo_type="dataset",
            commit_message=f"Upload {root.name} with DLR-Bench",
        )
        _retag(api, repo_id, version)
    except Exception as e:  # noqa: BLE001 - network, auth and Hub errors all mean "not published"
        raise HubPublishError(f"upload of {root} to {repo_id} failed: {e}") from e
    result.update(url=str(repo), commit=getattr(commit, "oid", None))
    log.info("pushed %d files to %s", len(listing), result["url"])
    return result


def _retag(api, repo_id: str, version: str) -> None:
    """Point the codebase-version tag at the new commit, as lerobot's push_to_hub does."""
    from huggingface_hub.errors import RevisionNotFoundError

    try:
        api.delete_tag(repo_id, tag=version, repo_type="dataset")
    except RevisionNotFoundError:
        pass
    api.create_tag(repo_id, tag=version, repo_type="dataset")
