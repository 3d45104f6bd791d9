import shutil

import numpy as np
import pytest
import torch

from edgevt.data.datasets import LabelMap, load_dataset, resolve_source
from edgevt.data.transforms import ClipAugment
from edgevt.errors import EdgevtError


def test_folder_tree_and_list_agree(motiondigits, tiny_spec):
    labels = LabelMap.load(motiondigits / "labels.txt")
    tree = load_dataset(motiondigits / "source" / "train", tiny_spec, labels)
    lst = load_dataset(motiondigits / "source_train.txt", tiny_spec)
    assert len(tree) == len(lst) == 18
    assert sorted(zip(map(str, [r.path for r in tree.records]), tree.labels)) == \
        sorted(zip(map(str, [r.path for r in lst.records]), lst.labels))
    clip, label = tree[0]
    assert clip.dtype == torch.uint8 and tuple(clip.shape) == (4, 32, 32, 3)
    assert 0 <= label < 6


@pytest.mark.parametrize("sampling", ["dense", "segment", "uniform"])
def test_every_sampling_reads_back(motiondigits, tiny_spec, sampling):
    ds = load_dataset(motiondigits / "target_test.txt", tiny_spec.replace(sampling=sampling))
    clips = torch.stack([ds[i][0] for i in range(len(ds))])
    assert clips.shape == (12, 4, 32, 32, 3)


def test_csv_with_ranges_and_unlabeled(motiondigits, tiny_spec, tmp_path):
    rows = [line.split() for line in (motiondigits / "target_train.txt").read_text().splitlines()]
    csv = tmp_path / "list.csv"
    csv.write_text("path,label,start,end\n" + "\n".join(
        f"{motiondigits / p},{lab},2,10" for p, lab in rows))
    ds = load_dataset(csv, tiny_spec, LabelMap.load(motiondigits / "labels.txt"))
    assert len(ds) == 18 and ds.records[0].start == 2
    assert ds.video(0).shape[0] == 8
    unl = load_dataset(motiondigits / "target" / "train", tiny_spec, labeled=False)
    assert len(unl) == 18 and (unl.labels == -1).all()


def test_training_augmentation_is_deterministic_per_seed_and_epoch(motiondigits, tiny_spec):
    kw = dict(train=True, transform=ClipAugment(), seed=3)
    a = load_dataset(motiondigits / "source_train.txt", tiny_spec, **kw)
    b = load_dataset(motiondigits / "source_train.txt", tiny_spec, **kw)
    assert torch.equal(a[1][0], b[1][0])
    b.set_epoch(1)
    assert not torch.equal(a[1][0], b[1][0])


def test_label_errors(motiondigits, tiny_spec, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{motiondigits}/source/train/move_left/move_left_0000.mp4 jump\n")
    with pytest.raises(EdgevtError, match="unknown label 'jump'"):
        load_dataset(bad, tiny_spec, LabelMap.load(motiondigits / "labels.txt"))
    with pytest.raises(EdgevtError, match="no such file or folder"):
        load_dataset(tmp_path / "nope", tiny_spec)
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgevtError, match="no class subfolders"):
        load_dataset(tmp_path / "empty", tiny_spec)
    with pytest.raises(EdgevtError, match="contains no video"):
        load_dataset(tmp_path / "empty", tiny_spec, labeled=False)


def test_bad_videos_error_or_skip(motiondigits, tiny_spec, tmp_path):
    root = tmp_path / "tree"
    shutil.copytree(motiondigits / "source" / "test", root)
    broken = root / "move_up" / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    with pytest.raises(EdgevtError, match="broken.mp4.*--skip-bad"):
        load_dataset(root, tiny_spec)
    ds = load_dataset(root, tiny_spec, skip_bad=True)
    assert len(ds) == 12 and len(ds.skipped) == 1 and "broken.mp4" in ds.skipped[0][0]


def test_label_map_is_stable(tmp_path):
    lm = LabelMap(["b", "a", "c"])
    lm.save(tmp_path / "labels.txt")
    assert LabelMap.load(tmp_path / "labels.txt").names == ["b", "a", "c"]
    assert lm.index("1") == 1
    with pytest.raises(EdgevtError):
        LabelMap(["a", "a"])


def test_numeric_labels_need_a_label_file(tmp_path, motiondigits):
    lst = tmp_path / "sub" / "l.txt"
    lst.parent.mkdir()
    lst.write_text(f"{motiondigits}/source/test/move_up/move_up_0000.mp4 0\n")
    with pytest.raises(EdgevtError, match="labels.txt"):
        resolve_source(lst)


def test_hflip_off_by_default():
    clip = np.zeros((2, 8, 8, 3), np.uint8)
    clip[:, :, :2] = 255
    aug = ClipAugment(crop_scale=(1, 1), brightness=0, contrast=0, saturation=0)
    rng = np.random.default_rng(0)
    assert all((aug(clip, rng)[:, :, :2] == 255).all() for _ in range(10))
    flips = ClipAugment(crop_scale=(1, 1), brightness=0, contrast=0, saturation=0, hflip=True)
    assert any((flips(clip, rng)[:, :, -2:] == 255).all() for _ in range(20))


def test_load_clips_takes_several_windows_per_video(motiondigits, tiny_spec):
    from edgevt.data.datasets import load_clips
    from edgevt.data.sampling import window_indices
    from edgevt.data.video import read_frames

    one, labels1, paths1 = load_clips(motiondigits / "target_test.txt", tiny_spec, labeled=True)
    many, labels, paths = load_clips(motiondigits / "target_test.txt", tiny_spec, labeled=True, windows=3)
    assert len(set(paths)) == len(paths1) and len(many) > len(one)
    for p, lab in zip(paths1, labels1):  # each video's rows: consecutive, its label, its windows in order
        rows = [i for i, q in enumerate(paths) if q == p]
        assert rows == list(range(rows[0], rows[0] + len(rows))) and set(labels[rows]) == {lab}
        frames = read_frames(p, tiny_spec.size)
        want = [frames[w] for w in window_indices(len(frames), tiny_spec, 3)]
        assert len(rows) == len(want) and all((many[r] == w).all() for r, w in zip(rows, want))
