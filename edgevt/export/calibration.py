"""Calibration data: target-domain clips sampled exactly as at inference, and the range cache key.

Clips come from any ``edgevt.data`` source (folder of videos, labeled tree, .txt/.csv list, or a
calibration set folder with its manifest, see ``calibration/``); labels are ignored. Each clip is
sampled with the ClipSpec's own (evaluation) sampling (``edgevt.data.datasets.load_clips``) and fed
to each graph as it will be fed on the device: the window graph gets uint8 [1, T, H, W, 3] (or the
in-graph preprocessing's float for ``--float-input`` models, ``edgevt.models.preprocess.model_input``);
the per-frame graphs get what the stream loop feeds them on those clips (frames, shift buffers,
embeddings), recorded while the FP32 form runs over the clips.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from edgevt.errors import EdgevtError
from edgevt.spec import ClipSpec

# Fewer calibration clips than this gives noisy activation ranges; we warn (and refuse zero).
MIN_SENSIBLE_CLIPS = 32


class ClipCalibrationReader:
    """onnxruntime ``CalibrationDataReader`` over prepared inputs, one row per batch: rows of the
    graph's ``frames`` input, or {input name: rows} for a graph with several inputs."""

    def __init__(self, inputs, input_name: str = "frames"):
        self.feeds = inputs if isinstance(inputs, dict) else {input_name: inputs}
        self.rows = len(next(iter(self.feeds.values())))
        self._i = 0
        self._end = self.rows

    def get_next(self):
        if self._i >= self._end:
            return None
        i = self._i
        self._i += 1
        return {k: np.ascontiguousarray(v[i:i + 1]) for k, v in self.feeds.items()}

    def __len__(self) -> int:
        return self.rows

    def __iter__(self):
        self.rewind()
        return iter(self.get_next, None)

    def rewind(self) -> None:
        self._i, self._end = 0, self.rows

    def set_range(self, start_index: int, end_index: int) -> None:
        """Read only clips [start, end): onnxruntime's strided calibration collects chunk by chunk."""
        self._i, self._end = start_index, min(end_index, self.rows)


def calibration_chunk(n: int, most: int = 8) -> int:
    """Clips per calibration chunk: the largest divisor of ``n`` up to ``most`` (onnxruntime needs
    the chunk to divide the data). Its histogram calibrators otherwise keep every intermediate
    tensor of every clip until the end: 5.8 GB for the demo's 60 clips."""
    return max(d for d in range(1, max(1, min(n, most)) + 1) if n % d == 0) if n > 0 else 1


def data_hash(paths: list[str], clips) -> str:
    """Hash of the calibration data as sampled (paths and decoded pixels, or every recorded input)."""
    h = hashlib.sha256()
    for p in paths:
        h.update(os.path.abspath(p).encode())
    for k, v in (sorted(clips.items()) if isinstance(clips, dict) else [("", clips)]):
        h.update(k.encode())
        h.update(np.ascontiguousarray(v).tobytes())
    return h.hexdigest()


def cache_dir(override: str | Path | None = None) -> Path:
    if override:
        return Path(override)
    if os.environ.get("EDGEVT_CACHE"):
        return Path(os.environ["EDGEVT_CACHE"]) / "calibration"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "edgevt" / "calibration"


def cache_key(model_sha256: str, data_sha256: str, method: str, clips: int) -> str:
    blob = json.dumps({"model": model_sha256, "data": data_sha256, "method": method, "clips": clips,
                       "v": 1}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def cache_path(model_sha256: str, data_sha256: str, method: str, clips: int,
               directory: str | Path | None = None) -> Path:
    """Where onnxruntime keeps the activation ranges for this (model, data, method, clips)."""
    return cache_dir(directory) / f"ranges-{cache_key(model_sha256, data_sha256, method, clips)}.json"


# -- calibration sets (the top-level calibration/ folder describes the layout) ---------------------
SET_MANIFEST = "calibration.json"
SET_FORMAT = "edgevt-calibration"
SET_VERSION = 1
# The fields of the set's ClipSpec that decide which frames a clip is made of; a model whose spec
# differs in any of them would be calibrated on other inputs than it sees.
SAMPLING_FIELDS = ("num_frames", "frame_stride", "size", "resize", "pixel_format")


class CalibrationSet:
    """A target-domain calibration set: ``clips/`` plus ``calibration.json`` with the domain, the
    ClipSpec the clips are sampled with, every clip's SHA-256 and the seed that picked them.

    Bundles record the manifest's hash (``manifest_sha256``), not where the set was on disk."""

    def __init__(self, root: Path, manifest: dict, manifest_sha256: str):
        self.root, self.manifest, self.manifest_sha256 = Path(root), manifest, manifest_sha256

    @staticmethod
    def is_set(path) -> bool:
        return not isinstance(path, (list, tuple)) and (Path(path) / SET_MANIFEST).is_file()

    @classmethod
    def open(cls, path, verify: bool = True) -> "CalibrationSet":
        from edgevt.fileio import file_sha256

        root = Path(path)
        mf = root / SET_MANIFEST
        try:
            manifest = json.loads(mf.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise EdgevtError(f"{mf}: unreadable calibration set manifest ({e})") from None
        if manifest.get("format") != SET_FORMAT:
            raise EdgevtError(f"{mf}: not an edgevt calibration set manifest (format {manifest.get('format')!r})")
        if manifest.get("version", 0) > SET_VERSION:
            raise EdgevtError(f"{mf}: calibration set version {manifest['version']} is newer than this edgevt; "
                              "upgrade edgevt")
        s = cls(root, manifest, file_sha256(mf))
        if not s.manifest.get("clips"):
            raise EdgevtError(f"{mf}: lists no clips")
        if verify:
            for c in s.manifest["clips"]:
                f = root / c["file"]
                if not f.is_file():
                    raise EdgevtError(f"{root}: calibration clip {c['file']} is missing; restore it or rebuild the "
                                      "set with edgevt.export.calibration.make_calibration_set")
                if file_sha256(f) != c["sha256"]:
                    raise EdgevtError(f"{f}: hash does not match {SET_MANIFEST} (clip altered or replaced); "
                                      "rebuild the set with edgevt.export.calibration.make_calibration_set")
        return s

    @property
    def spec(self) -> ClipSpec:
        return ClipSpec.from_dict(self.manifest["spec"])

    @property
    def domain(self) -> str:
        return str(self.manifest.get("domain", ""))

    def clip_paths(self) -> list[str]:
        return [str(self.root / c["file"]) for c in self.manifest["clips"]]

    def check_spec(self, spec: ClipSpec) -> None:
        """Refuse a model whose clips are made differently from the set's (one line naming the fields)."""
        mine, theirs = self.spec.to_dict(), spec.to_dict()
        diff = [k for k in SAMPLING_FIELDS if mine[k] != theirs[k]]
        if diff:
            shown = ", ".join(f"{k} {theirs[k]} vs {mine[k]}" for k in diff)
            raise EdgevtError(f"{self.root}: this calibration set was made for another ClipSpec ({shown}, model vs "
                              "set); make a set for this model's spec with make_calibration_set")

    def describe(self) -> str:
        return (f"calibration set '{self.domain}' ({len(self.manifest['clips'])} clips, manifest sha256 "
                f"{self.manifest_sha256[:16]})")

    def record(self) -> dict:
        """What a bundle records about the set: its identity, not its location."""
        return {"manifest_sha256": self.manifest_sha256, "domain": self.domain,
                "clips": len(self.manifest["clips"]), "seed": self.manifest.get("seed")}


def make_calibration_set(source, out: str | Path, spec: ClipSpec, *, domain: str, clips: int = 256,
                         seed: int = 0) -> CalibrationSet:
    """Build a calibration set at ``out`` from any data source (folder, list, paths): ``clips`` videos
    picked with ``seed``, copied to ``out/clips/`` and hashed into ``calibration.json``."""
    import shutil

    from edgevt.data.datasets import load_dataset
    from edgevt.fileio import atomic_write_text, file_sha256

    if clips < 1:
        raise EdgevtError(f"clips must be >= 1, got {clips}")
    if isinstance(source, (list, tuple)):
        paths = [str(p) for p in source]
    else:
        ds = load_dataset(source, spec, labeled=False, check=False)
        paths = [r.path for r in ds.records]
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(paths), size=min(clips, len(paths)), replace=False).tolist())
    root = Path(out)
    (root / "clips").mkdir(parents=True, exist_ok=True)
    entries = []
    for k, i in enumerate(picked):
        src = Path(paths[i])
        name = f"clips/{k:04d}{src.suffix.lower()}"
        shutil.copyfile(src, root / name)
        entries.append({"file": name, "sha256": file_sha256(root / name)})
    manifest = {"format": SET_FORMAT, "version": SET_VERSION, "domain": domain, "seed": seed,
                "spec": spec.replace(labels=[]).to_dict(), "clips": entries}
    atomic_write_text(root / SET_MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return CalibrationSet.open(root)
