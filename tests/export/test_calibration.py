"""Calibration sets (the top-level calibration/ folder), the calibration reader and the cache key."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgevt.errors import EdgevtError
from edgevt.export.calibration import (SET_MANIFEST, CalibrationSet, ClipCalibrationReader, cache_key, data_hash,
                                       make_calibration_set)

SAMPLE = Path(__file__).resolve().parents[2] / "calibration" / "sample"


def test_sample_set_is_valid_and_its_clips_are_hashed():
    s = CalibrationSet.open(SAMPLE)  # verifies every clip's hash
    assert s.domain and len(s.clip_paths()) == 8 and all(Path(p).is_file() for p in s.clip_paths())
    assert s.record() == {"manifest_sha256": s.manifest_sha256, "domain": s.domain, "clips": 8,
                          "seed": s.manifest["seed"]}
    assert str(SAMPLE) not in json.dumps(s.record())  # identity, not location


def test_tampered_or_foreign_sets_are_refused(tmp_path, tiny_spec):
    bad = tmp_path / "set"
    shutil.copytree(SAMPLE, bad)
    first = bad / json.loads((bad / SET_MANIFEST).read_text())["clips"][0]["file"]
    first.write_bytes(first.read_bytes()[:-10])
    with pytest.raises(EdgevtError, match="hash does not match"):
        CalibrationSet.open(bad)
    first.unlink()
    with pytest.raises(EdgevtError, match="is missing"):
        CalibrationSet.open(bad)
    (bad / SET_MANIFEST).write_text(json.dumps({"format": "other"}))
    with pytest.raises(EdgevtError, match="not an edgevt calibration set"):
        CalibrationSet.open(bad)
    s = CalibrationSet.open(SAMPLE)
    s.check_spec(tiny_spec)  # the tests' spec: the set was made for it
    with pytest.raises(EdgevtError, match="num_frames 8 vs 4"):
        s.check_spec(tiny_spec.replace(num_frames=8))


def test_make_calibration_set_is_deterministic(tmp_path, motiondigits, tiny_spec):
    a = make_calibration_set(motiondigits / "target" / "train", tmp_path / "a", tiny_spec, domain="t", clips=5, seed=3)
    b = make_calibration_set(motiondigits / "target" / "train", tmp_path / "b", tiny_spec, domain="t", clips=5, seed=3)
    c = make_calibration_set(motiondigits / "target" / "train", tmp_path / "c", tiny_spec, domain="t", clips=5, seed=4)
    assert a.manifest_sha256 == b.manifest_sha256 != c.manifest_sha256
    assert len(a.clip_paths()) == 5 and a.spec.labels == []


def test_export_records_the_set_by_its_hash(tmp_path, ex_ckpt):
    from edgevt.export.exporter import ExportConfig, export_bundle

    b = export_bundle(ex_ckpt, tmp_path / "b", ExportConfig(precisions=("fp32", "int8"), calib=SAMPLE,
                                                            calib_cache=tmp_path / "cache", threads=1,
                                                            adaround_steps=0))
    s = CalibrationSet.open(SAMPLE)
    assert b.manifest["calibration"]["manifest_sha256"] == s.manifest_sha256
    assert b.manifest["checks"]["int8"]["calibration"]["set_manifest_sha256"] == s.manifest_sha256
    text = (b.path / "edgevt.json").read_text()
    assert str(SAMPLE) not in text and str(SAMPLE.resolve()) not in text  # no absolute path of the set


def test_reader_feeds_every_input_of_a_row():
    feeds = {"frames": np.arange(6 * 2).reshape(6, 2), "shift_in_0": np.arange(6 * 3).reshape(6, 3) * 1.0}
    r = ClipCalibrationReader(feeds)
    rows = list(r)
    assert len(r) == 6 and len(rows) == 6
    assert all(set(x) == set(feeds) and x["frames"].shape == (1, 2) for x in rows)
    np.testing.assert_array_equal(rows[4]["shift_in_0"], feeds["shift_in_0"][4:5])


def test_data_hash_and_cache_key_change_with_the_data():
    x = np.zeros((2, 3), np.uint8)
    assert data_hash(["a.mp4"], x) == data_hash(["a.mp4"], {"": x})  # one clip array == its feed form
    assert data_hash(["a.mp4"], x) != data_hash(["a.mp4"], x + 1) != data_hash(["b.mp4"], x)
    assert data_hash([], {"frames": x}) != data_hash([], {"embeddings": x})
    assert cache_key("m", "d", "entropy", 8) != cache_key("m", "d", "minmax", 8)
