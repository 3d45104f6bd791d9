from edgevt.data.splits import few_labeled, read_list


def test_few_labeled_takes_k_per_class_deterministically(motiondigits, tmp_path):
    a = few_labeled(motiondigits / "target_train.txt", 2, tmp_path / "a.txt", seed=0)
    b = few_labeled(motiondigits / "target_train.txt", 2, tmp_path / "b.txt", seed=0)
    lines = read_list(a)
    assert lines == read_list(b) and len(lines) == 12
    labels = [ln.rsplit(maxsplit=1)[1] for ln in lines]
    assert all(labels.count(c) == 2 for c in set(labels))
