"""Reading small files of a vault or a bag that anyone may have replaced: regular files only.

A FIFO put in place of a checkpoint, a proof or a tag file would block a plain read for ever (a
nightly verify that never ends); a device would be read without end. These readers open without
blocking, refuse anything that is not a regular file with an ``OSError`` (which every caller already
turns into a finding or a one-line error), and only then read.
"""

from __future__ import annotations

import errno
import os
import stat


def open_regular(path: str | os.PathLike[str], *, follow: bool = True) -> tuple[int, os.stat_result]:
    """A descriptor of the regular file ``path`` (opened without blocking) and its status; ``OSError``
    if it is missing, unreadable or not a regular file (``IsADirectoryError`` for a directory), with
    nothing left open. ``follow=False``: a symbolic link is refused too (``ELOOP``)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW))
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise OSError(errno.EISDIR, "Is a directory", os.fspath(path))
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", os.fspath(path))
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_bytes(path: str | os.PathLike[str], limit: int | None = None) -> bytes:
    """The bytes of the regular file ``path``; ``OSError`` if it is missing, unreadable, not a file, or
    bigger than ``limit`` bytes."""
    fd, st = open_regular(path)
    if limit is not None and st.st_size > limit:
        os.close(fd)
        raise OSError(errno.EFBIG, f"bigger than {limit} bytes", os.fspath(path))
    with os.fdopen(fd, "rb") as f:
        return f.read() if limit is None else f.read(limit)


def read_text(path: str | os.PathLike[str], encoding: str = "utf-8") -> str:
    """:func:`read_bytes` decoded, with newlines translated as ``Path.read_text`` does
    (``UnicodeDecodeError`` if the bytes are not in ``encoding``)."""
    return read_bytes(path).decode(encoding).replace("\r\n", "\n").replace("\r", "\n")
