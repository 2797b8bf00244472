from benchmarks.runner import _ensure_fresh, _key


def test_outputs_are_kept_only_for_the_same_inputs(tmp_path):
    out = tmp_path / "stage"
    _ensure_fresh(out, "cfg-a|base-1")
    (out / "checkpoint").write_text("partial work")
    _ensure_fresh(out, "cfg-a|base-1")  # same inputs: partial work kept (resume)
    assert (out / "checkpoint").read_text() == "partial work" and _key(out) == "cfg-a|base-1"
    _ensure_fresh(out, "cfg-a|base-2")  # upstream rebuilt: stale output removed
    assert not (out / "checkpoint").exists() and _key(out) == "cfg-a|base-2"
    (out / "checkpoint").write_text("x")
    _ensure_fresh(out, "cfg-a|base-2", force=True)
    assert not (out / "checkpoint").exists()


def test_folder_without_marker_is_rebuilt(tmp_path):
    out = tmp_path / "legacy"
    out.mkdir()
    (out / "old").write_text("?")
    _ensure_fresh(out, "k")
    assert not (out / "old").exists() and _key(out) == "k"
    assert _key(tmp_path / "missing") == "none"


def test_pretraining_names_a_subset_generation_could_not_fill(tmp_path):
    import json

    import pytest

    from benchmarks.config import validate_recipe
    from benchmarks.runner import run_pretraining

    meta = tmp_path / "datasets" / "dlr" / "full" / "meta"
    meta.mkdir(parents=True)
    (meta / "info.json").write_text(json.dumps({"total_episodes": 3}))
    recipe = validate_recipe(
        {"name": "t", "stages": ["pretraining"],
         "pretraining": {"archs": ["openvla"], "sources": ["dlr"], "sizes": ["full", "n6"]}}
    )  # fmt: skip
    with pytest.raises(
        FileNotFoundError, match="matched only 3 episodes.*'n6'.*max_attempts_per_kept"
    ):
        run_pretraining(recipe, tmp_path)
    assert not (tmp_path / "pretraining").exists()  # checked before anything trains
