"""Content-addressed object store: the one interface the log, verification and CLI use.

``ObjectStore`` is a protocol so that an encrypted store (age, objects named by a keyed hash) or a
replica on object storage can be added later without touching its users. ``FileObjectStore`` is the
plain-directory default: ``objects/sha256/ab/<hex>``, written once, read-only (0444).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import hashlib
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from .atomic import fsync_dir, sync_files
from .errors import IngestError
from .hashing import Digest, copy_and_hash, hash_file, read_small

SMALL = 4 << 20  # objects up to this size are read whole and written with one call (no streaming)


class ObjectStore(Protocol):
    """Put, open, check and list content-addressed objects."""

    def put_file(
        self,
        src_fd: int,
        size: int,
        name: str,
        progress: Callable[[int], None] | None = None,
        *,
        sync: bool = True,
        on_replace: Callable[[], None] | None = None,
        replace: bool = False,
    ) -> tuple[Digest, bool]:
        """Copy an open file in while hashing it. Returns the digest and whether it was written.

        ``sync=False`` defers durability to the next :meth:`sync` (grouped fsyncs for a batch).
        ``on_replace`` is called when an object of the wrong size under that name was replaced.
        ``replace``: write it even over an object of the right size (one found damaged), atomically.
        """
        ...

    def put_bytes(self, data: bytes, *, sync: bool = True) -> tuple[Digest, bool]: ...

    def sync(self) -> None:
        """Make every object put with ``sync=False`` durable (before any event references it)."""
        ...

    def open(self, hex_digest: str) -> BinaryIO: ...

    def exists(self, hex_digest: str) -> bool: ...

    def path(self, hex_digest: str) -> Path: ...

    def fspath(self, hex_digest: str) -> str:
        """``path`` as a string (pathlib costs more than hashing a small object)."""
        ...

    def list(self) -> Iterator[str]: ...

    def verify(self, hex_digest: str) -> Digest:
        """Re-hash the stored object (raises ``FileNotFoundError`` if it is gone)."""
        ...

    def discard(self, hex_digest: str) -> None:
        """Remove an object that this process just created and no event references."""
        ...


_OBJECT_ID = re.compile(r"[0-9a-f]{64}")


def object_id(hex_digest: str) -> str:
    """``hex_digest`` if it is one (64 lowercase hex digits), else ``FileNotFoundError``: no object has
    that name. Ids come from the log, which anyone who can write to the vault can edit: an id such as
    ``/dev/zero`` or ``../../x`` must never become a path outside the store."""
    if type(hex_digest) is str and len(hex_digest) == 64 and _OBJECT_ID.fullmatch(hex_digest):
        return hex_digest
    raise FileNotFoundError(errno.ENOENT, "not an object id (64 hex digits)", ascii(hex_digest)[:80])


class FileObjectStore:
    """Objects as read-only files in a directory tree."""

    def __init__(self, root: Path, *, durable: bool = True) -> None:
        self.root = root
        self.base = root / "sha256"
        self.tmp = root / "tmp"
        self.durable = durable
        self._unsynced: list[Path] = []  # objects put with sync=False, made durable by sync()
        self._unsynced_lock = threading.Lock()
        self._tmp_ready = False

    def path(self, hex_digest: str) -> Path:
        return self.base / hex_digest[:2] / object_id(hex_digest)

    def exists(self, hex_digest: str) -> bool:
        try:
            return self.path(hex_digest).is_file()
        except FileNotFoundError:  # not an object id
            return False

    def open(self, hex_digest: str) -> BinaryIO:
        return open(self.path(hex_digest), "rb")

    def verify(self, hex_digest: str) -> Digest:
        return hash_file(self.path(hex_digest))

    def discard(self, hex_digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(hex_digest))

    def list(self) -> Iterator[str]:
        # Names sorted as strings: sorting Path objects costs 4x the directory reads (2,000 objects).
        try:
            subs = sorted(entry.name for entry in os.scandir(self.base) if entry.is_dir())
        except (FileNotFoundError, NotADirectoryError):
            return
        for sub in subs:
            yield from sorted(os.listdir(os.path.join(self.base, sub)))

    def fspath(self, hex_digest: str) -> str:
        return os.path.join(self.base, hex_digest[:2], object_id(hex_digest))

    def _tmp_dir(self) -> Path:
        if not self._tmp_ready:
            self.tmp.mkdir(parents=True, exist_ok=True)
            self._tmp_ready = True
        return self.tmp

    def _tempfile(self) -> tuple[int, str]:
        return tempfile.mkstemp(prefix="put-", dir=self._tmp_dir())

    def put_file(
        self,
        src_fd: int,
        size: int,
        name: str,
        progress: Callable[[int], None] | None = None,
        *,
        sync: bool = True,
        on_replace: Callable[[], None] | None = None,
        replace: bool = False,
    ) -> tuple[Digest, bool]:
        if size <= SMALL:
            try:
                data = read_small(src_fd, size, name)
            except OSError as exc:
                raise IngestError(f"cannot read: {exc.strerror or exc}", path=name) from None
            try:
                result = self.put_bytes(data, sync=sync, on_replace=on_replace, replace=replace)
            except OSError as exc:
                raise IngestError(f"cannot copy into the vault: {exc.strerror or exc}", path=name) from None
            if progress is not None:
                progress(len(data))
            return result
        fd, tmp = self._tempfile()
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    digest = copy_and_hash(src_fd, out, size, name, progress, durable=self.durable)
                except OSError as exc:
                    message = f"cannot copy into the vault: {exc.strerror or exc}"
                    raise IngestError(message, path=name) from None
                self._flush(out, sync)
            return digest, self._publish(tmp, digest, sync, on_replace, replace)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def put_bytes(
        self,
        data: bytes,
        *,
        sync: bool = True,
        on_replace: Callable[[], None] | None = None,
        replace: bool = False,
    ) -> tuple[Digest, bool]:
        digest = Digest(hashlib.sha256(data).hexdigest(), len(data))
        final = self.fspath(digest.sha256)
        new = replace or not self._present(final, digest.size, on_replace)
        if new:
            tmp = os.path.join(self._tmp_dir(), f"put-{os.getpid()}-{secrets.token_hex(8)}")
            # Created read-only (0444) at once: the mode binds later opens, not this descriptor.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
            try:
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    if self.durable and sync:
                        os.fsync(fd)
                finally:
                    os.close(fd)
                self._install(tmp, final, sync)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
        self._note_unsynced(Path(final), sync)
        return digest, new

    def _flush(self, out: BinaryIO, sync: bool) -> None:
        out.flush()
        if self.durable and sync:
            os.fsync(out.fileno())

    def _publish(
        self,
        tmp: str,
        digest: Digest,
        sync: bool,
        on_replace: Callable[[], None] | None = None,
        replace: bool = False,
    ) -> bool:
        """Rename a complete temp file to its final name (unless the content is there).

        With ``sync`` the file was fsynced and its directory is fsynced here; without, the final name is
        remembered for :meth:`sync`.
        """
        final = self.fspath(digest.sha256)
        new = replace or not self._present(final, digest.size, on_replace)
        if new:
            os.chmod(tmp, 0o444)
            self._install(tmp, final, sync)
        self._note_unsynced(Path(final), sync)
        return new

    @staticmethod
    def _present(final: str, size: int, on_replace: Callable[[], None] | None = None) -> bool:
        """Is the object already stored? One under its final name with another size is damaged: the torn
        leftover of a crash before its batch was synced, or a stored copy cut or changed since. It is
        replaced by the complete copy (whose hash is its name); ``on_replace`` is told."""
        try:
            present = os.stat(final).st_size == size
        except FileNotFoundError:
            return False
        if not present and on_replace is not None:
            on_replace()
        return present

    def _install(self, tmp: str, final: str, sync: bool) -> None:
        """Rename a complete read-only temp file to its final name (making its directory if needed);
        with ``sync``, fsync that directory."""
        try:
            os.replace(tmp, final)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.replace(tmp, final)
        if self.durable and sync:
            fsync_dir(Path(final).parent)

    def _note_unsynced(self, final: Path, sync: bool) -> None:
        """Remember an object for :meth:`sync` (also an existing one: its writer may not have synced it)."""
        if self.durable and not sync:
            with self._unsynced_lock:
                self._unsynced.append(final)

    def take_unsynced(self) -> builtins.list[Path]:
        """Hand over the objects put with ``sync=False`` and not yet synced (from a worker process)."""
        with self._unsynced_lock:
            pending, self._unsynced = self._unsynced, []
        return pending

    def adopt_unsynced(self, paths: builtins.list[Path]) -> None:
        """Objects another process put with ``sync=False``: made durable by this store's next :meth:`sync`."""
        with self._unsynced_lock:
            self._unsynced.extend(paths)

    def sync(self) -> None:
        """Make the objects put with ``sync=False`` durable: one ``syncfs`` of the vault's file system, or,
        where that is unavailable or fails, an fsync of each object and of each directory holding one."""
        with self._unsynced_lock:
            pending, self._unsynced = self._unsynced, []
        if pending and self.durable:
            sync_files(self.root, dict.fromkeys(pending))
