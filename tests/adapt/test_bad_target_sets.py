"""Bad target sets for the adaptation strategies: one-line errors that name the file and what to do."""
import pytest

from edgevt.adapt import adapt
from edgevt.errors import EdgevtError


@pytest.mark.parametrize("option", ["target_val", "target_labeled"])
def test_a_label_the_source_lacks_is_refused_naming_the_file(tiny_cfg, tmp_path, motiondigits, option):
    lst = tmp_path / f"{option}.txt"
    first = (motiondigits / "target_train.txt").read_text().splitlines()[0].rsplit(maxsplit=1)[0]
    lst.write_text(f"{motiondigits / first} jumping\n")
    with pytest.raises(EdgevtError, match=f"{lst}.*does not: \\['jumping'\\].*source's class names"):
        adapt(tiny_cfg(strategy="selftrain", **{option: str(lst)}))


def test_labeled_target_sets_may_hold_only_some_classes(tiny_cfg, tmp_path, motiondigits):
    lines = (motiondigits / "target_train.txt").read_text().splitlines()
    two = [ln for ln in lines if ln.endswith((" move_left", " move_right"))]
    assert two and len(two) < len(lines)
    lst = tmp_path / "two_classes.txt"
    lst.write_text("\n".join(f"{motiondigits / ln.rsplit(maxsplit=1)[0]} {ln.rsplit(maxsplit=1)[1]}" for ln in two) + "\n")
    res = adapt(tiny_cfg(strategy="selftrain", target_val=str(lst), target_labeled=str(lst)))
    assert res.report["eval"]["target_val"]["clips"] == len(two)


def test_unreadable_target_set(tiny_cfg, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (bad / name).write_bytes(b"not a video")
    with pytest.raises(EdgevtError, match="a.mp4: cannot be opened.*--skip-bad"):
        adapt(tiny_cfg(strategy="selftrain", target=str(bad)))
    with pytest.raises(EdgevtError, match=f"--target {bad} has no videos"):
        adapt(tiny_cfg(strategy="selftrain", target=str(bad), skip_bad=True))
