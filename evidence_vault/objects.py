"""Content-addressed object store: the one interface the log, verification and CLI use.

``ObjectStore`` is a protocol so that an encrypted store (age, objects named by a keyed hash) or a
replica on object storage can be added later without touching its users. ``FileObjectStore`` is the
plain-directory default: ``objects/sha256/ab/<hex>``, written once, read-only (0444).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from .atomic import fsync_dir
from .errors import IngestError
from .hashing import Digest, copy_and_hash, hash_file, hash_stream


class ObjectStore(Protocol):
    """Put, open, check and list content-addressed objects."""

    def put_file(
        self, src_fd: int, size: int, name: str, progress: Callable[[int], None] | None = None
    ) -> tuple[Digest, bool]:
        """Copy an open file in while hashing it. Returns the digest and whether it was new."""
        ...

    def put_bytes(self, data: bytes) -> tuple[Digest, bool]: ...

    def open(self, hex_digest: str) -> BinaryIO: ...

    def exists(self, hex_digest: str) -> bool: ...

    def path(self, hex_digest: str) -> Path: ...

    def list(self) -> Iterator[str]: ...

    def verify(self, hex_digest: str) -> Digest:
        """Re-hash the stored object (raises ``FileNotFoundError`` if it is gone)."""
        ...

    def discard(self, hex_digest: str) -> None:
        """Remove an object that this process just created and no event references."""
        ...


class FileObjectStore:
    """Objects as read-only files in a directory tree."""

    def __init__(self, root: Path, *, durable: bool = True) -> None:
        self.root = root
        self.base = root / "sha256"
        self.tmp = root / "tmp"
        self.durable = durable

    def path(self, hex_digest: str) -> Path:
        return self.base / hex_digest[:2] / hex_digest

    def exists(self, hex_digest: str) -> bool:
        return self.path(hex_digest).is_file()

    def open(self, hex_digest: str) -> BinaryIO:
        return open(self.path(hex_digest), "rb")

    def verify(self, hex_digest: str) -> Digest:
        return hash_file(self.path(hex_digest))

    def discard(self, hex_digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(hex_digest))

    def list(self) -> Iterator[str]:
        if not self.base.is_dir():
            return
        for sub in sorted(self.base.iterdir()):
            if sub.is_dir():
                for obj in sorted(sub.iterdir()):
                    yield obj.name

    def _tempfile(self) -> tuple[int, str]:
        self.tmp.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(prefix="put-", dir=self.tmp)

    def put_file(
        self, src_fd: int, size: int, name: str, progress: Callable[[int], None] | None = None
    ) -> tuple[Digest, bool]:
        fd, tmp = self._tempfile()
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    digest = copy_and_hash(src_fd, out, size, name, progress)  # type: ignore[arg-type]
                except OSError as exc:
                    raise IngestError(f"cannot copy into the vault: {exc.strerror or exc}", path=name) from None
                self._flush(out)
            return digest, self._publish(tmp, digest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def put_bytes(self, data: bytes) -> tuple[Digest, bool]:
        fd, tmp = self._tempfile()
        try:
            with os.fdopen(fd, "wb") as out:
                import io

                digest = hash_stream(io.BytesIO(data), out)  # type: ignore[arg-type]
                self._flush(out)
            return digest, self._publish(tmp, digest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _flush(self, out: BinaryIO) -> None:
        out.flush()
        if self.durable:
            os.fsync(out.fileno())

    def _publish(self, tmp: str, digest: Digest) -> bool:
        """Rename a complete, synced temp file to its final name (unless the content is there)."""
        final = self.path(digest.sha256)
        if final.exists():
            return False
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp, 0o444)
        os.replace(tmp, final)
        if self.durable:
            fsync_dir(final.parent)
        return True
