"""The readers of files anyone may have replaced: regular files only, and nothing left open."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from evidence_vault.regular_files import read_bytes, read_text


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_refused_entries_leave_no_descriptor_open(tmp_path: Path) -> None:
    """A directory or FIFO in place of a proof file is refused, and its descriptor closed: a hostile
    bag or proof of many such entries must not exhaust the process's descriptors."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 100)
    before = _open_fds()
    for _ in range(20):
        for path, limit in ((tmp_path, None), (fifo, None), (big, 10)):
            with pytest.raises(OSError):
                read_bytes(path, limit)
    assert _open_fds() == before
    assert read_text(big) == "x" * 100 and _open_fds() == before
