"""The bundle is verified before it is served: edits, corruption and future versions are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.bundle import MANIFEST, SCHEMA_VERSION, BundleWriter, load_bundle
from agent.errors import BundleError


def _bundle(tmp_path: Path) -> Path:
    w = BundleWriter(tmp_path / "b")
    w.add_json("vocab.json", {"template_to_token": {"1": 1}})
    w.add_model("m", {"type": "isolation_forest", "file": "vocab.json", "thresholds": {"medium": 1.0}})
    return w.finish(extra={"x": 1})


def test_round_trip(tmp_path: Path) -> None:
    """A freshly written bundle loads and lists every file with its hash."""
    b = load_bundle(_bundle(tmp_path))
    assert b.manifest["schema_version"] == SCHEMA_VERSION
    assert set(b.manifest["files"]) == {"vocab.json"}
    assert b.read_json("vocab.json") == {"template_to_token": {"1": 1}}
    assert b.models["m"]["type"] == "isolation_forest"


def test_edited_manifest_is_refused(tmp_path: Path) -> None:
    """Changing a threshold by hand breaks the manifest hash."""
    path = _bundle(tmp_path)
    m = json.loads((path / MANIFEST).read_text())
    m["models"]["m"]["thresholds"]["medium"] = 99.0
    (path / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(BundleError, match="edited"):
        load_bundle(path)


def test_corrupt_file_is_refused(tmp_path: Path) -> None:
    """A bundle file changed after writing fails its sha256 check."""
    path = _bundle(tmp_path)
    (path / "vocab.json").write_text("{}")
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(path)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A bundle from a newer logdetect says so instead of failing on a missing key."""
    import hashlib

    path = _bundle(tmp_path)
    m = json.loads((path / MANIFEST).read_text())
    m["schema_version"] = SCHEMA_VERSION + 1
    raw = json.dumps(m).encode()
    (path / MANIFEST).write_bytes(raw)
    (path / "manifest.sha256").write_text(hashlib.sha256(raw).hexdigest())
    with pytest.raises(BundleError, match="newer"):
        load_bundle(path)


def test_not_a_bundle(tmp_path: Path) -> None:
    """A missing path, a file, or a directory without a manifest is refused with a clear message."""
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(BundleError, match="not a directory"):
        load_bundle(tmp_path / "file")
    with pytest.raises(BundleError, match="not a logdetect model bundle"):
        load_bundle(tmp_path)


def test_failed_training_leaves_no_bundle(tmp_path: Path) -> None:
    """An aborted writer leaves neither the output nor its temporary directory behind."""
    w = BundleWriter(tmp_path / "out")
    w.add_json("a.json", {})
    w.abort()
    assert list(tmp_path.iterdir()) == []
