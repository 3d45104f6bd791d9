"""Atomic file writes: every artifact edgevt writes appears whole or not at all.

A temporary file in the destination folder is written, given the permissions a plain ``open``
would give (mkstemp creates 0600, which would make bundles unreadable to the service or user that
deploys them), and renamed over the destination. On any failure it is removed.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes | str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text)


def staging_dir(final: str | Path) -> Path:
    """A new, uniquely named folder beside ``final`` to assemble a folder artifact in.

    Unique so that two writers never share (or delete) each other's staging folder.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))


def check_replaceable(final: str | Path, is_ours, what: str) -> None:
    """Refuse to replace ``final`` unless it is absent, an empty folder, or ``is_ours(final)``.

    ``what`` names the artifact (``"an edgevt bundle"``) for the one-line error. Called before any
    work is done, and again just before the swap.
    """
    from edgevt.errors import EdgevtError

    final = Path(final)
    if not final.exists() and not final.is_symlink():
        return
    if final.is_symlink() or not final.is_dir():
        raise EdgevtError(f"{final}: exists and is not a folder; it would be replaced by {what} -- "
                          "choose another output path or remove it yourself")
    if any(final.iterdir()) and not is_ours(final):
        raise EdgevtError(f"{final}: exists and is not {what}; edgevt replaces only its own output -- "
                          "choose another output path (or an empty or new folder)")


def replace_dir(stage: str | Path, final: str | Path, is_ours, what: str) -> None:
    """Move the finished folder ``stage`` to ``final``, replacing ``final`` only if it is ours.

    The previous folder is moved aside under a unique name and removed after the swap, so a crash
    leaves either the old or the new one in place, never a mix.
    """
    import shutil

    stage, final = Path(stage), Path(final)
    check_replaceable(final, is_ours, what)
    if final.exists():
        aside = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
        aside.rmdir()
        final.rename(aside)
        try:
            stage.rename(final)
        except BaseException:
            aside.rename(final)
            raise
        shutil.rmtree(aside, ignore_errors=True)
    else:
        stage.rename(final)


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
