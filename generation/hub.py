"""Publish one of our datasets to the Hugging Face Hub with a dataset card.

The repo id is checked before anything else. The card (:mod:`generation.hub_card`) goes up as
``README.md`` with the data and is never written into the local dataset; a failed push leaves
the folder untouched. A stage manifest goes up without the host name and with local paths
made relative (:func:`scrub_manifest`), and nothing is uploaded while a text file still holds
the host name, the home folder or the dataset's absolute path. Datasets over
:data:`LARGE_UPLOAD_BYTES` go up with ``upload_large_folder`` (resumable, split into commits),
others in one commit. Like lerobot's ``LeRobotDataset.push_to_hub``, the repo is tagged with the
codebase version (``v3.0``) so lerobot loads the right revision.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from generation.hub_card import LICENSE, card_description, render_card
from generation.integrity import check_dataset
from generation.manifest import MANIFEST

__all__ = [
    "LARGE_UPLOAD_BYTES", "LICENSE", "HubPublishError", "card_description", "dataset_files",
    "push_dataset", "render_card", "scrub_manifest",
]  # fmt: skip

log = logging.getLogger(__name__)

LARGE_UPLOAD_BYTES = 1 << 30
# images/: lerobot's temporary PNG folder; README.md: replaced by the generated card.
_SKIP_TOP = ("images", "README.md")
_TEXT_SUFFIXES = (".json", ".jsonl", ".md", ".txt", ".yaml", ".yml", ".csv")
_DROPPED_KEYS = ("host", "pid")


class HubPublishError(RuntimeError):
    """The dataset could not be published; nothing was changed locally."""


def check_repo_id(repo_id: str) -> None:
    """Raise ``ValueError`` naming the rule ``repo_id`` breaks (huggingface_hub's own check)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise ValueError(
            f"invalid --repo-id {repo_id!r}: {e} Use `namespace/name`, e.g. `you/dlr-demos`"
        ) from e


def dataset_files(root: str | Path) -> list[tuple[str, int]]:
    """``(path in repo, size in bytes)`` of every file of ``root`` to upload as it is, sorted
    (the manifest is uploaded scrubbed, the card generated: neither is listed here)."""
    root = Path(root)
    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if rel.parts[0] in _SKIP_TOP or any(part.startswith(".") for part in rel.parts):
            continue
        if rel.as_posix() == MANIFEST:
            continue
        out.append((rel.as_posix(), path.stat().st_size))
    return out


def scrub_manifest(manifest: Any, root: str | Path) -> Any:
    """``manifest`` without host names and process ids; every absolute path becomes relative
    to ``root`` when inside it, else its last component."""
    root = Path(root).resolve()
    if isinstance(manifest, dict):
        return {k: scrub_manifest(v, root) for k, v in manifest.items() if k not in _DROPPED_KEYS}
    if isinstance(manifest, list):
        return [scrub_manifest(v, root) for v in manifest]
    if isinstance(manifest, str) and os.path.isabs(manifest) and len(manifest) > 1:
        path = Path(manifest)
        return path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
    return manifest


def _leaks(text: str, root: Path) -> list[str]:
    """The host name, home folder or local folders above the dataset that ``text`` names."""
    host = platform.node()
    root = root.resolve()
    above = [p for p in (root, *root.parents) if len(p.parts) >= 3][-1:]  # e.g. /work/runs
    secrets = [str(p) + os.sep for p in above] + [str(root), str(Path.home()) + os.sep]
    found = [s for s in dict.fromkeys(secrets) if s in text]
    if len(host) >= 3 and host in text:
        found.append(f"host name {host!r}")
    return found


def _payload(root: Path, card: str) -> dict[str, bytes]:
    """Generated files that go up from memory: the card and the scrubbed manifest."""
    out = {"README.md": card.encode()}
    if (root / MANIFEST).is_file():
        manifest = json.loads((root / MANIFEST).read_text())
        out[MANIFEST] = json.dumps(scrub_manifest(manifest, root), indent=2).encode()
    return out


def _check_no_leaks(root: Path, files: list[tuple[str, int]], payload: dict[str, bytes]) -> None:
    texts = {
        p: (root / p).read_text(errors="replace") for p, _ in files if p.endswith(_TEXT_SUFFIXES)
    }
    texts.update({p: b.decode(errors="replace") for p, b in payload.items()})
    for path, text in texts.items():
        found = _leaks(text, root)
        if found:
            raise HubPublishError(
                f"{path} of {root} holds {', '.join(found)}: remove it from that file before "
                "publishing; nothing was uploaded"
            )


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

    Returns ``{"repo_id", "files": [(path, bytes)], "total_bytes", "card", "dry_run",
    "method"}`` plus ``url`` and ``commit`` after a real push. ``dry_run`` only lists what would
    be uploaded. Raises ``ValueError`` for a bad repo id, :class:`HubPublishError` when a file
    would give away the host or a local path, without a token or network, or if the upload fails.
    """
    check_repo_id(repo_id)
    root = Path(root)
    card = render_card(root, repo_id, license=license)  # validates that root is one of ours
    check_dataset(root)  # a truncated data file must not be published under a card claiming it
    files = dataset_files(root)
    payload = _payload(root, card)
    _check_no_leaks(root, files, payload)
    listing = sorted(files + [(p, len(b)) for p, b in payload.items()])
    total = sum(size for _, size in listing)
    method = "upload_large_folder" if total > LARGE_UPLOAD_BYTES else "create_commit"
    result = {
        "repo_id": repo_id, "files": listing, "total_bytes": total, "card": card,
        "dry_run": dry_run, "method": method,
    }  # fmt: skip
    if dry_run:
        log.info("dry run: %d files (%d bytes) would go to %s", len(listing), total, repo_id)
        return result

    token = _resolve_token(token)
    _check_network()
    from huggingface_hub import HfApi

    version = json.loads((root / "meta" / "info.json").read_text()).get("codebase_version", "v3.0")
    api = HfApi(token=token)
    try:
        if method == "create_commit":
            url, commit = _push_in_one_commit(api, root, repo_id, private, files, payload)
        else:
            url, commit = _push_large_folder(api, root, repo_id, private, files, payload)
        _retag(api, repo_id, version)
    except Exception as e:  # noqa: BLE001 - network, auth and Hub errors all mean "not published"
        raise HubPublishError(f"upload of {root} to {repo_id} failed: {e}") from e
    result.update(url=url, commit=commit)
    log.info("pushed %d files to %s (%s)", len(listing), url, method)
    return result


def _push_in_one_commit(api, root, repo_id, private, files, payload) -> tuple[str, str | None]:
    from huggingface_hub import CommitOperationAdd

    repo = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    ops = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(root / p)) for p, _ in files]
    ops += [CommitOperationAdd(path_in_repo=p, path_or_fileobj=b) for p, b in payload.items()]
    commit = api.create_commit(
        repo_id,
        operations=ops,
        repo_type="dataset",
        commit_message=f"Upload {root.name} with DLR-Bench",
    )
    return str(repo), getattr(commit, "oid", None)


def staging_folder(repo_id: str) -> Path:
    """Where a large upload is staged; upload_large_folder's progress there lets a rerun resume."""
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "dlr-bench-uploads" / repo_id.replace("/", "--")


def _push_large_folder(api, root, repo_id, private, files, payload) -> tuple[str, None]:
    """Link the files to upload into a staging folder (the dataset is never written to) and
    hand it to ``upload_large_folder``; the staging folder is removed once it is all up."""
    stage = staging_folder(repo_id)
    for entry in stage.glob("*"):  # keep .cache/ (upload progress), refresh the links
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    for path, _ in files:
        link = stage / path
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to((root / path).resolve())
    for path, data in payload.items():
        (stage / path).write_bytes(data)
    api.upload_large_folder(
        repo_id=repo_id, folder_path=stage, repo_type="dataset", private=private
    )
    shutil.rmtree(stage)
    return f"https://huggingface.co/datasets/{repo_id}", None


def _retag(api, repo_id: str, version: str) -> None:
    """Point the codebase-version tag at the new commit, as lerobot's push_to_hub does."""
    from huggingface_hub.errors import RevisionNotFoundError

    try:
        api.delete_tag(repo_id, tag=version, repo_type="dataset")
    except RevisionNotFoundError:
        pass
    api.create_tag(repo_id, tag=version, repo_type="dataset")
