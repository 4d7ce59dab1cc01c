"""Model artifact files under ``<HATS_VAR_DIR>/models/``: written atomically, sha256-checked on every read."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


class ArtifactIntegrityError(RuntimeError):
    """An artifact is missing or its bytes are not the ones registered: it is never loaded."""


class ArtifactStore:
    """Files of the models, at paths relative to ``root`` (so a moved var directory still works)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, relative: str, data: bytes) -> str:
        """Write ``data`` at ``relative`` atomically (temp file, fsync, rename); returns its sha256."""
        target = self._resolve(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return hashlib.sha256(data).hexdigest()

    def read(self, relative: str, sha256: str) -> bytes:
        """The artifact's bytes, if their sha256 is ``sha256``; ``ArtifactIntegrityError`` otherwise."""
        path = self._resolve(relative)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ArtifactIntegrityError(f"artifact {relative} is missing") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise ArtifactIntegrityError(
                f"artifact {relative} has sha256 {actual}, not the registered {sha256}: refusing to load it"
            )
        return data

    def _resolve(self, relative: str) -> Path:
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"artifact path {relative!r} leaves the models directory")
        return path


__all__ = ["ArtifactIntegrityError", "ArtifactStore"]
