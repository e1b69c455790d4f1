"""``doctor``: find (and with ``repair`` set aside) what an interrupted write or a hand-made line left
at the end of the log.

A torn last log line is copied to ``<vault>/quarantine/`` and then cut from the log. So is a complete
last line that no authorized key wrote there (see :mod:`evidence_vault.append_guard`): the writing
commands refuse to chain onto it. Such lines are set aside one at a time from the end, and never a line
at or below the head this machine last saw, nor the genesis line. Leftover temporary files of
interrupted object writes are removed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .append_guard import KeyChain, seen_problem, tail_problem, unwritten
from .atomic import fsync_dir, write_atomic
from .custody_log import Head
from .errors import IntegrityError
from .events import parse_event, parse_line
from .index import UnindexableLineError
from .keystore import TrustStore, utc_now
from .locking import exclusive_lock
from .vault import Vault


@dataclass
class UnsoundLine:
    """A complete last line the writing commands refuse to chain onto."""

    offset: int
    seq: int | None
    problem: str
    repairable: bool  # doctor --repair may set it aside
    saved_to: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class DoctorResult:
    torn_bytes: int = 0
    torn_complete: bool = False  # the torn line is a whole event without its newline: repair completes it
    torn_saved_to: str | None = None
    temp_files: list[str] = field(default_factory=list)
    unsound_lines: list[UnsoundLine] = field(default_factory=list)
    log_problem: str | None = None  # the log is missing or has no events: --repair never touches that
    repaired: bool = False

    @property
    def healthy(self) -> bool:
        return not self.torn_bytes and not self.temp_files and not self.unsound_lines and not self.log_problem

    @property
    def unrepaired(self) -> bool:
        """Something found that ``--repair`` may not touch (or was not asked to)."""
        return not self.healthy and (
            not self.repaired
            or self.log_problem is not None
            or any(u.saved_to is None for u in self.unsound_lines)
        )

    @property
    def repairable(self) -> bool:
        """Is there anything left that ``--repair`` would set aside, complete or remove?"""
        return bool(
            (self.torn_bytes and not self.torn_saved_to and not self.repaired)
            or (self.temp_files and not self.repaired)
            or any(u.repairable and u.saved_to is None for u in self.unsound_lines)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "torn_bytes": self.torn_bytes,
            "torn_complete": self.torn_complete,
            "torn_saved_to": self.torn_saved_to,
            "temp_files": self.temp_files,
            "unsound_lines": [u.to_dict() for u in self.unsound_lines],
            "log_problem": self.log_problem,
            "repaired": self.repaired,
        }


def doctor(vault: Vault, *, repair: bool = False, wait: bool = True) -> DoctorResult:
    result = DoctorResult()
    with exclusive_lock(vault.log.lock_path, wait=wait):
        tmpdir = vault.root / "objects" / "tmp"
        # Only files no running writer can still own: older than a minute.
        cutoff = time.time() - 60
        result.temp_files = (
            sorted(p.name for p in tmpdir.iterdir() if p.stat().st_mtime < cutoff) if tmpdir.is_dir() else []
        )
        pin = TrustStore().get(vault.config.vault_id) or {}
        result.log_problem = _log_problem(vault, pin)
        if result.log_problem is not None and not vault.log.path.exists():  # nothing more to read
            return _remove_temp_files(result, tmpdir) if repair else result
        _line, _before, end, torn = vault.log.last_lines()
        result.torn_bytes = torn
        result.torn_complete = bool(torn) and _whole_event(vault, end - torn, torn)
        if repair and result.torn_complete:
            # Recorded, not torn: only its newline is missing (an editor dropped it, say). Completed, the
            # line is judged below like any last line: never cut if this machine saw it.
            _add_newline(vault)
        elif repair and torn:
            result.torn_saved_to = _set_aside(vault, end - torn, "torn-line", ".bin")
        # A whole last event without its newline is judged once --repair completed it (the line before
        # it is not the last line).
        judge = repair or not result.torn_complete
        while judge and (found := _unsound_tail(vault, pin, fresh=repair)) is not None:
            result.unsound_lines.append(found)
            if not repair or not found.repairable:
                break
            found.saved_to = _set_aside(vault, found.offset, f"unsound-line-{found.seq}", ".jsonl")
        if not repair:
            return result
        _remove_temp_files(result, tmpdir)
    return result


def _remove_temp_files(result: DoctorResult, tmpdir: Path) -> DoctorResult:
    for name in result.temp_files:
        os.unlink(tmpdir / name)
    if result.temp_files:
        fsync_dir(tmpdir)
    result.repaired = True
    return result


def _log_problem(vault: Vault, pin: dict[str, Any]) -> str | None:
    """What is wrong with the log as a whole, which ``--repair`` never touches: it is missing, or it holds
    no complete line (not even the genesis event ``init`` writes). Says how far this machine saw it."""
    seen = pin.get("head")
    saw = (
        f" (this machine saw it up to seq {seen['seq']})"
        if isinstance(seen, dict) and isinstance(seen.get("seq"), int)
        else ""
    )
    try:
        size = vault.log.path.stat().st_size
    except FileNotFoundError:
        return f"the custody log is missing: every event was removed{saw}"
    if size == 0:
        return f"the custody log is empty: every event was removed, even the genesis event `init` writes{saw}"
    return None


def _unsound_tail(vault: Vault, pin: dict[str, Any], *, fresh: bool) -> UnsoundLine | None:
    """The last complete line, if the writing commands would refuse to chain onto it (``pin``: this
    machine's trust pin of the vault). ``fresh``: judge with an index read again from the whole log
    (before cutting anything: the index is in the vault, as editable as the log)."""
    seen = pin.get("head")
    line, before, end, torn = vault.log.last_lines()
    if line is None:
        return None
    offset = end - torn - len(line) - 1
    repairable = before is not None and _after_seen(before, seen)
    try:
        head = Head.read(line, before, end - torn)
    except IntegrityError as exc:
        return UnsoundLine(offset, None, unwritten(f"damaged: {exc.message}"), repairable)
    keys = KeyChain(vault.log.line_at, pin)
    problem = seen_problem(head, seen) or keys.genesis_problem()
    if problem:
        return UnsoundLine(offset, head.seq, problem, False)
    try:
        index = vault.rebuild_index() if fresh else vault.index
    except UnindexableLineError as exc:
        if exc.offset != offset:
            raise  # a line further back: `verify` says what, `doctor` does not cut into the log
        return UnsoundLine(offset, head.seq, unwritten(exc.why), repairable)
    problem = tail_problem(head, index.authority(), keys, index.key_lines())
    return UnsoundLine(offset, head.seq, problem, repairable) if problem else None


def _after_seen(before: bytes, seen: dict[str, Any] | None) -> bool:
    """Does the line after ``before`` come after everything this machine saw of the log?"""
    if not isinstance(seen, dict) or not isinstance(seen.get("seq"), int):
        return True
    try:
        return bool(parse_event(before).seq >= seen["seq"])
    except IntegrityError:
        return False


_WHOLE_LINE_MAX = 16 << 20  # no event line is longer; a longer fragment is torn whatever it holds


def _whole_event(vault: Vault, start: int, length: int) -> bool:
    """Are the log's bytes from ``start`` on a whole event (valid JSON of an event), not cut short? A
    line cut anywhere is no valid JSON (its closing brace is missing), so this tells them apart."""
    if length > _WHOLE_LINE_MAX:
        return False
    with open(vault.log.path, "rb") as fh:
        fh.seek(start)
        fragment = fh.read(length + 1)
    try:
        parse_line(fragment)
    except IntegrityError:
        return False
    return len(fragment) == length


def _add_newline(vault: Vault) -> None:
    fd = os.open(vault.log.path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def _set_aside(vault: Vault, start: int, what: str, suffix: str) -> str:
    """Copy the log's bytes from ``start`` on to ``quarantine/``, then cut them from the log."""
    with open(vault.log.path, "rb") as fh:
        fh.seek(start)
        fragment = fh.read()
    stamp = utc_now().replace(":", "").replace(".", "")
    saved = vault.root / "quarantine" / f"log-{what}-{stamp}{suffix}"
    n = 1
    while saved.exists():  # two lines set aside in one millisecond: keep both copies
        n += 1
        saved = vault.root / "quarantine" / f"log-{what}-{stamp}-{n}{suffix}"
    write_atomic(saved, fragment, mode=0o444)
    fd = os.open(vault.log.path, os.O_WRONLY)
    try:
        os.ftruncate(fd, start)
        os.fsync(fd)
    finally:
        os.close(fd)
    return str(saved)
