import numpy as np
import pytest

from edgevt.data.video import probe_video, read_frames, resize_frame, write_video
from edgevt.errors import EdgevtError


def _clip(n=10, h=48, w=64):
    # A smooth colour gradient: lossy codecs keep it close, unlike random noise.
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 128)], -1).astype(np.uint8)
    return np.repeat(base[None], n, axis=0)


def test_write_read_roundtrip_and_resize(tmp_path):
    frames = _clip()
    write_video(tmp_path / "a.avi", frames)
    back = read_frames(tmp_path / "a.avi")
    assert back.shape == frames.shape
    assert np.abs(back.astype(int) - frames).mean() < 8  # MJPG is lossy
    small = read_frames(tmp_path / "a.avi", size=(32, 32))
    assert small.shape == (10, 32, 32, 3)
    assert probe_video(tmp_path / "a.avi")["frames"] == 10
    assert read_frames(tmp_path / "a.avi", start=2, end=5).shape[0] == 3


def test_short_side_crop_keeps_aspect():
    f = np.zeros((100, 200, 3), np.uint8)
    f[:, 90:110] = 255  # a centred bar survives the centre crop
    out = resize_frame(f, (50, 50), "short_side")
    assert out.shape == (50, 50, 3)
    assert out[:, 20:30].mean() > 200 and out[:, :10].mean() == 0


def test_bad_files(tmp_path):
    with pytest.raises(EdgevtError, match="no such file"):
        read_frames(tmp_path / "missing.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"not a video" * 10)
    with pytest.raises(EdgevtError, match="junk.mp4"):
        read_frames(tmp_path / "junk.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(EdgevtError, match="empty.mp4"):
        probe_video(tmp_path / "empty.mp4")


def test_truncated_video_reads_what_is_there(tmp_path):
    write_video(tmp_path / "t.avi", _clip(20))
    data = (tmp_path / "t.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    try:
        frames = read_frames(tmp_path / "cut.avi")
    except EdgevtError as e:  # a cut header is also acceptable, as long as it is a clear error
        assert "cut.avi" in str(e)
    else:
        assert 0 < len(frames) <= 20


def test_a_video_too_small_to_classify_is_a_clear_error(tmp_path):
    from edgevt.data.video import probe_video

    write_video(tmp_path / "dot.avi", np.zeros((4, 1, 1, 3), np.uint8))
    with pytest.raises(EdgevtError, match="dot.avi: frames are 1x1 pixels, too small"):
        probe_video(tmp_path / "dot.avi")
