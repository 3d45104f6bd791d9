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
