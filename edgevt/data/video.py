"""Video decoding with OpenCV, resized once to the ClipSpec size in its pixel format."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgevt.errors import EdgevtError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
# Smallest frame side accepted: below it there is nothing to classify (a 1x1 video would be
# upscaled into flat frames without a word). edgevt.stream.sources applies the same rule.
MIN_FRAME_SIDE = 8


def is_video_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS


def resize_frame(frame: np.ndarray, size: tuple[int, int], policy: str = "stretch",
                 out: np.ndarray | None = None) -> np.ndarray:
    """Resize an HxWx3 uint8 frame to ``size`` (H, W): ``stretch`` or ``short_side`` + centre crop."""
    h, w = size
    if policy == "short_side":
        fh, fw = frame.shape[:2]
        scale = max(h / fh, w / fw)
        rh, rw = max(h, round(fh * scale)), max(w, round(fw * scale))
        if (rh, rw) != (fh, fw):
            frame = cv2.resize(frame, (rw, rh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        y, x = (rh - h) // 2, (rw - w) // 2
        frame = frame[y:y + h, x:x + w]
        if out is not None:
            out[...] = frame
            return out
        return np.ascontiguousarray(frame)
    if frame.shape[:2] == (h, w):
        if out is not None:
            out[...] = frame
            return out
        return frame
    fh = frame.shape[0]
    interp = cv2.INTER_AREA if h < fh else cv2.INTER_LINEAR
    if out is not None:
        return cv2.resize(frame, (w, h), dst=out, interpolation=interp)
    return cv2.resize(frame, (w, h), interpolation=interp)


def open_capture(path: str | Path) -> cv2.VideoCapture:
    p = Path(path)
    if not p.exists():
        raise EdgevtError(f"{p}: no such file")
    cap = cv2.VideoCapture(str(p))
    if not cap.isOpened():
        raise EdgevtError(f"{p}: cannot be opened as a video (unsupported format or corrupt file)")
    return cap


def probe_video(path: str | Path) -> dict:
    """Frame count, fps and size without decoding every frame; raises EdgevtError if unreadable."""
    cap = open_capture(path)
    try:
        ok, frame = cap.read()
        if not ok or frame is None:
            raise EdgevtError(f"{path}: has no decodable frames (empty or truncated video)")
        if min(frame.shape[:2]) < MIN_FRAME_SIDE:
            raise EdgevtError(f"{path}: frames are {frame.shape[1]}x{frame.shape[0]} pixels, too small to "
                              f"classify (at least {MIN_FRAME_SIDE}x{MIN_FRAME_SIDE})")
        return {
            "frames": int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
            "fps": float(cap.get(cv2.CAP_PROP_FPS)) or 0.0,
            "height": frame.shape[0],
            "width": frame.shape[1],
        }
    finally:
        cap.release()


def read_frames(path: str | Path, size: tuple[int, int] | None = None, resize: str = "stretch",
                pixel_format: str = "RGB", start: int = 0, end: int | None = None) -> np.ndarray:
    """Decode frames [start, end) of a video into a uint8 array [F, H, W, 3]."""
    cap = open_capture(path)
    frames = []
    try:
        if start:
            cap.set(cv2.CAP_PROP_POS_FRAMES, start)
        i = start
        while end is None or i < end:
            ok, frame = cap.read()
            if not ok:
                break
            if pixel_format == "RGB":
                frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            if size is not None:
                frame = resize_frame(frame, size, resize)
            frames.append(frame)
            i += 1
    finally:
        cap.release()
    if not frames:
        raise EdgevtError(f"{path}: has no decodable frames (empty or truncated video)")
    return np.stack(frames)


def write_video(path: str | Path, frames: np.ndarray, fps: float = 25.0, pixel_format: str = "RGB") -> None:
    """Write uint8 frames [F, H, W, 3] with OpenCV (mp4v for .mp4, MJPG otherwise)."""
    p = Path(path)
    h, w = frames.shape[1:3]
    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if p.suffix.lower() == ".mp4" else "MJPG"))
    writer = cv2.VideoWriter(str(p), fourcc, fps, (w, h))
    if not writer.isOpened():
        raise EdgevtError(f"{p}: OpenCV cannot write this video format; try a .avi path")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) if pixel_format == "RGB" else frame)
    finally:
        writer.release()
