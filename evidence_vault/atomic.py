"""Durable file writes: temporary file, fsync, rename, fsync of the directory."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .hashing import syncfs


def fsync_dir(path: Path) -> None:
    """Flush a directory entry (a rename or a new file) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_files(root: Path, files: Iterable[Path]) -> None:
    """Make files already written under ``root`` durable, with the directory entries naming them: one
    ``syncfs`` of ``root``'s file system, or, where that is unavailable or fails, an fsync of each file
    and of each directory holding one (grouped fsyncs: one sync for a batch instead of two per file)."""
    fd = os.open(root, os.O_RDONLY)
    try:
        if syncfs(fd):
            return
    finally:
        os.close(fd)
    directories: dict[Path, None] = {}
    for path in files:
        obj = os.open(path, os.O_RDONLY)
        try:
            os.fsync(obj)
        finally:
            os.close(obj)
        directories[path.parent] = None
    for directory in directories:
        fsync_dir(directory)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new content, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
