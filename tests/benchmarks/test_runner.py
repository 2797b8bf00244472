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
