"""``doctor``: find (and with ``repair`` set aside) what an interrupted write left behind.

A torn last log line is copied to ``<vault>/quarantine/`` and then cut from the log; complete lines
are never touched. Leftover temporary files of interrupted object writes are removed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from .atomic import fsync_dir, write_atomic
from .keystore import utc_now
from .locking import exclusive_lock
from .vault import Vault


@dataclass
class DoctorResult:
    torn_bytes: int = 0
    torn_saved_to: str | None = None
    temp_files: list[str] = field(default_factory=list)
    repaired: bool = False

    @property
    def healthy(self) -> bool:
        return not self.torn_bytes and not self.temp_files

    def to_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "torn_bytes": self.torn_bytes,
            "torn_saved_to": self.torn_saved_to,
            "temp_files": self.temp_files,
            "repaired": self.repaired,
        }


def doctor(vault: Vault, *, repair: bool = False, wait: bool = True) -> DoctorResult:
    result = DoctorResult()
    with exclusive_lock(vault.log.lock_path, wait=wait):
        _head, torn = vault.log.tail_state()
        tmpdir = vault.root / "objects" / "tmp"
        # Only files no running writer can still own: older than a minute.
        cutoff = time.time() - 60
        result.temp_files = (
            sorted(p.name for p in tmpdir.iterdir() if p.stat().st_mtime < cutoff) if tmpdir.is_dir() else []
        )
        result.torn_bytes = torn
        if not repair:
            return result
        if torn:
            with open(vault.log.path, "rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                fh.seek(size - torn)
                fragment = fh.read()
            stamp = utc_now().replace(":", "").replace(".", "")
            saved = vault.root / "quarantine" / f"log-torn-line-{stamp}.bin"
            write_atomic(saved, fragment, mode=0o444)
            fd = os.open(vault.log.path, os.O_WRONLY)
            try:
                os.ftruncate(fd, size - torn)
                os.fsync(fd)
            finally:
                os.close(fd)
            result.torn_saved_to = str(saved)
        for name in result.temp_files:
            os.unlink(tmpdir / name)
        if result.temp_files:
            fsync_dir(tmpdir)
        result.repaired = True
    return result
