"""The model bundle: one directory the trainer writes and the agent verifies before serving.

Layout (DESIGN §4):

    manifest.json        schema version, versions, parser/miner config, models, thresholds,
                         and the sha256 of every other file
    manifest.sha256      sha256 of manifest.json itself, so an edited manifest is refused
    drain_state.json     Drain3 state as plain JSON written by our code (never jsonpickle)
    vocab.json           template id <-> model token (token 0 = UNK); `known_templates`: seen only
                         in the held-back part of the history (known, but UNK to the models)
    *.onnx               one file per model
    *.json / *.png       statistics for explanations, training curves

The manifest's `models` maps a detector name to its own section (file, input names, window
sizes, thresholds, calibration curve); each detector reads only its section.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent import __version__
from agent.errors import BundleError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
MANIFEST_HASH = "manifest.sha256"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (bundle files can be large ONNX graphs)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Bundle:
    """A verified bundle directory: the manifest is trusted only after `load_bundle`."""

    path: Path
    manifest: dict[str, Any]

    def file(self, name: str) -> Path:
        """Path of a file the manifest lists; a file it does not list is refused, never read."""
        if name not in self.manifest.get("files", {}):
            raise BundleError(f"{self.path}: the manifest lists no file {name!r}")
        return self.path / name

    def read_json(self, name: str) -> Any:
        """A JSON file of the bundle, parsed (only files the manifest lists)."""
        with self.file(name).open("rb") as fh:
            return json.load(fh)

    @property
    def models(self) -> dict[str, dict[str, Any]]:
        """The manifest's model sections by name (empty when it has none)."""
        models: dict[str, dict[str, Any]] = self.manifest.get("models", {})
        return models

    def model(self, name: str) -> dict[str, Any] | None:
        """The manifest section of one model, or None when the bundle has no such model."""
        return self.models.get(name)

    @property
    def identity(self) -> str:
        """A short id of the bundle's content (its files' digests): the same model anywhere."""
        return hashlib.sha256(json.dumps(self.manifest["files"], sort_keys=True).encode()).hexdigest()[:16]


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Load and verify a bundle; raise BundleError with what to do when anything is off."""
    root = Path(path)
    if not root.exists():
        raise BundleError(f"model bundle {root} does not exist (create one with `logdetect train`)")
    if not root.is_dir():
        raise BundleError(f"model bundle {root} is not a directory (pass the folder `logdetect train` wrote)")
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{root} has no {MANIFEST}: not a logdetect model bundle")
    raw = manifest_path.read_bytes()
    hash_path = root / MANIFEST_HASH
    if not hash_path.is_file():
        raise BundleError(f"{root} has no {MANIFEST_HASH}: bundle incomplete; retrain or copy it again")
    expected = hash_path.read_text(encoding="ascii", errors="replace").strip()
    if hashlib.sha256(raw).hexdigest() != expected:
        raise BundleError(f"{root}/{MANIFEST} was edited after training (hash mismatch): retrain the bundle")
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise BundleError(f"{root}/{MANIFEST} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{root}/{MANIFEST} is not a JSON object")
    version = manifest.get("schema_version")
    if not isinstance(version, int):
        raise BundleError(f"{root}/{MANIFEST} has no integer schema_version")
    if version > SCHEMA_VERSION:
        raise BundleError(
            f"bundle {root} has schema version {version}, newer than this logdetect {__version__} "
            f"reads ({SCHEMA_VERSION}): upgrade logdetect or retrain with this version"
        )
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BundleError(f"{root}/{MANIFEST} lists no files")
    for name, digest in files.items():
        file_path = root / name
        if not file_path.is_file():
            raise BundleError(f"bundle {root} is missing {name}: copy the whole directory or retrain")
        if sha256_file(file_path) != digest:
            raise BundleError(f"bundle file {root}/{name} does not match its sha256 in the manifest")
    return Bundle(root, manifest)


class BundleWriter:
    """Builds a bundle in a temporary sibling directory and moves it into place at `finish`.

    A crash mid-training therefore never leaves a half-written bundle at the output path.
    """

    def __init__(self, output: str | os.PathLike[str]) -> None:
        self.output = Path(output)
        if self.output.exists() and not self.output.is_dir():
            raise BundleError(f"output {self.output} exists and is not a directory")
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.output.name}.", dir=self.output.parent))
        self.manifest: dict[str, Any] = {"models": {}}

    def path_for(self, name: str) -> Path:
        """Where to write bundle file `name` (for writers that need a path, e.g. ONNX export)."""
        return self.tmp / name

    def add_json(self, name: str, obj: Any) -> None:
        """Write a JSON file into the bundle being built (compact, UTF-8)."""
        with (self.tmp / name).open("w", encoding="utf-8") as fh:
            json.dump(obj, fh, ensure_ascii=False, separators=(",", ":"))

    def add_model(self, name: str, section: dict[str, Any]) -> None:
        """Record a model's manifest section (its files must be added separately)."""
        self.manifest["models"][name] = section

    def _manifest(self, manifest_fields: dict[str, Any]) -> dict[str, Any]:
        files = {
            p.name: sha256_file(p)
            for p in sorted(self.tmp.iterdir())
            if p.is_file() and p.name not in (MANIFEST, MANIFEST_HASH)
        }
        return {
            "schema_version": SCHEMA_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "logdetect_version": __version__,
            **manifest_fields,
            **self.manifest,
            "files": files,
        }

    def draft(self, **manifest_fields: Any) -> Bundle:
        """The bundle as written so far, unverified, so the trainer can run the real pipeline
        on held-back data (to calibrate the ensemble) before the manifest is final."""
        return Bundle(self.tmp, self._manifest(manifest_fields))

    def finish(self, **manifest_fields: Any) -> Path:
        """Hash every file, write the manifest and its hash, and move the bundle into place."""
        manifest = self._manifest(manifest_fields)
        raw = json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8")
        (self.tmp / MANIFEST).write_bytes(raw)
        (self.tmp / MANIFEST_HASH).write_text(hashlib.sha256(raw).hexdigest() + "\n", encoding="ascii")
        old = None
        if self.output.exists():
            old = self.output.with_name(f".{self.output.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.output, old)
        os.replace(self.tmp, self.output)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.output

    def abort(self) -> None:
        """Throw away the half-built bundle (the previous one, if any, stays untouched)."""
        shutil.rmtree(self.tmp, ignore_errors=True)
