"""``log.jsonl``: reading it as a stream, finding its head in O(1), appending signed events durably."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import IntegrityError, VaultFormatError
from .events import Event, line_hash, parse_line
from .keystore import utc_now
from .locking import exclusive_lock
from .signing import Signer

_READ = 1 << 20


@dataclass(frozen=True)
class RawLine:
    """One line of the log file: its byte offset, bytes without the newline, and completeness."""

    offset: int
    data: bytes
    complete: bool


@dataclass(frozen=True)
class Head:
    """The last complete line of the log: its seq and hash, and what the append guard checks."""

    seq: int
    hash: str
    size: int  # bytes of the log up to and including the head line's newline
    line: bytes = field(repr=False, compare=False)  # without its newline
    event: Event = field(repr=False, compare=False)
    canonical: bool = field(repr=False, compare=False)
    before: bytes | None = field(repr=False, compare=False)  # the line before (None: it is the first)

    @classmethod
    def read(cls, line: bytes, before: bytes | None, size: int) -> Head:
        """The head whose line is ``line`` (``IntegrityError`` if it is not a valid event)."""
        event, canonical = parse_line(line)
        return cls(event.seq, line_hash(line), size, line, event, canonical, before)


class TornLineError(IntegrityError):
    """The log ends with an incomplete line (an interrupted write): nothing can be appended (exit 2)."""

    exit_code = 2

    def __init__(self, path: Path) -> None:
        super().__init__(
            "the custody log ends with an incomplete line (interrupted write); "
            "run `evidence-vault doctor --repair` first",
            path=path,
        )


class CustodyLog:
    """The append-only custody log of one vault."""

    def __init__(self, path: Path, lock_path: Path, guard: Callable[[Head], None] | None = None) -> None:
        self.path = path
        self.lock_path = lock_path
        self.guard = guard  # runs under the lock on the head before anything is chained onto it

    def iter_raw(self, start: int = 0) -> Iterator[RawLine]:
        """Yield every line from byte ``start``, streaming (memory flat in the log length)."""
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 (closed by the with below; only open() maps to this error)
        except FileNotFoundError:
            raise VaultFormatError("custody log is missing", path=self.path) from None
        with fh:
            fh.seek(start)
            offset = start
            rest = b""
            while True:
                block = fh.read(_READ)
                if not block:
                    break
                rest += block
                lines = rest.split(b"\n")
                rest = lines.pop()
                for ln in lines:
                    yield RawLine(offset, ln, True)
                    offset += len(ln) + 1
            if rest:
                yield RawLine(offset, rest, False)

    def events(self) -> Iterator[Event]:
        """Parsed events of all complete lines (no verification: see ``verify``)."""
        for raw in self.iter_raw():
            if raw.complete:
                yield parse_line(raw.data)[0]

    def line_at(self, offset: int) -> bytes:
        """The complete line starting at byte ``offset`` (without its newline; empty past the end)."""
        with open(self.path, "rb", buffering=0) as fh:
            fh.seek(offset)
            parts = []
            size = 4096  # most lines are shorter: no 64 KiB read per look-up
            while chunk := fh.read(size):
                size = 65536
                end = chunk.find(b"\n")
                if end >= 0:
                    parts.append(chunk[:end])
                    return b"".join(parts)
                parts.append(chunk)
        return b""  # no newline: not a complete line

    def last_lines(self) -> tuple[bytes | None, bytes | None, int, int]:
        """The last complete line and the one before it (None where there is none), without their
        newlines; the file's size; the length of an incomplete trailing fragment. Reads backwards: O(1)."""
        with open(self.path, "rb") as fh:
            end = fh.seek(0, os.SEEK_END)
            pos, buf = end, b""
            while pos > 0:
                step = min(65536, pos)
                pos -= step
                fh.seek(pos)
                buf = fh.read(step) + buf
                last_nl = buf.rfind(b"\n")
                if last_nl < 0:
                    continue
                prev_nl = buf.rfind(b"\n", 0, last_nl)
                first_nl = buf.rfind(b"\n", 0, prev_nl) if prev_nl >= 0 else -1
                if first_nl < 0 and pos > 0:
                    continue  # the line before the last (or the last itself) starts further back
                before = buf[first_nl + 1 : prev_nl] if prev_nl >= 0 else None
                return buf[prev_nl + 1 : last_nl], before, end, len(buf) - last_nl - 1
            return None, None, end, len(buf)

    def tail_state(self) -> tuple[Head | None, int]:
        """The last complete line's head and the length of an incomplete trailing fragment.

        O(1) in the log length. The head also holds the line before it, for the append guard
        (:mod:`evidence_vault.append_guard`).
        """
        line, before, end, torn = self.last_lines()
        if line is None:
            return None, torn
        try:
            return Head.read(line, before, end - torn), torn
        except IntegrityError as exc:
            from .append_guard import UnsoundTailError  # the guard reads this module

            # Nothing is chained onto it: a refusal of the writing commands (exit 2), as for a line no
            # authorized key wrote.
            raise UnsoundTailError(
                f"last complete log line is damaged ({exc.message}); nothing recorded. Run `evidence-vault "
                "verify`; `evidence-vault doctor --repair` sets it aside (a copy is kept)",
                path=self.path,
            ) from None

    def require_clean_end(self) -> None:
        """Raise ``TornLineError`` now, before any work, if the log ends with a torn line."""
        if self.tail_state()[1]:
            raise TornLineError(self.path)

    def append(
        self,
        signer: Signer,
        build: Callable[[Head | None], Sequence[tuple[str, dict[str, Any]]]],
        *,
        wait: bool = True,
        on_wait: Callable[[], None] | None = None,
    ) -> list[Event]:
        """Sign and append events under the writer lock, as one write, then fsync.

        ``build`` runs under the lock with the current head and returns the (type, data) pairs to
        append; it may raise to refuse (nothing is written then) or return nothing. Lines are never
        rewritten; a torn last line must be set aside with ``doctor --repair`` first.
        """
        with exclusive_lock(self.lock_path, wait=wait, on_wait=on_wait):
            head, torn = self.tail_state()
            if torn:
                raise TornLineError(self.path)
            if head is not None and self.guard is not None:
                self.guard(head)
            entries = build(head)
            if not entries:
                return []
            seq = head.seq + 1 if head else 0
            prev = head.hash if head else None
            out: list[Event] = []
            lines: list[bytes] = []
            for etype, data in entries:
                ev = Event(
                    seq=seq, prev=prev, time=utc_now(), type=etype, actor=signer.fingerprint, data=data
                )
                sig = base64.b64encode(signer.sign(ev.signing_bytes())).decode()
                ev = Event(**{**ev.__dict__, "sig": sig})
                line = ev.line()
                lines.append(line + b"\n")
                out.append(ev)
                prev = line_hash(line)
                seq += 1
            payload = b"".join(lines)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            try:
                start = os.fstat(fd).st_size
                try:
                    written = os.write(fd, payload)
                    while written < len(payload):
                        written += os.write(fd, payload[written:])
                    os.fsync(fd)
                except OSError:
                    # Disk full or I/O error: take back the partial lines so no torn line is left.
                    os.ftruncate(fd, start)
                    os.fsync(fd)
                    raise
            finally:
                os.close(fd)
            return out
