"""Hub publishing: card content, dry run, and failures that leave the dataset untouched."""

import hashlib

import numpy as np
import pytest

from generation import hub
from generation.data.episode import Episode
from generation.data.schema import DatasetSpec
from generation.data.writer import write_episodes


@pytest.fixture(autouse=True)
def _no_login(tmp_path, monkeypatch):
    """No token anywhere: environment, token file, or OIDC."""
    import huggingface_hub.constants as constants

    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "home" / "no-token"))


def _episode(task_index, pattern_id, T, source="dlr"):
    rng = np.random.default_rng(task_index * 10 + pattern_id)
    return Episode(
        suite="libero_object", task_index=task_index, task_name=f"task_{task_index}",
        language=f"pick up object {task_index}", init_state=rng.normal(size=20),
        actions=rng.uniform(-1, 1, (T, 7)), states=rng.normal(size=(T, 8)),
        env_states=rng.normal(size=(T, 84)), success=pattern_id != 1, source=source,
        pattern_id=pattern_id, images={"image": np.zeros((T, 32, 32, 3), np.uint8)},
    )  # fmt: skip


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub") / "ds"
    eps = [
        _episode(0, 0, 5),
        _episode(0, 1, 6),
        _episode(1, 1, 7),
        _episode(1, -1, 4, source="demo"),
    ]
    return write_episodes(eps, root, spec=DatasetSpec(image_size=32), progress=False)


def _tree_hash(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def test_dry_run_lists_files_and_card(dataset):
    before = _tree_hash(dataset)
    out = hub.push_dataset(dataset, "me/dlr-test", dry_run=True)
    assert out["dry_run"] and _tree_hash(dataset) == before
    paths = dict(out["files"])
    assert {"meta/info.json", "meta/dlr_episodes.parquet", "README.md"} <= set(paths)
    assert any(p.startswith("data/") and p.endswith(".parquet") for p in paths)
    assert paths["meta/info.json"] == (dataset / "meta" / "info.json").stat().st_size
    assert out["total_bytes"] == sum(paths.values())
    card = out["card"]
    assert card.startswith("---") and "LeRobot" in card and "license: mit" in card
    assert "- **Episodes:** 4" in card and "- **Frames:** 22" in card
    assert "| dlr | 3 |" in card and "| demo | 1 |" in card  # sources
    assert "| -1 | 1 |" in card and "| 0 | 1 |" in card and "| 1 | 2 |" in card  # patterns
    assert "| libero_object | 0 | pick up object 0 | 2 | 11 | 0.50 |" in card
    assert "| libero_object | 1 | pick up object 1 | 2 | 11 | 0.50 |" in card
    assert "`observation.state` | float32 | (8,)" in card
    assert not (dataset / "README.md").exists()


def test_no_token_fails_clearly(dataset):
    before = _tree_hash(dataset)
    with pytest.raises(hub.HubPublishError, match="no Hugging Face token.*login.*HF_TOKEN"):
        hub.push_dataset(dataset, "me/dlr-test")
    assert _tree_hash(dataset) == before


def test_unreachable_hub_fails_before_uploading(dataset, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port
    monkeypatch.setattr(huggingface_hub, "HfApi", None)  # must not be reached
    with pytest.raises(hub.HubPublishError, match="cannot reach http://127.0.0.1:9"):
        hub.push_dataset(dataset, "me/dlr-test", token="hf_fake")


class _FailingApi:
    calls: list = []

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, **kw):
        _FailingApi.calls.append(("create_repo", repo_id, kw))
        return f"https://huggingface.co/datasets/{repo_id}"

    def create_commit(self, repo_id, operations, **kw):
        _FailingApi.calls.append(("create_commit", [op.path_in_repo for op in operations]))
        raise ConnectionError("connection reset by peer")


def test_network_failure_leaves_dataset_untouched(dataset, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(hub, "_check_network", lambda timeout_s=5.0: None)
    monkeypatch.setattr(huggingface_hub, "HfApi", _FailingApi)
    before = _tree_hash(dataset)
    with pytest.raises(hub.HubPublishError, match="failed: connection reset by peer"):
        hub.push_dataset(dataset, "me/dlr-test", token="hf_fake")
    assert _tree_hash(dataset) == before
    (_, repo_id, kw), (_, uploaded) = _FailingApi.calls
    assert repo_id == "me/dlr-test" and kw["repo_type"] == "dataset"
    assert "README.md" in uploaded and "meta/info.json" in uploaded
    assert not any(p.startswith("images/") for p in uploaded)


def test_not_a_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a LeRobot dataset"):
        hub.push_dataset(tmp_path, "me/x", dry_run=True)


@pytest.mark.parametrize("repo_id", ["bad repo id", "a/b/c", "me/x--y", "me/-x", ""])
def test_bad_repo_id_fails_first(tmp_path, repo_id):
    """Checked before the dataset is even read: a missing folder is not what is reported."""
    with pytest.raises(ValueError, match="invalid --repo-id"):
        hub.push_dataset(tmp_path / "missing", repo_id, dry_run=True)


def test_cli_rejects_bad_repo_id_in_one_line(dataset, capsys):
    from benchmarks.cli import main

    assert main(["push", str(dataset), "--repo-id", "bad repo id", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dlr push: error: invalid --repo-id 'bad repo id'") and "\n" not in err


def _manifest_with_secrets(root):
    """A stage manifest as `generation.manifest.stage` writes it: host name, absolute paths."""
    import json
    import platform

    manifest = {
        "stage": "demos", "config_hash": "abc", "code_version": "v1", "host": platform.node(),
        "config": {"out": str(root), "inner": str(root / "meta" / "info.json"),
                   "elsewhere": [str(root.parent.parent / "runs" / "x"), "relative/path"]},
        "result": {"pid": 1234, "episodes": 4},
    }  # fmt: skip
    (root / "manifest.json").write_text(json.dumps(manifest))


def test_manifest_goes_up_scrubbed(dataset, tmp_path, monkeypatch):
    import json
    import platform
    import shutil

    import huggingface_hub

    root = tmp_path / "demos"
    shutil.copytree(dataset, root)
    monkeypatch.setattr(platform, "node", lambda: "secret-host-7")
    _manifest_with_secrets(root)
    out = hub.push_dataset(root, "me/dlr-test", dry_run=True)
    assert "manifest.json" in dict(out["files"])
    monkeypatch.setattr(hub, "_check_network", lambda timeout_s=5.0: None)
    monkeypatch.setattr(huggingface_hub, "HfApi", _RecordingApi)
    hub.push_dataset(root, "me/dlr-test", token="hf_fake")
    uploaded = _RecordingApi.uploaded
    scrubbed = json.loads(uploaded["manifest.json"])
    assert "host" not in scrubbed and "pid" not in scrubbed["result"]
    assert scrubbed["config"] == {
        "out": ".",
        "inner": "meta/info.json",
        "elsewhere": ["x", "relative/path"],
    }
    assert scrubbed["config_hash"] == "abc" and scrubbed["result"] == {"episodes": 4}
    for path, data in uploaded.items():
        if path.endswith((".json", ".md")):
            text = data.decode()
            assert "secret-host-7" not in text and str(tmp_path) not in text, path
    assert json.loads((root / "manifest.json").read_text())["host"] == "secret-host-7"  # untouched


def test_a_leaking_text_file_stops_the_push(dataset, tmp_path, monkeypatch):
    import platform
    import shutil

    root = tmp_path / "ds"
    shutil.copytree(dataset, root)
    monkeypatch.setattr(platform, "node", lambda: "secret-host-7")
    (root / "meta" / "notes.txt").write_text("made on secret-host-7")
    with pytest.raises(
        hub.HubPublishError, match="meta/notes.txt .* holds host name 'secret-host-7'"
    ):
        hub.push_dataset(root, "me/dlr-test", dry_run=True)
    (root / "meta" / "notes.txt").write_text(f"copied from {root}/data")
    with pytest.raises(hub.HubPublishError, match="meta/notes.txt .*nothing was uploaded"):
        hub.push_dataset(root, "me/dlr-test", dry_run=True)


class _RecordingApi:
    """Records what would reach the Hub, by either upload path."""

    uploaded: dict = {}
    calls: list = []

    def __init__(self, token=None):
        _RecordingApi.uploaded, _RecordingApi.calls = {}, []

    def create_repo(self, repo_id, **kw):
        return f"https://huggingface.co/datasets/{repo_id}"

    def create_commit(self, repo_id, operations, **kw):
        from pathlib import Path

        for op in operations:
            src = op.path_or_fileobj
            data = src if isinstance(src, bytes) else Path(src).read_bytes()
            _RecordingApi.uploaded[op.path_in_repo] = data
        _RecordingApi.calls.append("create_commit")

    def upload_large_folder(self, repo_id, folder_path, repo_type, private=False):
        for p in folder_path.rglob("*"):
            if p.is_file() and ".cache" not in p.parts:
                _RecordingApi.uploaded[p.relative_to(folder_path).as_posix()] = p.read_bytes()
        _RecordingApi.calls.append(("upload_large_folder", repo_type, private))

    def delete_tag(self, repo_id, tag, repo_type):
        _RecordingApi.calls.append(("delete_tag", tag))

    def create_tag(self, repo_id, tag, repo_type):
        _RecordingApi.calls.append(("create_tag", tag))


def test_large_dataset_goes_up_with_upload_large_folder(dataset, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(hub, "LARGE_UPLOAD_BYTES", 0)
    monkeypatch.setattr(hub, "_check_network", lambda timeout_s=5.0: None)
    monkeypatch.setattr(huggingface_hub, "HfApi", _RecordingApi)
    before = _tree_hash(dataset)
    out = hub.push_dataset(dataset, "me/dlr-big", private=True, token="hf_fake")
    assert out["method"] == "upload_large_folder"
    assert _RecordingApi.calls == [
        ("upload_large_folder", "dataset", True), ("delete_tag", "v3.0"), ("create_tag", "v3.0"),
    ]  # fmt: skip
    uploaded = _RecordingApi.uploaded
    assert sorted(uploaded) == sorted(p for p, _ in out["files"])
    assert uploaded["README.md"].decode() == out["card"]
    assert uploaded["meta/info.json"] == (dataset / "meta" / "info.json").read_bytes()
    assert not any(p.startswith("images/") for p in uploaded)
    assert _tree_hash(dataset) == before and not hub.staging_folder("me/dlr-big").exists()


def test_card_tells_how_to_replay(dataset):
    card = hub.render_card(dataset, "me/dlr-test")
    assert "### Replaying an episode" in card and "def replay_with_libero(" in card
    assert (
        "`[0, 0, 0, 0, 0, 0, -1]`" in card
        and "Settle steps in this dataset: 10 (4 episode(s))" in card
    )
    assert "`stats/dlr_episode/<field>`" in card
