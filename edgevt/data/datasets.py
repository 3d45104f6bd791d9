"""Clip datasets: folder-per-class trees, annotation lists, CSV lists and unlabeled folders.

Every form resolves to a list of ``ClipRecord`` and a ``LabelMap``; ``ClipDataset`` decodes and
samples clips by the ClipSpec. Bad files raise a one-line ``EdgevtError`` naming the file, unless
``skip_bad=True``, in which case they are dropped and listed in ``dataset.skipped``.
"""
from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from edgevt.data.sampling import sample_indices, window_indices
from edgevt.data.video import is_video_file, probe_video, read_frames
from edgevt.errors import EdgevtError
from edgevt.spec import ClipSpec

LIST_SUFFIXES = (".txt", ".csv", ".lst")


class NoClipsError(EdgevtError):
    """A data source holds no (readable) video at all: callers that can do without it catch this
    type rather than matching the message."""


@dataclass(frozen=True)
class ClipRecord:
    path: str
    label: int | None = None  # index into the label map; None for unlabeled clips
    start: int | None = None  # optional frame range within the video (Kinetics-style lists)
    end: int | None = None


class LabelMap:
    """Stable name <-> index mapping; saved as labels.txt, one name per line, in index order."""

    def __init__(self, names: list[str]):
        if len(set(names)) != len(names):
            raise EdgevtError("label names must be unique")
        self.names = list(names)
        self._index = {n: i for i, n in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    def index(self, label: str, where: str = "") -> int:
        if label in self._index:
            return self._index[label]
        if label.isdigit() and int(label) < len(self.names):
            return int(label)
        raise EdgevtError(f"{where}unknown label {label!r}; known labels: {', '.join(self.names[:10])}"
                          f"{' ...' if len(self.names) > 10 else ''}")

    def save(self, path: str | Path) -> None:
        Path(path).write_text("\n".join(self.names) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "LabelMap":
        p = Path(path)
        if not p.exists():
            raise EdgevtError(f"{p}: no such labels file")
        return cls([line.strip() for line in p.read_text().splitlines() if line.strip()])


def scan_folder_tree(root: Path) -> tuple[list[ClipRecord], LabelMap]:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    labels = LabelMap(classes)
    records = [ClipRecord(str(f), labels.index(c))
               for c in classes for f in sorted((root / c).rglob("*")) if is_video_file(f)]
    return records, labels


def scan_unlabeled(root: Path) -> list[ClipRecord]:
    return [ClipRecord(str(f)) for f in sorted(root.rglob("*")) if is_video_file(f)]


def _find_labels_file(list_path: Path) -> Path | None:
    for candidate in (list_path.parent / "labels.txt", list_path.parent.parent / "labels.txt"):
        if candidate.exists():
            return candidate
    return None


def read_annotation_list(path: Path, labels: LabelMap | None = None,
                         data_root: Path | None = None) -> tuple[list[ClipRecord], LabelMap]:
    """``path label`` lines (MMAction2/UCF101 style) or CSV ``path,label[,start,end]``."""
    root = data_root or path.parent
    rows: list[tuple[str, str, int | None, int | None]] = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as f:
            for i, row in enumerate(csv.reader(f)):
                if not row or row[0].startswith("#"):
                    continue
                if i == 0 and row[0].strip().lower() in ("path", "video", "youtube_id", "filename"):
                    continue  # header
                if len(row) < 2:
                    raise EdgevtError(f"{path}:{i + 1}: expected 'path,label[,start,end]', got {row}")
                start = int(row[2]) if len(row) > 2 and row[2].strip() else None
                end = int(row[3]) if len(row) > 3 and row[3].strip() else None
                rows.append((row[0].strip(), row[1].strip(), start, end))
    else:
        for i, line in enumerate(path.read_text().splitlines()):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2:
                raise EdgevtError(f"{path}:{i + 1}: expected 'path label', got {line!r}")
            rows.append((parts[0], parts[1], None, None))
    if labels is None:
        labels_file = _find_labels_file(path)
        if labels_file is not None:
            labels = LabelMap.load(labels_file)
        else:
            names = sorted({r[1] for r in rows})
            if all(n.isdigit() for n in names):
                raise EdgevtError(f"{path}: labels are numeric and no labels.txt was found beside it; "
                                  "add labels.txt with one class name per line")
            labels = LabelMap(names)
    records = [ClipRecord(str(root / p), labels.index(lab, f"{path}: "), s, e) for p, lab, s, e in rows]
    return records, labels


def resolve_source(source: str | Path, labels: LabelMap | None = None,
                   labeled: bool = True) -> tuple[list[ClipRecord], LabelMap | None]:
    """Records from a folder tree, an unlabeled folder, or a .txt/.csv list."""
    p = Path(source)
    if not p.exists():
        raise EdgevtError(f"{p}: no such file or folder")
    if p.is_file():
        if p.suffix.lower() not in LIST_SUFFIXES:
            raise EdgevtError(f"{p}: expected a folder of videos or a .txt/.csv annotation list")
        records, lm = read_annotation_list(p, labels)
        if not labeled:
            records = [ClipRecord(r.path, None, r.start, r.end) for r in records]
        return records, lm
    has_class_dirs = any(d.is_dir() and any(is_video_file(f) for f in d.rglob("*")) for d in p.iterdir())
    if labeled and has_class_dirs:
        records, found = scan_folder_tree(p)
        if labels is not None:
            # Re-index by the given label map so that indices agree across domains.
            mapped = []
            for r in records:
                name = found.names[r.label]
                mapped.append(ClipRecord(r.path, labels.index(name, f"{p}: "), r.start, r.end))
            return mapped, labels
        return records, found
    if labeled:
        raise NoClipsError(f"{p}: no class subfolders with videos; a labeled dataset needs "
                          "<root>/<class>/<video> or an annotation list")
    return scan_unlabeled(p), labels


def check_records(records: list[ClipRecord], skip_bad: bool) -> tuple[list[ClipRecord], list[tuple[str, str]]]:
    """Probe each video once; raise on the first bad one, or drop and report them with skip_bad."""
    good, bad = [], []
    for r in records:
        try:
            probe_video(r.path)
        except EdgevtError as e:
            if not skip_bad:
                raise EdgevtError(f"{e} (pass --skip-bad to skip unreadable videos)") from None
            bad.append((r.path, str(e)))
            continue
        good.append(r)
    return good, bad


class ClipDataset(Dataset):
    """uint8 clips [T, H, W, 3] in the spec's pixel format, with integer labels (-1 if unlabeled)."""

    def __init__(self, records: list[ClipRecord], spec: ClipSpec, train: bool = False, transform=None,
                 skip_bad: bool = False, cache: bool = False, seed: int = 0, sampling: str | None = None,
                 check: bool = True):
        if check:
            records, self.skipped = check_records(records, skip_bad)
        else:
            self.skipped = []
        if not records:
            raise NoClipsError("no readable clips in the dataset")
        self.records = records
        self.spec = spec
        self.train = train
        self.transform = transform
        self.sampling = sampling
        self.seed = seed
        self.epoch = 0
        self._cache: dict[int, np.ndarray] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> np.ndarray:
        return np.array([-1 if r.label is None else r.label for r in self.records])

    def set_epoch(self, epoch: int) -> None:
        """Per-epoch augmentation randomness that stays deterministic per seed and resumable."""
        self.epoch = epoch

    def video(self, i: int) -> np.ndarray:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        r = self.records[i]
        frames = read_frames(r.path, self.spec.size, self.spec.resize, self.spec.pixel_format,
                             start=r.start or 0, end=r.end)
        if self._cache is not None:
            self._cache[i] = frames
        return frames

    def clip(self, i: int, rng: np.random.Generator | None = None) -> np.ndarray:
        frames = self.video(i)
        idx = sample_indices(len(frames), self.spec, train=self.train, rng=rng, sampling=self.sampling)
        return frames[idx]

    def __getitem__(self, i: int):
        rng = np.random.default_rng((self.seed, self.epoch, i)) if self.train else None
        clip = self.clip(i, rng)
        if self.transform is not None and rng is not None:
            clip = self.transform(clip, rng)
        label = self.records[i].label
        return torch.from_numpy(np.ascontiguousarray(clip)), -1 if label is None else label


def load_dataset(source: str | Path, spec: ClipSpec, labels: LabelMap | None = None, labeled: bool = True,
                 **kwargs) -> ClipDataset:
    """A ClipDataset from any supported source; ``labels`` fixes the index order across domains."""
    records, lm = resolve_source(source, labels, labeled)
    if not records:
        raise NoClipsError(f"{source}: contains no video files")
    ds = ClipDataset(records, spec, **kwargs)
    ds.label_map = lm
    return ds


def has_labels(source) -> bool:
    """Whether a data source says each clip's class: an annotation list, or a folder with class
    subfolders of videos. A Python list of paths or a flat folder of videos does not."""
    if isinstance(source, (list, tuple)):
        return False
    p = Path(source)
    if p.is_file():
        return p.suffix.lower() in LIST_SUFFIXES
    return p.is_dir() and any(d.is_dir() and any(is_video_file(f) for f in d.rglob("*")) for d in p.iterdir())


def _unlabeled_list(path: Path) -> list:
    """The clips of a 'path label' / CSV list with their labels ignored (whatever they say)."""
    class AnyLabel(LabelMap):
        def index(self, label: str, where: str = "") -> int:
            return -1

    records, _ = read_annotation_list(path, AnyLabel([]))
    if not records:
        raise NoClipsError(f"{path}: contains no video files")
    return [ClipRecord(r.path, None, r.start, r.end) for r in records]


def load_clips(source: str | Path | list, spec: ClipSpec, max_clips: int | None = None, *,
               labeled: bool = False, what: str = "calibration",
               skip_bad: bool = True, windows: int = 1) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(uint8 clips [N,T,H,W,3], labels [N] (-1 unlabeled), paths) from a data source.

    ``max_clips`` picks clips evenly spread over the source (deterministic), so a class-sorted
    folder still gives every class. ``windows`` > 1 takes up to that many evaluation windows of each
    video (``edgevt.data.sampling.window_indices``): rows of one video are consecutive and share its
    label and path, so ``len(set(paths))`` is the number of videos. Unreadable videos are skipped with a warning (none readable is an
    error); ``skip_bad=False`` makes the first one an error naming the file, as ``adapt`` does by default.
    """
    labels = LabelMap(spec.labels) if labeled and spec.labels else None
    try:
        if isinstance(source, (list, tuple)):
            ds = ClipDataset([ClipRecord(str(p)) for p in source], spec, train=False, skip_bad=skip_bad)
        elif not labeled and Path(source).is_file() and Path(source).suffix.lower() in LIST_SUFFIXES:
            # Unlabeled use of a list (calibration): its labels are ignored, so an unknown one is no error.
            ds = ClipDataset(_unlabeled_list(Path(source)), spec, train=False, skip_bad=skip_bad)
        else:
            ds = load_dataset(source, spec, labels=labels, labeled=labeled, train=False, skip_bad=skip_bad)
    except EdgevtError as e:
        if isinstance(e, NoClipsError):
            raise EdgevtError(f"{source}: no readable {what} clips ({e}); point it at a folder or list "
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
        if windows == 1:
            clip, label = ds[int(i)]
            views = [clip.numpy()]
        else:
            frames = ds.video(int(i))
            views = [frames[w] for w in window_indices(len(frames), spec, windows)]
            label = -1 if ds.records[int(i)].label is None else ds.records[int(i)].label
        for v in views:
            clips.append(v)
            labs.append(int(label))
            paths.append(ds.records[int(i)].path)
    return np.stack(clips), np.asarray(labs, dtype=np.int64), paths
