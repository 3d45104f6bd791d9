import time

import numpy as np
import pytest

from edgevt.data.video import read_frames
from edgevt.errors import EdgevtError
from edgevt.stream.ring import FrameRing
from edgevt.stream.sources import FrameReader, SourceInfo, parse_source


def test_parse_source(tmp_path):
    assert parse_source("0") == SourceInfo("camera", 0, True)
    assert parse_source(2).kind == "camera"
    assert parse_source("rtsp://cam.local/stream").kind == "url"
    gst = "nvarguscamerasrc ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! appsink"
    assert parse_source(gst) == SourceInfo("gstreamer", gst, True)
    with pytest.raises(EdgevtError, match="no such video file"):
        parse_source(tmp_path / "missing.mp4")
    with pytest.raises(EdgevtError, match="folder"):
        parse_source(tmp_path)


def _read_all(info, spec, **kw):
    ring = FrameRing(400, (*spec.size, 3), spec.num_frames, block=True)
    reader = FrameReader(info, ring, spec, **kw)
    reader.start()
    reader.join(10)
    n = ring.newest + 1
    return reader, ring, n


def test_reader_decodes_resizes_and_strides_like_the_dataset(stream_assets):
    spec, video = stream_assets["spec"], stream_assets["video"]  # frame_stride 2
    reader, ring, n = _read_all(parse_source(video), spec)
    assert reader.ended == "eof" and reader.error is None
    ref = read_frames(video, spec.size, spec.resize, spec.pixel_format)[::spec.frame_stride]
    assert n == len(ref) == reader.frames_kept and reader.frames_read == 90
    np.testing.assert_array_equal(ring.frames[:n], ref)
    assert list(ring.source_index[:n]) == list(range(0, 90, 2))
    assert (ring.decode_time[:n] > 0).all()


def test_live_source_reconnects_and_reports_the_gap(stream_assets):
    """A live source that ends is reopened (here a file read through the FFmpeg URL path)."""
    spec, video = stream_assets["spec"], stream_assets["video"]
    info = SourceInfo("url", str(video), True)
    reader, ring, n = _read_all(info, spec.replace(frame_stride=1), reconnect=True, backoff=(0.01, 0.02),
                                max_frames=150)
    assert reader.ended == "max_frames" and n == 150  # read past the end of the 90-frame file
    gaps = list(reader.gaps)
    assert len(gaps) == 1 and gaps[0].recovered and gaps[0].after_source_frame == 90


def test_unopenable_source_is_a_clear_error(tmp_path, tiny_spec):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    ring = FrameRing(8, (*tiny_spec.size, 3), tiny_spec.num_frames)
    with pytest.raises(EdgevtError, match="cannot be opened"):
        FrameReader(parse_source(bad), ring, tiny_spec)


def test_realtime_replay_paces_a_file(stream_assets):
    spec, video = stream_assets["spec"], stream_assets["video"]
    t0 = time.perf_counter()
    reader, ring, n = _read_all(parse_source(video), spec.replace(frame_stride=1), realtime=True, max_frames=13)
    assert n == 13 and time.perf_counter() - t0 >= 12 / 25 * 0.9  # 25 fps file


def test_max_gap_caps_the_backoff_and_the_gap_counts_from_the_last_frame(stream_assets, tmp_path):
    """--max-gap 1 with a backoff of 0.5 s doubling to 8 s: the reader gives up about 1 s after the
    last frame (it used to wait out the whole backoff: 0.5 + 1 + 2 s and more)."""
    import shutil

    spec = stream_assets["spec"]
    video = tmp_path / "live.mp4"
    shutil.copy(stream_assets["video"], video)
    ring = FrameRing(400, (*spec.size, 3), spec.num_frames, block=True)
    reader = FrameReader(SourceInfo("url", str(video), True), ring, spec, reconnect=True, backoff=(0.5, 8.0),
                         max_gap=1.0)
    video.unlink()  # the open capture keeps reading; every reopen fails: the source is gone for good
    t0 = time.perf_counter()
    reader.start()
    reader.join(30)
    elapsed = time.perf_counter() - t0
    assert reader.ended == "gave up" and not reader.ok and "--max-gap" in reader.problem
    assert elapsed < 2.0, elapsed
    gaps = list(reader.gaps)
    assert len(gaps) == 1 and not gaps[0].recovered and gaps[0].attempts >= 1
    assert 0.9 <= gaps[0].duration_s < 1.6


def test_a_truncated_file_and_a_tiny_video_are_reported(tmp_path, tiny_spec):
    from edgevt.data.video import write_video

    frames = (np.random.default_rng(0).random((60, 32, 32, 3)) * 255).astype(np.uint8)
    write_video(tmp_path / "full.avi", frames)
    data = (tmp_path / "full.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[:len(data) // 2])
    reader, ring, n = _read_all(parse_source(tmp_path / "full.avi"), tiny_spec)
    assert reader.ended == "eof" and reader.ok and n == 30
    reader, ring, n = _read_all(parse_source(tmp_path / "cut.avi"), tiny_spec)
    assert reader.ended == "truncated" and not reader.ok and 0 < n < 30
    assert "of the 60 frames" in reader.problem
    write_video(tmp_path / "dot.avi", np.zeros((10, 1, 1, 3), np.uint8))
    reader, ring, n = _read_all(parse_source(tmp_path / "dot.avi"), tiny_spec)
    assert isinstance(reader.error, EdgevtError) and "1x1 pixels" in str(reader.error) and n == 0
