"""Files only this user may read (signing keys, bootstrap credentials), written so no one sees half of one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_private(path: Path, content: bytes) -> None:
    """Replace ``path`` atomically with ``content``, mode 0600 from the first byte.

    The temporary file is created exclusively under a random name in the same
    directory (``mkstemp``: ``O_EXCL``, mode 0600, never an existing file nor a planted
    symlink, and a leftover of a crashed run cannot collide), written and fsynced, then
    renamed over ``path``; the directory is fsynced so the rename survives a crash.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable (the entry is on disk only after this)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
