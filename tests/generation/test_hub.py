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
