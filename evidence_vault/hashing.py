"""Streaming SHA-256: hash while copying (one read pass), with a size-change check.

Files larger than one chunk are also hashed in fixed 1 MiB chunks while they stream: the RFC 9162 leaf hash
of each chunk (``merkle.leaf_hash``) is computed on a second core (hashlib releases the GIL on big buffers),
so a later mismatch can name the damaged byte ranges (:func:`damaged_ranges`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from .errors import IngestError
from .regular_files import open_regular

CHUNK = 1 << 20  # 1 MiB reads: the sweet spot for hashlib throughput
LEAF_CHUNK = 1 << 20  # chunk size of the per-chunk Merkle leaves (fixed: part of the metadata format)
_BUFFERS = 8  # buffers in flight between the reading/hashing, leaf and writing threads
FLUSH_EVERY = 32 << 20  # a durable copy is fdatasync'ed every 32 MiB as it streams (see _Flusher)


@dataclass(frozen=True)
class Digest:
    sha256: str
    size: int
    #: RFC 9162 leaf hashes of each ``LEAF_CHUNK`` of the content (only when asked for and size > one chunk).
    leaves: tuple[bytes, ...] | None = field(default=None, compare=False, repr=False)

    @property
    def id(self) -> str:
        return "sha256:" + self.sha256


def _leaf(data: memoryview) -> bytes:
    """``merkle.leaf_hash(bytes(data))`` without copying the chunk."""
    h = hashlib.sha256(b"\x00")
    h.update(data)
    return h.digest()


def _fill(src: BinaryIO, view: memoryview) -> int:
    """Read until ``view`` is full or the stream ends (chunk boundaries must fall on exact multiples)."""
    got = 0
    while got < len(view):
        n = src.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            break
        got += n
    return got


def hash_stream(
    src: BinaryIO,
    dst: BinaryIO | None = None,
    progress: Callable[[int], None] | None = None,
    *,
    leaves: bool = False,
    flush_every: int = 0,
) -> Digest:
    """Hash ``src`` to its end, copying every byte to ``dst`` when given.

    With ``leaves``, also compute the Merkle leaf hash of every ``LEAF_CHUNK`` (returned only when there is
    more than one chunk); the leaf hashing and the writes to ``dst`` run in threads of their own while this
    one reads and computes the whole-file hash, and with ``flush_every`` the copy is made durable every
    that many bytes as it streams.
    """
    if leaves:
        return _hash_stream_pipelined(src, dst, progress, flush_every)
    h = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    size = 0
    while True:
        n = src.readinto(buf)  # type: ignore[attr-defined]
        if not n:
            break
        chunk = view[:n]
        h.update(chunk)
        if dst is not None:
            dst.write(chunk)
        size += n
        if progress is not None:
            progress(n)
    return Digest(h.hexdigest(), size)


def _hash_stream_pipelined(
    src: BinaryIO, dst: BinaryIO | None, progress: Callable[[int], None] | None, flush_every: int = 0
) -> Digest:
    """Three stages on their own threads, each buffer passing through them in turn: this thread reads and
    computes the whole-file hash, the next the chunk leaves, the last writes to ``dst`` (the page cache
    copy costs as much CPU as a hash), so the copy runs at the speed of its slowest stage, not their sum."""
    free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
    for _ in range(_BUFFERS):
        free.put(bytearray(LEAF_CHUNK))
    to_leaves: queue.SimpleQueue[tuple[bytearray, int] | None] = queue.SimpleQueue()
    to_writer: queue.SimpleQueue[tuple[bytearray, int] | None] = queue.SimpleQueue()
    leaf_list: list[bytes] = []
    failure: list[BaseException] = []
    out_fd = _fileno(dst) if flush_every > 0 else None
    flusher = _Flusher(out_fd, failure) if out_fd is not None else None

    def leaves() -> None:
        while (job := to_leaves.get()) is not None:
            try:
                if not failure:
                    leaf_list.append(_leaf(memoryview(job[0])[: job[1]]))
            except BaseException as exc:  # reported by the reading thread; keep passing buffers on
                failure.append(exc)
            if dst is not None:
                to_writer.put(job)
            else:
                free.put(job[0])
        to_writer.put(None)

    def writer() -> None:
        assert dst is not None
        written = flushed = 0
        while (job := to_writer.get()) is not None:
            buf, n = job
            try:
                if not failure:
                    dst.write(memoryview(buf)[:n])
                    written += n
                    if flusher is not None and written - flushed >= flush_every:
                        dst.flush()
                        flusher.kick()
                        flushed = written
            except BaseException as exc:
                failure.append(exc)
            finally:
                free.put(buf)

    threads = [threading.Thread(target=leaves, name="evidence-vault-leaves", daemon=True)]
    if dst is not None:
        threads.append(threading.Thread(target=writer, name="evidence-vault-copy", daemon=True))
    for thread in threads:
        thread.start()
    h = hashlib.sha256()
    size = 0
    try:
        while not failure:
            buf = free.get()
            n = _fill(src, memoryview(buf))
            if not n:
                free.put(buf)
                break
            h.update(memoryview(buf)[:n])
            to_leaves.put((buf, n))
            size += n
            if progress is not None:
                progress(n)
            if n < LEAF_CHUNK:
                break
    finally:
        to_leaves.put(None)
        for thread in threads:
            thread.join()
        if flusher is not None:
            flusher.stop()
    if failure:
        raise failure[0]
    return Digest(h.hexdigest(), size, tuple(leaf_list) if len(leaf_list) > 1 else None)


class _Flusher:
    """Makes a file being written durable as it grows: ``fdatasync`` in a thread of its own each time it
    is kicked (at most one waiting), so the disk's cache is flushed while the copy goes on and the sync
    that makes the object durable before its event is signed finds little left to do. A failure is
    added to ``failure``: a write error is reported once per descriptor, and a later fsync of the same
    file may no longer see it."""

    def __init__(self, fd: int, failure: list[BaseException]) -> None:
        self.fd, self.failure = fd, failure
        self.wanted = threading.Event()
        self.done = False
        self.thread = threading.Thread(target=self._run, name="evidence-vault-flush", daemon=True)
        self.thread.start()

    def kick(self) -> None:
        self.wanted.set()

    def stop(self) -> None:
        self.done = True
        self.wanted.set()
        self.thread.join()

    def _run(self) -> None:
        sync = getattr(os, "fdatasync", os.fsync)
        while True:
            self.wanted.wait()
            self.wanted.clear()
            if self.done:
                return
            try:
                sync(self.fd)
            except OSError as exc:
                self.failure.append(exc)
                return


def _fileno(dst: BinaryIO | None) -> int | None:
    if dst is None:
        return None
    try:
        return dst.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def hash_file(path: str | os.PathLike[str]) -> Digest:
    """The digest of the regular file ``path``; ``OSError`` if it is missing, unreadable or not a regular
    file (opened without blocking: a FIFO given by mistake would otherwise wait for a writer for ever)."""
    fd, _ = open_regular(path)
    with open(fd, "rb", buffering=0) as fh:
        _advise_sequential(fd)
        return hash_stream(fh)


def copy_and_hash(
    src_fd: int,
    dst: BinaryIO,
    expected_size: int,
    name: str,
    progress: Callable[[int], None] | None = None,
    *,
    durable: bool = False,
) -> Digest:
    """Copy an open file to ``dst`` while hashing it; reject it if it changed size while read.

    Files larger than one chunk also get their per-chunk Merkle leaves (``Digest.leaves``); with
    ``durable``, their copy is flushed to disk every ``FLUSH_EVERY`` bytes as it streams (the caller
    still syncs it at the end).
    """
    _advise_sequential(src_fd)
    with os.fdopen(os.dup(src_fd), "rb", buffering=0) as src:
        if expected_size > LEAF_CHUNK:
            digest = hash_stream(src, dst, progress, leaves=True, flush_every=FLUSH_EVERY if durable else 0)
        else:
            digest = hash_stream(src, dst, progress)
    after = os.fstat(src_fd).st_size
    if digest.size != expected_size or after != expected_size:
        raise IngestError(
            f"file changed while being read ({expected_size} bytes before, {digest.size} read, "
            f"{after} after); nothing recorded",
            path=name,
        )
    return digest


def read_upto(fd: int, size: int, limit: int) -> bytes:
    """Read an open file of ``size`` bytes to its end, also what it grew by while read, but stop once more
    than ``limit`` bytes were read (a file growing without end)."""
    parts = []
    got = 0
    while got <= limit and (chunk := os.read(fd, max(size - got, 1 << 16))):
        parts.append(chunk)
        got += len(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def read_small(src_fd: int, expected_size: int, name: str) -> bytes:
    """Read a small open file whole; reject it if it changed size while read (``IngestError``)."""
    _advise_sequential(src_fd)
    data = read_upto(src_fd, expected_size, expected_size)
    after = os.fstat(src_fd).st_size
    if len(data) != expected_size or after != expected_size:
        raise IngestError(
            f"file changed while being read ({expected_size} bytes before, {len(data)} read, "
            f"{after} after); nothing recorded",
            path=name,
        )
    return data


def chunk_root(path: str | os.PathLike[str], chunk_size: int, *, workers: int = 2) -> tuple[bytes, int]:
    """RFC 9162 root over the leaves of each ``chunk_size`` chunk, computed on ``workers`` threads at once.

    A single SHA-256 stream cannot use a second core; a chunk tree can (hashlib releases the GIL on
    big buffers). Returns (root, size in bytes).
    """
    from concurrent.futures import ThreadPoolExecutor

    from .merkle import root_from_leaves

    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        count = (size + chunk_size - 1) // chunk_size
        leaves: list[bytes] = [b""] * count
        _advise_sequential(fd)

        def stripe(first: int) -> None:
            """Chunks first, first + workers, ...: each thread reads into one buffer of its own."""
            buf = bytearray(chunk_size)
            view = memoryview(buf)
            for i in range(first, count, workers):
                n = os.preadv(fd, [buf], i * chunk_size)
                leaves[i] = _leaf(view[:n])

        with ThreadPoolExecutor(max_workers=workers) as pool:
            for done in [pool.submit(stripe, k) for k in range(min(workers, count) or 1)]:
                done.result()
    finally:
        os.close(fd)
    return root_from_leaves(leaves), size


def damaged_ranges(
    path: str | os.PathLike[str], chunk_size: int, leaves: list[str] | tuple[str, ...]
) -> list[tuple[int, int]]:
    """Byte ranges ``(first, last)`` (inclusive) of ``path`` whose chunk no longer matches its recorded leaf.

    ``leaves`` are the hex RFC 9162 leaf hashes of each ``chunk_size`` chunk as recorded at ingest. Adjacent
    damaged chunks are merged into one range; chunks missing at the end (a truncated file) are damaged, and
    bytes beyond the recorded chunks (an extended file) form a final damaged range.
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    ranges: list[tuple[int, int]] = []

    def mark(first: int, last: int) -> None:
        if ranges and ranges[-1][1] + 1 == first:
            ranges[-1] = (ranges[-1][0], last)
        else:
            ranges.append((first, last))

    buf = bytearray(chunk_size)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        _advise_sequential(fh.fileno())
        for i, want in enumerate(leaves):
            n = _fill(fh, view)
            if n == 0 or _leaf(view[:n]).hex() != want.lower():
                mark(i * chunk_size, i * chunk_size + chunk_size - 1)
        extra = 0
        while n := _fill(fh, view):
            extra += n
        if extra:
            start = len(leaves) * chunk_size
            mark(start, start + extra - 1)
    return ranges


def describe_damage(path: str | os.PathLike[str], chunks: object) -> str:
    """``"; bytes A-B damaged (k of n chunks)"`` for an object whose metadata has a chunk tree, else ``""``.

    ``chunks`` is the ``"chunks"`` member of the item's metadata object (``chunk_size``, ``root``,
    ``leaves``); anything unusable (absent, malformed, unreadable object) gives ``""``: this only adds
    detail to a mismatch.
    """
    if not isinstance(chunks, dict):
        return ""
    try:
        step, leaves = int(chunks["chunk_size"]), [str(x) for x in chunks["leaves"]]
        ranges = damaged_ranges(path, step, leaves)
    except (KeyError, TypeError, ValueError, OSError):
        return ""
    if not ranges:
        return ""
    n_bad = sum((last - first) // step + 1 for first, last in ranges)
    shown = ", ".join(f"bytes {first}-{last}" for first, last in ranges[:10])
    more = f" and {len(ranges) - 10} more ranges" if len(ranges) > 10 else ""
    return f"; {shown}{more} damaged ({n_bad} of {len(leaves)} chunks)"


def _advise_sequential(fd: int) -> None:
    if hasattr(os, "posix_fadvise"):
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)


# -- Linux durability helpers (ctypes; absent elsewhere, callers fall back to fsync) -----------------------

_libc: ctypes.CDLL | bool | None = False


def libc() -> ctypes.CDLL | None:
    """The C library (loaded once), for the Linux calls Python lacks; None where it cannot be loaded."""
    global _libc
    if _libc is False:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        except OSError:
            _libc = None
    return _libc if isinstance(_libc, ctypes.CDLL) else None


def syncfs(fd: int) -> bool:
    """``syncfs(2)`` of the file system holding ``fd``: True if it ran and reported success."""
    lib = libc()
    fn = getattr(lib, "syncfs", None) if lib is not None else None
    if fn is None:
        return False
    try:
        return int(fn(ctypes.c_int(fd))) == 0
    except Exception:
        return False
