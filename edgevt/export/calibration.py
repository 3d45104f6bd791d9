"""Calibration data: target-domain clips sampled exactly as at inference, and the range cache key.

Clips come from any ``edgevt.data`` source (folder of videos, labeled tree, .txt/.csv list); labels
are ignored. Each clip is sampled with the ClipSpec's own (evaluation) sampling and fed to the
graph as it will be fed on the device: uint8 [1, T, H, W, 3] (or normalised float for
``--float-input`` models). Videos at another resolution are resized by the spec on decode.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np

from edgevt.errors import EdgevtError
from edgevt.spec import ClipSpec

# Fewer calibration clips than this gives noisy activation ranges; we warn (and refuse zero).
MIN_SENSIBLE_CLIPS = 32


def _unlabeled_list(path: Path) -> list:
    """The clips of a 'path label' / CSV list with their labels ignored (whatever they say)."""
    from edgevt.data.datasets import ClipRecord, LabelMap, read_annotation_list

    class AnyLabel(LabelMap):
        def index(self, label: str, where: str = "") -> int:
            return -1

    records, _ = read_annotation_list(path, AnyLabel([]))
    if not records:
        raise EdgevtError(f"{path}: contains no video files")
    return [ClipRecord(r.path, None, r.start, r.end) for r in records]


def load_clips(source: str | Path | list, spec: ClipSpec, max_clips: int | None = None, *,
               labeled: bool = False, what: str = "calibration",
               skip_bad: bool = True) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(uint8 clips [N,T,H,W,3], labels [N] (-1 unlabeled), paths) from a data source.

    ``max_clips`` picks clips evenly spread over the source (deterministic), so a class-sorted
    folder still gives every class. Unreadable videos are skipped with a warning (none readable is an
    error); ``skip_bad=False`` makes the first one an error naming the file, as ``adapt`` does by default.
    """
    from edgevt.data.datasets import ClipDataset, ClipRecord, LabelMap, load_dataset

    labels = LabelMap(spec.labels) if labeled and spec.labels else None
    try:
        if isinstance(source, (list, tuple)):
            ds = ClipDataset([ClipRecord(str(p)) for p in source], spec, train=False, skip_bad=skip_bad)
        elif not labeled and Path(source).is_file() and Path(source).suffix.lower() in (".txt", ".csv", ".lst"):
            # Unlabeled use of a list (calibration): its labels are ignored, so an unknown one is no error.
            ds = ClipDataset(_unlabeled_list(Path(source)), spec, train=False, skip_bad=skip_bad)
        else:
            ds = load_dataset(source, spec, labels=labels, labeled=labeled, train=False, skip_bad=skip_bad)
    except EdgevtError as e:
        msg = str(e)
        if "no readable clips" in msg or "contains no video files" in msg or "no class subfolders" in msg:
            raise EdgevtError(f"{source}: no readable {what} clips ({msg}); point it at a folder or list "
                              "of target-domain videos") from None
        raise
    if ds.skipped:
        # Calibration and evaluation carry on without them, but never silently.
        names = ", ".join(Path(p).name for p, _ in ds.skipped[:5]) + (" ..." if len(ds.skipped) > 5 else "")
        warnings.warn(f"{what}: skipped {len(ds.skipped)} unreadable video(s) in {source}: {names}", stacklevel=2)
    n = len(ds)
    idx = np.arange(n) if not max_clips or max_clips >= n else np.unique(np.linspace(0, n - 1, max_clips).round()
                                                                          .astype(int))
    clips, labs, paths = [], [], []
    for i in idx:
        clip, label = ds[int(i)]
        clips.append(clip.numpy())
        labs.append(int(label))
        paths.append(ds.records[int(i)].path)
    return np.stack(clips), np.asarray(labs, dtype=np.int64), paths


def as_model_input(clips: np.ndarray, spec: ClipSpec, float_input: bool) -> np.ndarray:
    """uint8 clips -> what the exported graph takes."""
    if not float_input:
        return np.ascontiguousarray(clips)
    mean = np.asarray(spec.mean, np.float32)
    std = np.asarray(spec.std, np.float32)
    x = (clips.astype(np.float32) / 255.0 - mean) / std
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


class ClipCalibrationReader:
    """onnxruntime ``CalibrationDataReader`` over prepared clips (one clip per batch)."""

    def __init__(self, inputs: np.ndarray, input_name: str = "frames"):
        self.inputs = inputs
        self.input_name = input_name
        self._i = 0
        self._end = len(inputs)

    def get_next(self):
        if self._i >= self._end:
            return None
        x = self.inputs[self._i:self._i + 1]
        self._i += 1
        return {self.input_name: x}

    def __len__(self) -> int:
        return len(self.inputs)

    def __iter__(self):
        self.rewind()
        return iter(self.get_next, None)

    def rewind(self) -> None:
        self._i, self._end = 0, len(self.inputs)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Read only clips [start, end): onnxruntime's strided calibration collects chunk by chunk."""
        self._i, self._end = start_index, min(end_index, len(self.inputs))


def calibration_chunk(n: int, most: int = 8) -> int:
    """Clips per calibration chunk: the largest divisor of ``n`` up to ``most`` (onnxruntime needs
    the chunk to divide the data). Its histogram calibrators otherwise keep every intermediate
    tensor of every clip until the end: 5.8 GB for the demo's 60 clips."""
    return max(d for d in range(1, max(1, min(n, most)) + 1) if n % d == 0) if n > 0 else 1


def data_hash(paths: list[str], clips: np.ndarray) -> str:
    """Hash of the calibration data as sampled (paths and decoded pixels)."""
    h = hashlib.sha256()
    for p in paths:
        h.update(os.path.abspath(p).encode())
    h.update(np.ascontiguousarray(clips).tobytes())
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
