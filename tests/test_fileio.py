import os
import stat

import pytest

from edgevt.fileio import atomic_path, atomic_write_text
from edgevt.models.checkpoint import save_checkpoint
from edgevt.models.zoo import create_model
from edgevt.spec import ClipSpec


def _mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


def test_written_files_get_the_umask_default_not_0600(tmp_path):
    """Regression: mkstemp's 0600 made bundles and checkpoints unreadable to other users/services."""
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        save_checkpoint(tmp_path / "m.pt", create_model("tsn_tinycnn", 2, num_frames=2),
                        ClipSpec(num_frames=2, size=(16, 16), labels=["a", "b"]))
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.json") == 0o644
    assert _mode(tmp_path / "m.pt") == 0o644


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "x.bin"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]
