"""libmediainfo in a helper process that can be killed: a hostile file cannot hang, crash or bloat us.

libmediainfo can spin inside one C call for minutes on hostile input while allocating hundreds of MB a
second (seen with a bit-flipped 3GP), and a C library can crash. A thread cannot be stopped, so the
parsing runs in one helper process per command (started on first use, reused for every file, started
again after a kill). The file goes over by descriptor, not by name, so the helper reads the very file
that was hashed. The helper's address space is capped; it is killed when a parse outlives the timeout.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import MediaError

_CHILD = Path(__file__).with_name("mediainfo_child.py")
_HEADER = struct.Struct(">Q")
START_TIMEOUT_S = 30.0  # a cold start on a loaded machine (Python, pymediainfo, libmediainfo)
# The helper's address space. It starts at about 38 MB; a synthetic 9-hour MP4 (1M samples) peaked at 45 MB
# RSS, while a runaway parse (the bit-flipped 3GP) grows 200 MB a second until an allocation fails here.
ADDRESS_SPACE_LIMIT = 256 << 20
MAX_REPLY = 64 << 20


class _Gone(MediaError):
    """The helper had ended before the request was sent."""


class _Helper:
    """One running helper process and our end of its socket."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-P", str(_CHILD), str(theirs.fileno()), str(ADDRESS_SPACE_LIMIT)],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.sock = ours
        hello = self.receive(START_TIMEOUT_S, "start")
        if "version" not in hello:
            self.stop()
            raise MediaError(str(hello.get("error", "the libmediainfo helper did not start")))
        self.version = str(hello["version"])

    def parse(self, fd: int, timeout: float) -> list[dict[str, Any]]:
        try:
            socket.send_fds(self.sock, [f"{timeout:.3f}".encode("ascii")], [fd])
        except OSError as exc:  # the helper is gone (killed while idle): the caller may start another
            self.stop()
            raise _Gone(str(exc)) from None
        reply = self.receive(timeout, "parse")
        if "tracks" not in reply or not isinstance(reply["tracks"], list):
            raise MediaError(str(reply.get("error", "libmediainfo returned no tracks"))[:400])
        return reply["tracks"]

    def receive(self, timeout: float, what: str) -> dict[str, Any]:
        """The next reply; stops the helper (and raises MediaError) if it is late, gone or malformed."""
        deadline = time.monotonic() + timeout
        try:
            (size,) = _HEADER.unpack(self._read(_HEADER.size, deadline))
            if size > MAX_REPLY:
                raise MediaError(f"libmediainfo's answer is too large ({size} bytes)")
            doc = json.loads(self._read(size, deadline))
        except TimeoutError:
            self.stop(kill=True)
            if what == "start":
                raise MediaError(f"the libmediainfo helper did not start within {timeout:g} s") from None
            raise MediaError(f"libmediainfo did not finish within {timeout:g} s; stopped") from None
        except (EOFError, OSError, ValueError) as exc:
            code = self.stop()
            if code is not None and code < 0:
                name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
                raise MediaError(f"libmediainfo failed on this file (its process ended by {name})") from None
            raise MediaError(f"the libmediainfo helper failed: {exc}") from None
        except MediaError:
            self.stop()
            raise
        if not isinstance(doc, dict):
            self.stop()
            raise MediaError("libmediainfo's answer is not an object")
        return doc

    def _read(self, n: int, deadline: float) -> bytes:
        parts: list[bytes] = []
        while n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(min(n, 1 << 20))
            if not chunk:
                raise EOFError("the helper closed its socket")
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    def stop(self, *, kill: bool = False) -> int | None:
        """Close our end, kill the helper (at once, or if it does not leave within 0.5 s once its socket
        is closed), and reap it; its exit status."""
        self.sock.close()
        if not kill:
            try:
                return self.proc.wait(0.5)
            except subprocess.TimeoutExpired:
                pass
        self.proc.kill()
        return self.proc.wait()


_lock = threading.Lock()
_helper: _Helper | None = None
_start_error: MediaError | None = None  # a helper that cannot start is not tried again


def _forget_after_fork() -> None:
    """In a forked child: the parent's helper and lock are not ours (the lock may be held by a thread
    that does not exist here)."""
    global _helper, _lock
    if _helper is not None:
        _helper.sock.close()
    _helper, _lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def _drop_stopped() -> None:
    """Forget the helper if a failure stopped it (the next file starts a new one)."""
    global _helper
    if _helper is not None and _helper.sock.fileno() == -1:
        _helper = None


def _current() -> _Helper:
    """The helper of this process, started now if there is none (a forked child starts its own)."""
    global _helper, _start_error
    _drop_stopped()
    if _start_error is not None:
        raise _start_error
    if _helper is None:
        try:
            _helper = _Helper()
        except OSError as exc:
            _start_error = MediaError(f"cannot start libmediainfo's helper: {exc}")
            raise _start_error from None
        except MediaError as exc:
            _start_error = exc
            raise
    return _helper


def parse(fd: int, timeout: float) -> list[dict[str, Any]]:
    """The tracks libmediainfo finds in the open file ``fd``, raw (``MediaError`` on any failure)."""
    with _lock:
        try:
            return _current().parse(fd, timeout)
        except _Gone:
            return _current().parse(fd, timeout)
        finally:
            _drop_stopped()


def version() -> str:
    """``mediainfo <libmediainfo version>`` as the helper reports it (starts the helper)."""
    with _lock:
        return _current().version


@atexit.register
def shutdown() -> None:
    """Stop and reap the helper (so it counts in this command's resource usage, and no zombie stays)."""
    global _helper
    locked = _lock.acquire(timeout=1.0)  # a thread still waiting on a parse must not hold up the exit
    try:
        if _helper is not None:
            _helper.stop()
        _helper = None
    finally:
        if locked:
            _lock.release()
