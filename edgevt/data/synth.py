"""MotionDigits-DA: a synthetic action-recognition benchmark with a real appearance shift.

A class is a *motion* (translate right/left/up/down, rotate cw/ccw, optionally zoom in/out) of a
real handwritten digit (scikit-learn's digits). Start position (on a torus), start angle and speed
are random, so a single frame carries no label information and the time-reversed clip belongs to
the partner class (right <-> left, cw <-> ccw, zoom in <-> zoom out).

- source domain: clean glyphs on black.
- target domain: glyphs drawn over hazy crops of real photos that ship with scikit-learn and
  scikit-image, with a colour cast and per-frame sensor noise.
  target-train and target-test use disjoint background photos.

Everything is deterministic per seed. Videos are written with OpenCV plus ``path label`` lists,
folder-per-class trees and ``labels.txt``.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgevt.data.video import write_video
from edgevt.fileio import check_replaceable, replace_dir, staging_dir

MOTIONS = ["move_right", "move_left", "move_up", "move_down", "rotate_cw", "rotate_ccw"]
ZOOMS = ["zoom_in", "zoom_out"]
PARTNER = {"move_right": "move_left", "move_left": "move_right", "move_up": "move_down",
           "move_down": "move_up", "rotate_cw": "rotate_ccw", "rotate_ccw": "rotate_cw",
           "zoom_in": "zoom_out", "zoom_out": "zoom_in"}
_DIRECTION = {"move_right": (1, 0), "move_left": (-1, 0), "move_up": (0, -1), "move_down": (0, 1)}

# Background photos bundled with scikit-image / scikit-learn, split so that target-train and
# target-test never share a photo.
TRAIN_BACKGROUNDS = ["astronaut", "coffee", "rocket", "china", "brick", "grass", "camera", "moon"]
TEST_BACKGROUNDS = ["chelsea", "flower", "immunohistochemistry", "hubble_deep_field", "gravel", "coins",
                    "clock", "cell"]
SPLITS = ("source_train", "source_test", "target_train", "target_test")


@dataclass
class SynthConfig:
    size: int = 64
    frames: int = 16
    per_class: dict = field(default_factory=lambda: {"source_train": 40, "source_test": 15,
                                                     "target_train": 40, "target_test": 15})
    zoom: bool = False
    seed: int = 0
    fps: float = 25.0
    ext: str = ".mp4"

    @property
    def classes(self) -> list[str]:
        return MOTIONS + (ZOOMS if self.zoom else [])


def load_background(name: str) -> np.ndarray:
    """An RGB uint8 photo shipped inside scikit-image or scikit-learn."""
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image
        return load_sample_image(f"{name}.jpg")
    import skimage.data
    img = getattr(skimage.data, name)()
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3]).astype(np.uint8)


def load_glyphs() -> np.ndarray:
    """The 1797 handwritten 8x8 digits of scikit-learn as float images in [0, 1]."""
    from sklearn.datasets import load_digits
    return (load_digits().images / 16.0).astype(np.float32)


def glyph_masks(glyph: np.ndarray, motion: str, size: int, frames: int, rng: np.random.Generator) -> np.ndarray:
    """Per-frame glyph masks [F, size, size] in [0, 1] for one motion on a torus."""
    gpx = int(round(size * 0.42))
    canvas = np.zeros((size, size), np.float32)
    g = np.clip(cv2.resize(glyph, (gpx, gpx), interpolation=cv2.INTER_CUBIC), 0, 1)
    o = (size - gpx) // 2
    canvas[o:o + gpx, o:o + gpx] = g
    centre = (size / 2 - 0.5, size / 2 - 0.5)
    pos = rng.uniform(0, size, 2)
    angle = rng.uniform(0, 360)
    scale = 1.0
    speed = rng.uniform(1.5, 3.5)  # px / frame
    omega = rng.uniform(10, 20)  # degrees / frame
    zoom_rate = rng.uniform(1.03, 1.05)  # scale factor / frame
    if motion in ZOOMS:
        scale = rng.uniform(0.55, 0.75) if motion == "zoom_in" else rng.uniform(0.55, 0.75) * zoom_rate ** (frames - 1)
    out = np.empty((frames, size, size), np.float32)
    for t in range(frames):
        if motion in _DIRECTION:
            d = np.array(_DIRECTION[motion], np.float32)
            p = pos + d * speed * t
            a, s = angle, scale
        elif motion in ("rotate_cw", "rotate_ccw"):
            p = pos
            a = angle + (-omega if motion == "rotate_cw" else omega) * t  # OpenCV angles are ccw
            s = scale
        else:
            p, a = pos, angle
            s = scale * (zoom_rate ** t if motion == "zoom_in" else zoom_rate ** -t)
        rotated = cv2.warpAffine(canvas, cv2.getRotationMatrix2D(centre, a, s), (size, size),
                                 flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        shift = np.float32([[1, 0, p[0] - size / 2], [0, 1, p[1] - size / 2]])
        out[t] = cv2.warpAffine(rotated, shift, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    return np.clip(out, 0, 1)


def compose_source(masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    level = rng.uniform(200, 255)
    frames = (masks * level).astype(np.uint8)
    return np.repeat(frames[..., None], 3, axis=-1)


def background_crop(photo: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A zoomed-in square crop (a window of 1-2.5x the output size): natural texture, no aliasing."""
    h, w = photo.shape[:2]
    side = int(min(h, w, rng.uniform(1.0, 2.5) * size))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = photo[y:y + side, x:x + side]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)


def compose_target(masks: np.ndarray, photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Glyph over a hazy photo crop, with a colour cast and per-frame sensor noise.

    The ink contrasts with the background on average (bright on dark, dark on bright): an
    |background - glyph| blend (MNIST-M) makes glyphs vanish on mid-grey textures such as gravel,
    which turns the target domain into noise rather than a shifted version of the task.
    """
    bg = background_crop(photo, masks.shape[1], rng)
    mean = float(bg.mean())
    bg = (bg - mean) * rng.uniform(0.5, 0.8) + mean  # haze: the photo at reduced contrast
    ink = (rng.uniform(190, 255, 3) if mean < 128 else rng.uniform(0, 60, 3)).astype(np.float32)
    m = masks[..., None]
    frames = bg[None] * (1 - m) + ink * m
    cast = rng.uniform(0.7, 1.3, 3).astype(np.float32)
    frames = frames * cast + rng.normal(0, 6, frames.shape).astype(np.float32)  # sensor noise per frame
    return np.clip(frames, 0, 255).astype(np.uint8)


def make_clip(motion: str, domain: str, glyphs: np.ndarray, photos: list[np.ndarray], size: int, frames: int,
              rng: np.random.Generator) -> np.ndarray:
    glyph = glyphs[int(rng.integers(len(glyphs)))]
    masks = glyph_masks(glyph, motion, size, frames, rng)
    if domain == "source":
        return compose_source(masks, rng)
    return compose_target(masks, photos[int(rng.integers(len(photos)))], rng)


def is_dataset(path: str | Path) -> bool:
    """True if ``path`` holds a data set written by ``generate`` (the only kind it replaces)."""
    try:
        return json.loads((Path(path) / "meta.json").read_text()).get("name") == "MotionDigits-DA"
    except (OSError, ValueError, AttributeError):
        return False


def generate(out: str | Path, config: SynthConfig | None = None, progress=None) -> dict:
    """Write the data set under ``out``; returns its metadata (also saved as meta.json).

    The tree is written into a temporary folder and moved into place at the end, so an interrupted
    run never leaves a half-written data set that looks complete.
    """
    cfg = config or SynthConfig()
    out = Path(out)
    check_replaceable(out, is_dataset, "a MotionDigits-DA data set")
    tmp = staging_dir(out)
    try:
        glyphs = load_glyphs()
        photos = {"train": [load_background(n) for n in TRAIN_BACKGROUNDS],
                  "test": [load_background(n) for n in TEST_BACKGROUNDS]}
        total = sum(cfg.per_class[s] for s in SPLITS) * len(cfg.classes)
        task = progress.add_task("MotionDigits-DA", total=total) if progress else None
        for split_index, split in enumerate(SPLITS):
            domain, part = split.split("_")
            lines = []
            for ci, motion in enumerate(cfg.classes):
                folder = tmp / domain / part / motion
                folder.mkdir(parents=True, exist_ok=True)
                for i in range(cfg.per_class[split]):
                    rng = np.random.default_rng((cfg.seed, split_index, ci, i))
                    clip = make_clip(motion, domain, glyphs, photos[part], cfg.size, cfg.frames, rng)
                    rel = f"{domain}/{part}/{motion}/{motion}_{i:04d}{cfg.ext}"
                    write_video(tmp / rel, clip, cfg.fps)
                    lines.append(f"{rel} {motion}")
                    if progress:
                        progress.advance(task)
            (tmp / f"{split}.txt").write_text("\n".join(lines) + "\n")
        (tmp / "labels.txt").write_text("\n".join(cfg.classes) + "\n")
        meta = {"name": "MotionDigits-DA", "config": asdict(cfg), "classes": cfg.classes,
                "backgrounds": {"target_train": TRAIN_BACKGROUNDS, "target_test": TEST_BACKGROUNDS},
                "splits": {s: cfg.per_class[s] * len(cfg.classes) for s in SPLITS}}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        replace_dir(tmp, out, is_dataset, "a MotionDigits-DA data set")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def make_stream_video(path: str | Path, domain: str = "target", num_frames: int = 2000, size: int = 64,
                      seed: int = 0, zoom: bool = False, fps: float = 25.0,
                      segment_frames: tuple[int, int] = (40, 80)) -> list[dict]:
    """A long video of consecutive motion segments with ground truth; returns the segment list
    (also written beside the video as ``<name>.segments.json``). Target uses test backgrounds."""
    rng = np.random.default_rng((seed, 99))
    classes = MOTIONS + (ZOOMS if zoom else [])
    glyphs = load_glyphs()
    photos = [load_background(n) for n in TEST_BACKGROUNDS]
    chunks, segments, t = [], [], 0
    while t < num_frames:
        n = min(int(rng.integers(segment_frames[0], segment_frames[1] + 1)), num_frames - t)
        motion = classes[int(rng.integers(len(classes)))]
        chunks.append(make_clip(motion, domain, glyphs, photos, size, n, rng))
        segments.append({"label": motion, "start": t, "end": t + n})
        t += n
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, np.concatenate(chunks), fps)
    path.with_suffix(".segments.json").write_text(json.dumps(segments, indent=1))
    return segments
