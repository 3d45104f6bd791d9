import json

import cv2
import numpy as np

from edgevt.data.datasets import LabelMap
from edgevt.data.synth import (MOTIONS, PARTNER, SCENE_SHIFTS, SHIFTS, SOURCE_BACKGROUNDS, TARGET_CAMERAS,
                               TEST_BACKGROUNDS, TRAIN_BACKGROUNDS, Camera, SynthConfig, generate, glyph_masks,
                               load_background, load_glyphs, make_stream_video, parse_shifts)
from edgevt.data.video import read_frames


def test_layout_and_class_balance(motiondigits):
    labels = LabelMap.load(motiondigits / "labels.txt").names
    assert labels == MOTIONS
    for split, per_class in [("source_train", 3), ("source_test", 2), ("target_train", 3), ("target_test", 2)]:
        lines = (motiondigits / f"{split}.txt").read_text().split("\n")
        counts = {c: sum(line.endswith(" " + c) for line in lines) for c in labels}
        assert set(counts.values()) == {per_class}, (split, counts)
        domain, part = split.split("_")
        for c in labels:
            assert len(list((motiondigits / domain / part / c).glob("*.mp4"))) == per_class


def test_deterministic_per_seed(tmp_path):
    cfg = SynthConfig(size=32, frames=6, per_class={"source_train": 1, "source_test": 1,
                                                    "target_train": 1, "target_test": 1})
    generate(tmp_path / "a", cfg)
    generate(tmp_path / "b", cfg)
    cfg.seed = 1
    generate(tmp_path / "c", cfg)
    rel = "target/test/rotate_cw/rotate_cw_0000.mp4"
    a, b, c = (read_frames(tmp_path / d / rel) for d in "abc")
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]  # no staging folder left


def test_a_longer_target_test_split_starts_with_the_shorter_ones_clips(tmp_path):
    # benchmarks/int8_cpu.py --test-per-class relies on it: more test clips from the same target cameras,
    # the set's own clips first, and no other split needed
    small = SynthConfig(size=32, frames=6, per_class={"source_train": 1, "source_test": 1,
                                                      "target_train": 1, "target_test": 1})
    big = SynthConfig(size=32, frames=6, per_class={"source_train": 0, "source_test": 0,
                                                    "target_train": 0, "target_test": 3})
    generate(tmp_path / "small", small)
    generate(tmp_path / "big", big)
    for motion in MOTIONS[:2]:
        rel = f"target/test/{motion}/{motion}_0000.mp4"
        assert np.array_equal(read_frames(tmp_path / "small" / rel), read_frames(tmp_path / "big" / rel))
        more = read_frames(tmp_path / "big" / f"target/test/{motion}/{motion}_0001.mp4")
        assert not np.array_equal(read_frames(tmp_path / "small" / rel), more)
    assert len((tmp_path / "big" / "target_test.txt").read_text().split()) == 2 * 3 * len(MOTIONS)
    assert (tmp_path / "big" / "source_train.txt").read_text().strip() == ""


def test_target_backgrounds_disjoint_in_the_unseen_split_shared_in_the_cameras_split(motiondigits, tmp_path):
    meta = json.loads((motiondigits / "meta.json").read_text())
    assert meta["config"]["split"] == "cameras"  # the deployment case: the same cameras, other moments
    assert meta["backgrounds"]["target_train"] == meta["backgrounds"]["target_test"]
    cfg = SynthConfig(size=32, frames=4, split="unseen", per_class={"source_train": 1, "source_test": 1,
                                                                    "target_train": 1, "target_test": 1})
    meta = generate(tmp_path / "u", cfg)
    assert set(meta["backgrounds"]["target_train"]).isdisjoint(meta["backgrounds"]["target_test"])
    assert set(TRAIN_BACKGROUNDS).isdisjoint(TEST_BACKGROUNDS)
    assert set(SOURCE_BACKGROUNDS).isdisjoint(TRAIN_BACKGROUNDS + TEST_BACKGROUNDS)


def test_cameras_split_films_target_train_and_test_with_the_same_few_cameras():
    from edgevt.data.synth import domain_cameras, load_photo_pools

    photos = load_photo_pools()
    for shifts in [("photo",), ("clutter",), ("night",)]:
        cfg = SynthConfig(size=32, shifts=shifts)
        train, test = (domain_cameras(cfg, "target", part, photos) for part in ("train", "test"))
        assert len(train) == TARGET_CAMERAS
        for a, b in zip(train, test):
            assert (a.scene is None and b.scene is None) or np.array_equal(a.scene, b.scene)
    cfg = SynthConfig(size=32, shifts=("clutter",), split="unseen")
    train, test = (domain_cameras(cfg, "target", part, photos) for part in ("train", "test"))
    assert not any(np.array_equal(a.scene, b.scene) for a in train for b in test)


def test_every_shift_renders_and_bad_shift_names_are_refused(tmp_path):
    import pytest

    from edgevt.errors import EdgevtError

    glyph = load_glyphs()[3]
    rng = np.random.default_rng(0)
    masks = glyph_masks(glyph, "move_right", 32, 4, rng)
    clean = Camera.draw(None, 32, (), rng).render(masks, rng)
    for name in SHIFTS:
        photo = load_background("brick") if name in SCENE_SHIFTS else None
        frames = Camera.draw(photo, 32, (name,), rng).render(masks, rng)
        assert frames.shape == (4, 32, 32, 3) and frames.dtype == np.uint8
        assert not np.array_equal(frames, clean), name
    with pytest.raises(EdgevtError, match="unknown --shift fog; known: photo, clutter"):
        parse_shifts("night,fog")
    with pytest.raises(EdgevtError, match="photo and clutter both choose the scene"):
        SynthConfig(shifts=("photo", "clutter"))
    assert parse_shifts("night, rain") == ("night", "rain")


def _mean_shift(masks):
    """Average frame-to-frame displacement (dx, dy) by phase correlation (wraps on the torus)."""
    shifts = [cv2.phaseCorrelate(masks[i].astype(np.float64), masks[i + 1].astype(np.float64))[0]
              for i in range(len(masks) - 1)]
    return np.mean(shifts, axis=0)


def test_motion_direction_and_time_reversal_partner():
    glyph = load_glyphs()[7]
    rng = np.random.default_rng(0)
    right = glyph_masks(glyph, "move_right", 64, 8, rng)
    down = glyph_masks(glyph, "move_down", 64, 8, rng)
    dx, dy = _mean_shift(right)
    assert dx > 1 and abs(dy) < 0.5
    assert _mean_shift(down)[1] > 1
    rdx, _ = _mean_shift(right[::-1])  # the reversed clip moves like its partner class
    assert rdx < -1 and PARTNER["move_right"] == "move_left"


def test_single_frames_carry_no_position_or_angle_bias():
    # Glyph centroids over many clips of one class cover the frame evenly: no class-specific pose.
    glyphs = load_glyphs()
    rng = np.random.default_rng(0)
    xs = {m: [] for m in ("move_right", "rotate_cw")}
    for m in xs:
        for i in range(60):
            f = glyph_masks(glyphs[i], m, 32, 2, rng)[0]
            ys, x = np.nonzero(f > 0.5)
            xs[m].append(np.angle(np.exp(2j * np.pi * x / 32).mean()))  # circular mean on the torus
    for values in xs.values():
        hist = np.histogram(values, bins=4, range=(-np.pi, np.pi))[0]
        assert hist.min() >= 6  # roughly uniform over 60 clips


def test_stream_video_with_ground_truth(tmp_path):
    segments = make_stream_video(tmp_path / "s.mp4", num_frames=120, size=32, seed=2)
    assert segments[0]["start"] == 0 and segments[-1]["end"] == 120
    assert all(s["label"] in MOTIONS for s in segments)
    assert read_frames(tmp_path / "s.mp4").shape[0] == 120
    assert json.loads((tmp_path / "s.segments.json").read_text()) == segments


def test_target_glyphs_stand_out_on_every_background():
    """Regression: an |background - glyph| blend made glyphs vanish on mid-grey photos."""
    from edgevt.data.synth import compose_target

    glyph = load_glyphs()[3]
    for name in TRAIN_BACKGROUNDS + TEST_BACKGROUNDS:
        photo = load_background(name)
        for seed in range(5):
            rng = np.random.default_rng(seed)
            masks = glyph_masks(glyph, "move_right", 64, 2, rng)
            frame = compose_target(masks, photo, rng)[0].astype(np.float32)
            ink, bg = frame[masks[0] > 0.8].mean(0), frame[masks[0] < 0.05].mean(0)
            assert np.abs(ink - bg).max() > 60, (name, seed, ink, bg)


def test_generate_refuses_to_replace_a_folder_that_is_not_a_data_set(tmp_path):
    """Bug: synth -o DIR removed DIR whatever it held."""
    import pytest

    from edgevt.errors import EdgevtError

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("x")
    cfg = SynthConfig(size=32, frames=4, per_class={"source_train": 1, "source_test": 1,
                                                    "target_train": 1, "target_test": 1})
    with pytest.raises(EdgevtError, match="mine: exists and is not a MotionDigits-DA data set"):
        generate(mine, cfg)
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]
    generate(tmp_path / "md", cfg)
    generate(tmp_path / "md", cfg)  # its own output is replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["md", "mine"]


def test_cli_synth_shift_and_split_errors_are_one_line(tmp_path, capsys):
    import pytest

    from edgevt.cli import main

    for args, msg in [(["--shift", "fog"], "unknown --shift fog; known: photo"),
                      (["--shift", "photo,clutter"], "both choose the scene"),
                      (["--split", "random"], "unknown --split 'random'")]:
        with pytest.raises(SystemExit) as e:
            main(["synth", "-o", str(tmp_path / "x"), "--train-per-class", "1", "--test-per-class", "1", *args])
        err = capsys.readouterr().err
        assert e.value.code == 2 and msg in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_cli_synth_writes_a_shifted_data_set_with_its_target_split(tmp_path, capsys):
    from edgevt.cli import main

    try:
        main(["synth", "-o", str(tmp_path / "n"), "--train-per-class", "4", "--test-per-class", "1", "--size", "32",
              "--frames", "4", "--shift", "night,rain", "--source-style", "photo"])
    except SystemExit as e:
        assert e.code in (0, None)
    meta = json.loads((tmp_path / "n" / "meta.json").read_text())
    assert list(meta["shifts"]) == ["night", "rain"] and meta["config"]["source_style"] == "photo"
    adapt = (tmp_path / "n" / "target_adapt.txt").read_text().split()
    val = (tmp_path / "n" / "target_val.txt").read_text().split()
    assert len(adapt) // 2 == 18 and len(val) // 2 == 6  # 4 per class: 3 adapt + 1 val
