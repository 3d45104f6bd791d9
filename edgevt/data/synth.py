"""MotionDigits-DA: a synthetic action-recognition benchmark with a real appearance shift.

A class is a *motion* (translate right/left/up/down, rotate cw/ccw, optionally zoom in/out) of a
real handwritten digit (scikit-learn's digits). Start position (on a torus), start angle and speed
are random, so a single frame carries no label information and the time-reversed clip belongs to
the partner class (right <-> left, cw <-> ccw, zoom in <-> zoom out).

- source domain: clean glyphs on black.
- target domain: glyphs drawn over hazy crops of real photos that ship with scikit-learn and
  scikit-image, with a colour cast and per-frame sensor noise.
  By default (split ``cameras``) a target domain is a few fixed cameras and target-train and
  target-test are clips from the same cameras at other moments; split ``unseen`` keeps disjoint
  photos for target-train and target-test. ``shifts`` name other deployment shifts (night, rain,
  blur, angle, codec, clutter) and ``source_style="photo"`` films the source over daytime photos.

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
    shifts: tuple = ("photo",)  # the target's deployment shifts (SHIFTS); several combine
    split: str = "cameras"  # cameras (the deployment case) | unseen (see SPLIT_NAMES)
    source_style: str = "clean"  # clean (glyphs on black) | photo (realistic: over daytime photos)

    def __post_init__(self) -> None:
        from edgevt.errors import EdgevtError

        self.shifts = parse_shifts(self.shifts)
        if self.split not in SPLIT_NAMES:
            raise EdgevtError(f"unknown --split {self.split!r}; use {' or '.join(SPLIT_NAMES)}")
        if self.source_style not in SOURCE_STYLES:
            raise EdgevtError(f"unknown --source-style {self.source_style!r}; use {' or '.join(SOURCE_STYLES)}")

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
    if isinstance(img, tuple):  # stereo pairs: the left view
        img = img[0]
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
    """Glyph over a hazy photo crop, with a colour cast and per-frame sensor noise (one random
    camera per clip: the ``unseen`` split's rendering).

    The ink contrasts with the background on average (bright on dark, dark on bright): an
    |background - glyph| blend (MNIST-M) makes glyphs vanish on mid-grey textures such as gravel,
    which turns the target domain into noise rather than a shifted version of the task.
    """
    cam = Camera.draw(photo, masks.shape[1], ("photo",), rng)
    cam.drift = False  # one clip per camera: no moments to drift between (and the original rendering)
    return cam.render(masks, rng)


# -- cameras and deployment shifts -------------------------------------------------------------------
# A target domain is one or a few fixed cameras: a scene, a viewpoint, a sensor. Each shift names
# what changes from the source cameras; several can be combined (``night,rain``).
SHIFTS = {
    "photo": "glyphs over hazy crops of real photos, colour cast, sensor noise (the original target)",
    "clutter": "strongly textured scenes (brick, gravel, grass...) at full contrast",
    "night": "low light: a dark scene, high gain noise, a cold cast",
    "rain": "bright rain streaks, new in every frame",
    "blur": "defocus blur of the whole frame",
    "angle": "a new viewpoint: a fixed perspective warp and scale of the whole frame",
    "codec": "a colour cast and heavy JPEG compression of every frame",
}
SCENE_SHIFTS = ("photo", "clutter")  # shifts that choose the scene: at most one
SPLIT_NAMES = {"cameras": "target-train and target-test from the same target cameras at other moments",
               "unseen": "target-train and target-test from disjoint photos (cameras nobody adapted to)"}
TARGET_CAMERAS = 4  # cameras per target domain in the ``cameras`` split
SOURCE_STYLES = ("clean", "photo")
# Daytime photos for a realistic source domain, disjoint from every target photo.
SOURCE_BACKGROUNDS = ["stereo_motorcycle", "retina", "colorwheel", "page", "text", "logo"]
CLUTTER_BACKGROUNDS = ["brick", "grass", "gravel", "coins", "cell", "moon"]


def parse_shifts(text: str | tuple | list) -> tuple[str, ...]:
    """``"night,rain"`` -> ("night", "rain"), checked: unknown names list the known ones."""
    from edgevt.errors import EdgevtError

    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n and n.strip()]
    if not names:
        raise EdgevtError(f"--shift needs at least one name; known: {', '.join(SHIFTS)}")
    unknown = [n for n in names if n not in SHIFTS]
    if unknown:
        raise EdgevtError(f"unknown --shift {', '.join(unknown)}; known: {', '.join(SHIFTS)}")
    scene = [n for n in names if n in SCENE_SHIFTS]
    if len(scene) > 1:
        raise EdgevtError(f"--shift {' and '.join(scene)} both choose the scene behind the action; keep one")
    return tuple(dict.fromkeys(names))


@dataclass
class Camera:
    """One fixed camera: scene (a background crop or black), viewpoint and sensor. Clips filmed by
    it differ only in the action, in light drift and in per-frame noise."""

    shifts: tuple
    scene: np.ndarray | None  # float32 [H, W, 3] or None (black)
    ink: np.ndarray
    cast: np.ndarray
    noise: float
    warp: np.ndarray | None = None  # 3x3 homography (angle)
    blur: float = 0.0
    dark: float = 1.0
    jpeg: int = 0
    drift: bool = True  # light drifts by +-10% between the moments a camera films

    @classmethod
    def draw(cls, photo: np.ndarray | None, size: int, shifts: tuple, rng: np.random.Generator) -> "Camera":
        scene = None
        if photo is not None:
            scene = background_crop(photo, size, rng)
            if "clutter" not in shifts:
                mean = float(scene.mean())
                scene = (scene - mean) * rng.uniform(0.5, 0.8) + mean  # haze: reduced contrast
        mean = float(scene.mean()) if scene is not None else 0.0
        ink = (rng.uniform(190, 255, 3) if mean < 128 else rng.uniform(0, 60, 3)).astype(np.float32)
        cam = cls(shifts, scene, ink, np.ones(3, np.float32), 0.0)
        if scene is not None or "codec" in shifts:
            cam.cast = rng.uniform(0.7, 1.3, 3).astype(np.float32)
        if "photo" in shifts or "clutter" in shifts:
            cam.noise = 6.0
        if "night" in shifts:
            cam.dark = float(rng.uniform(0.25, 0.4))
            cam.cast = cam.cast * np.float32([0.85, 0.95, 1.15])
            cam.noise = max(cam.noise, 12.0)
        if "blur" in shifts:
            cam.blur = float(rng.uniform(1.0, 1.6) * size / 64)
        if "codec" in shifts:
            cam.jpeg = int(rng.integers(8, 16))
        if "angle" in shifts:
            s = size
            src = np.float32([[0, 0], [s, 0], [s, s], [0, s]])
            scale = rng.uniform(0.75, 0.9)
            dst = (src - s / 2) * scale + s / 2 + rng.uniform(-0.12, 0.12, (4, 2)).astype(np.float32) * s
            cam.warp = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
        return cam

    def render(self, masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        f, size = masks.shape[0], masks.shape[1]
        m = masks[..., None]
        bg = self.scene if self.scene is not None else np.zeros((size, size, 3), np.float32)
        frames = bg[None] * (1 - m) + self.ink * m
        if self.drift:
            frames = frames * rng.uniform(0.9, 1.1)
        if self.warp is not None:
            frames = np.stack([cv2.warpPerspective(x, self.warp, (size, size), flags=cv2.INTER_LINEAR,
                                                   borderMode=cv2.BORDER_REFLECT) for x in frames])
        if self.blur:
            frames = np.stack([cv2.GaussianBlur(x, (0, 0), self.blur) for x in frames])
        frames = frames * self.dark * self.cast
        if "rain" in self.shifts:
            frames = frames + rain_streaks(f, size, rng)
        if self.noise:
            frames = frames + rng.normal(0, self.noise, frames.shape).astype(np.float32)
        frames = np.clip(frames, 0, 255).astype(np.uint8)
        if self.jpeg:
            q = [int(cv2.IMWRITE_JPEG_QUALITY), self.jpeg]
            frames = np.stack([cv2.imdecode(cv2.imencode(".jpg", x, q)[1], cv2.IMREAD_UNCHANGED) for x in frames])
        return frames


def rain_streaks(frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Additive bright streaks [F, size, size, 1], falling steeply, drawn anew for every frame."""
    out = np.zeros((frames, size, size, 1), np.float32)
    n = int(size * size / 90)
    length = max(3, size // 10)
    for t in range(frames):
        canvas = np.zeros((size, size), np.float32)
        xs, ys = rng.integers(0, size, n), rng.integers(0, size, n)
        for x, y in zip(xs, ys):
            cv2.line(canvas, (int(x), int(y)), (int(x) + length // 4, int(y) + length), 1.0, 1)
        out[t, ..., 0] = canvas * rng.uniform(60, 110)
    return out


def make_clip(motion: str, domain: str, glyphs: np.ndarray, photos: list[np.ndarray], size: int, frames: int,
              rng: np.random.Generator, camera: Camera | None = None) -> np.ndarray:
    """One clip. ``camera`` films it (a fixed camera); without one, source clips are clean glyphs on
    black and target clips get a random photo crop of their own (the original rendering)."""
    glyph = glyphs[int(rng.integers(len(glyphs)))]
    masks = glyph_masks(glyph, motion, size, frames, rng)
    if camera is not None:
        return camera.render(masks, rng)
    if domain == "source":
        return compose_source(masks, rng)
    return compose_target(masks, photos[int(rng.integers(len(photos)))], rng)


def domain_cameras(cfg: "SynthConfig", domain: str, part: str, photos: dict) -> list[Camera] | None:
    """The fixed cameras that film ``domain``/``part``, or None for one random camera per clip."""
    rng = np.random.default_rng((cfg.seed, 7, domain == "target", part == "test" and cfg.split == "unseen"))
    if domain == "source":
        if cfg.source_style == "clean":
            return None  # clean glyphs on black: every source clip is the same camera
        pool = photos["source"]
        return [Camera.draw(pool[i % len(pool)], cfg.size, (), rng) for i in range(2 * TARGET_CAMERAS)]
    if cfg.split == "unseen" and cfg.shifts == ("photo",):
        return None  # the original target: a random photo crop per clip, disjoint photos per part
    if "clutter" in cfg.shifts:
        pool = photos["clutter"]
    elif "photo" in cfg.shifts:
        pool = photos["test" if (part == "test" and cfg.split == "unseen") else "train"]
    elif cfg.source_style == "photo":
        pool = photos["train"]
    else:
        pool = [None]
    if cfg.split == "unseen" and pool is photos["clutter"]:
        half = len(pool) // 2
        pool = pool[half:] if part == "test" else pool[:half]
    order = rng.permutation(len(pool))
    return [Camera.draw(pool[order[i % len(pool)]], cfg.size, cfg.shifts, rng) for i in range(TARGET_CAMERAS)]


def load_photo_pools() -> dict[str, list[np.ndarray]]:
    return {"train": [load_background(n) for n in TRAIN_BACKGROUNDS],
            "test": [load_background(n) for n in TEST_BACKGROUNDS],
            "source": [load_background(n) for n in SOURCE_BACKGROUNDS],
            "clutter": [load_background(n) for n in CLUTTER_BACKGROUNDS]}


def used_backgrounds(cfg: "SynthConfig") -> dict:
    """Which photos each part's scenes are cut from (for meta.json and the disjointness checks)."""
    if "clutter" in cfg.shifts:
        half = len(CLUTTER_BACKGROUNDS) // 2
        train = test = CLUTTER_BACKGROUNDS
        if cfg.split == "unseen":
            train, test = CLUTTER_BACKGROUNDS[:half], CLUTTER_BACKGROUNDS[half:]
    elif "photo" in cfg.shifts or cfg.source_style == "photo":
        train = TRAIN_BACKGROUNDS
        test = TEST_BACKGROUNDS if cfg.split == "unseen" and "photo" in cfg.shifts else TRAIN_BACKGROUNDS
    else:
        train = test = []
    return {"source": SOURCE_BACKGROUNDS if cfg.source_style == "photo" else [], "target_train": list(train),
            "target_test": list(test)}


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
        photos = load_photo_pools()
        total = sum(cfg.per_class[s] for s in SPLITS) * len(cfg.classes)
        task = progress.add_task("MotionDigits-DA", total=total) if progress else None
        for split_index, split in enumerate(SPLITS):
            domain, part = split.split("_")
            lines = []
            cameras = domain_cameras(cfg, domain, part, photos)
            for ci, motion in enumerate(cfg.classes):
                folder = tmp / domain / part / motion
                folder.mkdir(parents=True, exist_ok=True)
                for i in range(cfg.per_class[split]):
                    rng = np.random.default_rng((cfg.seed, split_index, ci, i))
                    camera = cameras[int(rng.integers(len(cameras)))] if cameras else None
                    clip = make_clip(motion, domain, glyphs, photos[part], cfg.size, cfg.frames, rng, camera)
                    rel = f"{domain}/{part}/{motion}/{motion}_{i:04d}{cfg.ext}"
                    write_video(tmp / rel, clip, cfg.fps)
                    lines.append(f"{rel} {motion}")
                    if progress:
                        progress.advance(task)
            (tmp / f"{split}.txt").write_text("\n".join(lines) + "\n")
        (tmp / "labels.txt").write_text("\n".join(cfg.classes) + "\n")
        meta = {"name": "MotionDigits-DA", "config": asdict(cfg), "classes": cfg.classes,
                "shifts": {n: SHIFTS[n] for n in cfg.shifts}, "split": SPLIT_NAMES[cfg.split],
                "backgrounds": used_backgrounds(cfg),
                "splits": {s: cfg.per_class[s] * len(cfg.classes) for s in SPLITS}}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        replace_dir(tmp, out, is_dataset, "a MotionDigits-DA data set")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def make_stream_video(path: str | Path, domain: str = "target", num_frames: int = 2000, size: int = 64,
                      seed: int = 0, zoom: bool = False, fps: float = 25.0,
                      segment_frames: tuple[int, int] = (40, 80), config: "SynthConfig | None" = None) -> list[dict]:
    """A long video of consecutive motion segments with ground truth; returns the segment list
    (also written beside the video as ``<name>.segments.json``).

    With ``config`` (the data set's), the video is filmed by one fixed camera of that domain's test
    part, as a deployed camera would be; without it, target segments use random crops of the test
    photos (the original rendering)."""
    rng = np.random.default_rng((seed, 99))
    classes = MOTIONS + (ZOOMS if zoom else [])
    glyphs = load_glyphs()
    photos = [load_background(n) for n in TEST_BACKGROUNDS]
    camera = None
    if config is not None:
        cameras = domain_cameras(config, domain, "test", load_photo_pools())
        camera = cameras[0] if cameras else None
        if cameras is None and domain == "target":
            photos = [load_background(n) for n in used_backgrounds(config)["target_test"]]
    chunks, segments, t = [], [], 0
    while t < num_frames:
        n = min(int(rng.integers(segment_frames[0], segment_frames[1] + 1)), num_frames - t)
        motion = classes[int(rng.integers(len(classes)))]
        chunks.append(make_clip(motion, domain, glyphs, photos, size, n, rng, camera))
        segments.append({"label": motion, "start": t, "end": t + n})
        t += n
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, np.concatenate(chunks), fps)
    path.with_suffix(".segments.json").write_text(json.dumps(segments, indent=1))
    return segments
