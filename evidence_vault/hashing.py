"""Streaming SHA-256: hash while copying (one read pass), with a size-change check."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from .errors import IngestError

CHUNK = 1 << 20  # 1 MiB reads: the sweet spot for hashlib throughput


@dataclass(frozen=True)
class Digest:
    sha256: str
    size: int

    @property
    def id(self) -> str:
        return "sha256:" + self.sha256


def hash_stream(
    src: BinaryIO, dst: BinaryIO | None = None, progress: Callable[[int], None] | None = None
) -> Digest:
    """Hash ``src`` to its end, copying every byte to ``dst`` when given."""
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


def hash_file(path: str | os.PathLike[str]) -> Digest:
    with open(path, "rb", buffering=0) as fh:
        _advise_sequential(fh.fileno())
        return hash_stream(fh)  # type: ignore[arg-type]


def copy_and_hash(
    src_fd: int,
    dst: BinaryIO,
    expected_size: int,
    name: str,
    progress: Callable[[int], None] | None = None,
) -> Digest:
    """Copy an open file to ``dst`` while hashing it; reject it if it changed size while read."""
    _advise_sequential(src_fd)
    with os.fdopen(os.dup(src_fd), "rb", buffering=0) as src:
        digest = hash_stream(src, dst, progress)  # type: ignore[arg-type]
    after = os.fstat(src_fd).st_size
    if digest.size != expected_size or after != expected_size:
        raise IngestError(
            f"file changed while being read ({expected_size} bytes before, {digest.size} read, "
            f"{after} after); nothing recorded",
            path=name,
        )
    return digest


def _advise_sequential(fd: int) -> None:
    if hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except OSError:
            pass
