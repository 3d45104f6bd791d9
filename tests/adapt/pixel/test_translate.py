"""edgevt.adapt.pixel.translate end to end on the tiny MotionDigits-DA set (32x32, 12-frame videos)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgevt.adapt import adapt
from edgevt.adapt.auto import pixel_rung
from edgevt.adapt.pixel import TranslateConfig, Translator, translate
from edgevt.adapt.pixel.gan import GanConfig
from edgevt.data.datasets import load_dataset
from edgevt.data.video import read_frames, write_video
from edgevt.errors import EdgevtError
from edgevt.spec import ClipSpec

TINY_GAN = GanConfig(ngf=4, ndf=4, blocks=1)


@pytest.fixture(scope="module")
def fda_out(motiondigits, tmp_path_factory):
    out = tmp_path_factory.mktemp("tr") / "fda"
    r = translate(TranslateConfig(source=str(motiondigits / "source_train.txt"), target=str(motiondigits / "target" / "train"),
                                  out=str(out), method="fda", size=32, progress=False))
    return r


def gan_cfg(motiondigits, out, classifier, **kw):
    base = dict(source=str(motiondigits / "source_train.txt"), target=str(motiondigits / "target" / "train"),
                out=str(out), method="gan", size=32, num_frames=4, frame_stride=2, steps=2, batch_size=2,
                gan=TINY_GAN, classifier=str(classifier), grid_every=1, checkpoint_every=1, progress=False)
    base.update(kw)
    return TranslateConfig(**base)


def test_fda_writes_a_labeled_list_of_real_videos(fda_out, motiondigits):
    out = fda_out.out
    src = load_dataset(motiondigits / "source_train.txt", ClipSpec(size=(32, 32)))
    ds = load_dataset(fda_out.list, ClipSpec(size=(32, 32)))
    assert len(ds) == len(src) and sorted(ds.labels) == sorted(src.labels)
    assert ds.label_map.names == src.label_map.names
    v = read_frames(ds.records[0].path)
    assert v.shape[1:] == (32, 32, 3) and len(v) == len(read_frames(src.records[0].path))
    assert not np.array_equal(v, read_frames(src.records[0].path))  # restyled, not copied
    report = json.loads((Path(out) / "translate.json").read_text())
    assert report["method"] == "fda" and report["temporal_consistency"]["ratio"] > 0
    assert list((Path(out) / "grids").glob("*.png"))
    t = torch.load(f"{out}/translator.pt", weights_only=True)
    assert t["method"] == "fda" and t["spec"]["size"] == [32, 32] and t["target_bank"].dtype == torch.uint8
    assert Translator.load(f"{out}/translator.pt").bank.shape[1:] == (32, 32, 3)


def test_translated_list_trains_adapt(fda_out, tiny_cfg):
    r = adapt(tiny_cfg(source=fda_out.list, strategy="dann"))
    assert r.report["eval"]["target_test"]["clips"] > 0


def test_adapt_pixel_option_translates_first(tiny_cfg, tmp_path):
    r = adapt(tiny_cfg(pixel="hist", out=str(tmp_path / "run")))
    assert (tmp_path / "run" / "pixel_hist" / "source.txt").exists()
    assert r.report["provenance"]["paths"]["source"].endswith("pixel_hist/source.txt")


def test_gan_trains_saves_and_resumes_exactly(motiondigits, make_tiny_checkpoint, tmp_path):
    clf = make_tiny_checkpoint()
    straight = translate(gan_cfg(motiondigits, tmp_path / "a", clf, steps=3))
    translate(gan_cfg(motiondigits, tmp_path / "b", clf, steps=2))
    resumed = translate(gan_cfg(motiondigits, tmp_path / "b", clf, steps=3, resume=True))
    assert resumed.report["train"]["steps"] == 3 and len(list((tmp_path / "b" / "grids").glob("step_*.png"))) == 3
    a = torch.load(tmp_path / "a" / "translator.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "translator.pt", weights_only=True)
    assert a["format"] == "edgevt-translator" and a["domains"]["source_clips"]["clips"] == 18
    assert set(a["losses"]) >= {"g", "d", "cyc", "idt", "sem", "warp"}
    for k in a["state_dict"]:
        assert torch.allclose(a["state_dict"][k], b["state_dict"][k], atol=1e-6), k
    assert straight.report["temporal_consistency"]["ratio"] > 0 and "warp_error" in straight.report["train"]
    # the saved translator applies to new runs without training
    again = translate(gan_cfg(motiondigits, tmp_path / "c", clf, translator=str(tmp_path / "a" / "translator.pt")))
    assert "train" not in again.report and again.report["clips"] == 18


def test_other_sizes_and_frame_counts_are_resampled(motiondigits, tmp_path):
    tgt = tmp_path / "tgt"
    tgt.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):  # 48x40 videos of 5 frames against 32x32 / 12-frame sources
        write_video(tgt / f"v{i}.mp4", rng.integers(0, 255, (5, 48, 40, 3), dtype=np.uint8))
    r = translate(TranslateConfig(source=str(motiondigits / "source_train.txt"), target=str(tgt),
                                  out=str(tmp_path / "o"), method="fda", size=32, progress=False))
    assert read_frames(load_dataset(r.list, ClipSpec(size=(32, 32))).records[0].path).shape[1:3] == (32, 32)


def _one_line(excinfo):
    assert "\n" not in str(excinfo.value)
    return str(excinfo.value)


def test_bad_inputs_are_one_line_errors(motiondigits, make_tiny_checkpoint, fda_out, tmp_path):
    src, tgt = str(motiondigits / "source_train.txt"), str(motiondigits / "target" / "train")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EdgevtError) as e:
        translate(TranslateConfig(source=src, target=str(empty), out=str(tmp_path / "x"), method="fda", progress=False))
    assert "empty" in _one_line(e)
    few = tmp_path / "few.txt"
    lines = (motiondigits / "target_train.txt").read_text().splitlines()[:3]
    few.write_text("".join(f"{motiondigits / line.split()[0]} {line.split()[1]}\n" for line in lines))
    with pytest.raises(EdgevtError) as e:
        translate(gan_cfg(motiondigits, tmp_path / "x", make_tiny_checkpoint(), target=str(few)))
    assert "needs at least 4" in _one_line(e)
    with pytest.raises(EdgevtError) as e:  # a translator made at 32x32 applied with a 48x48 ClipSpec
        translate(TranslateConfig(source=src, target=tgt, out=str(tmp_path / "x"), size=48, progress=False,
                                  translator=f"{fda_out.out}/translator.pt"))
    assert "32x32" in _one_line(e) and "--size 32" in str(e.value)
    with pytest.raises(EdgevtError) as e:  # the semantic classifier samples another clip
        translate(gan_cfg(motiondigits, tmp_path / "x", make_tiny_checkpoint(), num_frames=6))
    assert "--classifier" in _one_line(e)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(EdgevtError) as e:  # never replaces a folder that is not an earlier translation
        translate(TranslateConfig(source=src, target=tgt, out=str(tmp_path / "mine"), method="fda", progress=False))
    assert "not an edgevt translation" in _one_line(e)
    with pytest.raises(EdgevtError):
        translate(TranslateConfig(source=src, target=tgt, method="cyclegan"))


def test_auto_ladder_has_a_pixel_candidate(tiny_cfg, motiondigits, tmp_path):
    """--strategy auto --pixel: the translated source is one candidate (plain recipe + BN
    re-estimation), not the input of every candidate."""
    r = adapt(tiny_cfg(strategy="auto", pixel="hist", augment="appearance", rungs="source_only_plain,pixel,selftrain",
                       target_val=str(motiondigits / "target_test.txt"), epochs=1, out=str(tmp_path / "auto")))
    cands = r.report["candidates"]
    assert set(cands) == {"source_only_plain", "pixel", "selftrain"}
    pixel = json.loads((Path(cands["pixel"]["out"]) / "report.json").read_text())
    plain = json.loads((Path(cands["source_only_plain"]["out"]) / "report.json").read_text())
    assert pixel["provenance"]["paths"]["source"].endswith("pixel_hist/source.txt")
    assert pixel["bn_layers_reestimated"] > 0
    rung = pixel_rung(tiny_cfg(strategy="auto", pixel="hist", augment="appearance"), "t.txt")
    assert (rung.source, rung.augment, rung.pixel, rung.bn_adapt) == ("t.txt", "none", "none", True)
    assert not plain["provenance"]["paths"]["source"].endswith("pixel_hist/source.txt")
    with pytest.raises(EdgevtError, match="--rungs pixel trains on source clips translated"):
        tiny_cfg(strategy="auto", rungs="source_only,pixel").validate()
