"""The deploy bundle: a folder with ``edgevt.json`` (the manifest) and its artifacts.

Manifest layout (JSON)::

    {"format": "edgevt-bundle", "format_version": 1,
     "spec": {...ClipSpec...}, "source": {"checkpoint": ..., "sha256": ..., "arch": ...},
     "tools": {...versions...},
     "artifacts": {"model.fp32": {"file": "model.onnx", "sha256": ..., "kind": "onnx",
                                  "form": "window", "role": "model", "precision": "fp32",
                                  "inputs": [...], "outputs": [...], ...}, ...},
     "checks": {...}, "eval": {...}}

Artifact keys are ``<role>.<precision>`` (roles: model, encoder, head, stateful) and
``engine.<role>.<precision>`` for TensorRT engines. Every file is hashed; ``Bundle.load`` verifies
the hashes so that a missing or altered file is caught before it is run. Writes are atomic: a new
bundle is assembled in a unique ``.<dir>.*.partial`` folder beside it and renamed into place;
an existing destination is replaced only if it is itself a bundle (or an empty folder); the manifest of an existing bundle
is replaced through a temporary file.
"""
from __future__ import annotations

import json
from pathlib import Path

from edgevt.errors import EdgevtError
from edgevt.fileio import atomic_write_text, check_replaceable, replace_dir, staging_dir
from edgevt.models.checkpoint import file_sha256
from edgevt.spec import ClipSpec

MANIFEST = "edgevt.json"
FORMAT = "edgevt-bundle"
FORMAT_VERSION = 1


def is_bundle(path: str | Path) -> bool:
    """True if ``path`` is a folder holding an edgevt bundle manifest (the only kind edgevt replaces)."""
    mf = Path(path) / MANIFEST
    try:
        return json.loads(mf.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


class Bundle:
    def __init__(self, path: Path, manifest: dict):
        self.path = Path(path)
        self.manifest = manifest

    # -- creation -------------------------------------------------------------------------------
    @classmethod
    def staging(cls, path: str | Path, spec: ClipSpec, source: dict | None = None) -> "Bundle":
        """Start a new bundle in a staging folder beside ``path``; ``commit()`` moves it into place.

        Refuses (before any work) a ``path`` that exists and is not a bundle or an empty folder."""
        final = Path(path)
        check_replaceable(final, is_bundle, "an edgevt bundle")
        stage = staging_dir(final)
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "spec": spec.to_dict(),
                    "source": dict(source or {}), "tools": {}, "artifacts": {}, "checks": {}, "eval": {}}
        b = cls(stage, manifest)
        b._final = final
        return b

    def commit(self) -> "Bundle":
        """Write the manifest and atomically replace the destination folder."""
        final = getattr(self, "_final", None)
        self.save()
        if final is None:
            return self
        replace_dir(self.path, final, is_bundle, "an edgevt bundle")
        self.path = final
        self._final = None
        return self

    # -- loading --------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, verify: bool = True) -> "Bundle":
        p = Path(path)
        if p.is_file() and p.name == MANIFEST:
            p = p.parent
        mf = p / MANIFEST
        if not mf.exists():
            raise EdgevtError(f"{p}: not an edgevt bundle (no {MANIFEST}); create one with `edgevt export`")
        try:
            manifest = json.loads(mf.read_text())
        except json.JSONDecodeError as e:
            raise EdgevtError(f"{mf}: corrupt manifest ({e})") from None
        if manifest.get("format") != FORMAT:
            raise EdgevtError(f"{mf}: not an edgevt bundle manifest")
        b = cls(p, manifest)
        if verify:
            b.verify()
        return b

    def verify(self, keys: list[str] | None = None) -> None:
        for key in keys or list(self.artifacts):
            a = self.artifacts[key]
            f = self.path / a["file"]
            if not f.exists():
                raise EdgevtError(f"{self.path}: artifact {key} is missing its file {a['file']}; re-run the export")
            if file_sha256(f) != a["sha256"]:
                raise EdgevtError(f"{f}: hash does not match the manifest (file altered or corrupt); "
                                  "re-run the export")

    # -- access ---------------------------------------------------------------------------------
    @property
    def spec(self) -> ClipSpec:
        return ClipSpec.from_dict(self.manifest["spec"])

    @property
    def artifacts(self) -> dict:
        return self.manifest["artifacts"]

    def artifact(self, key: str) -> dict:
        if key not in self.artifacts:
            have = ", ".join(sorted(self.artifacts)) or "none"
            raise EdgevtError(f"{self.path}: bundle has no artifact {key!r} (it has: {have})")
        return self.artifacts[key]

    def artifact_path(self, key: str) -> Path:
        return self.path / self.artifact(key)["file"]

    def add_artifact(self, key: str, file: str, **meta) -> dict:
        """Record a file already written inside the bundle folder (hash computed here)."""
        f = self.path / file
        if not f.exists():
            raise EdgevtError(f"{f}: cannot add a missing artifact")
        entry = {"file": file, "sha256": file_sha256(f), **meta}
        self.artifacts[key] = entry
        return entry

    def save(self) -> None:
        atomic_write_text(self.path / MANIFEST, json.dumps(self.manifest, indent=2, sort_keys=False))
