"""Re-hashing small objects while ``verify`` starts up.

Before ``verify`` can check anything it spends a tenth of a second on one core: importing its code,
reading the vault's configuration, forking its workers. A child forked first (:meth:`Prehash.start`,
before those imports) re-hashes small objects of the store on the idle core meanwhile, and hands over
what it found when the log pass is about to begin (:meth:`Prehash.take`, once the workers are forked).

Objects are named by their SHA-256, so the child needs nothing from the log: an object whose content
hashes to its name is intact. Only those are handed over, with their size and mode; the object pass
still checks them against the log (recorded size, read-only mode), and checks everything else (missing,
damaged, not handed over) as usual. Nothing is trusted that this run did not compute.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import NamedTuple

from .regular_files import open_regular

SMALL = 4 << 20  # the object store's SMALL: bigger objects are streamed by the object pass
MIN_LOG = 512 * 1024  # below this (about 500 events) verify forks no workers, and the child is not worth it
MAX_FOUND = 8192  # at most this many results are held (about 1 MB): memory stays flat in any vault
PIPE = 1 << 20  # room for them all (the most an unprivileged process may ask for by default)
STOP_WITHIN = 10.0  # seconds for the child to finish the object it is on (at most 4 MiB) and exit


class Found(NamedTuple):
    """An object whose content hashes to its name: its size and mode when it was read."""

    size: int
    mode: int


class Prehash:
    """A forked child re-hashing small objects until :meth:`take` stops it (use as a context manager)."""

    def __init__(self, pid: int, results: int, store: os.stat_result) -> None:
        self._pid, self._results, self._store = pid, results, store
        self._found: dict[str, Found] | None = None

    def covers(self, vault_root: Path) -> bool:
        """True if this child hashes the objects of the vault at ``vault_root`` (the same directory)."""
        try:
            return os.path.samestat(self._store, os.stat(_store_of(vault_root)))
        except OSError:
            return False

    @classmethod
    def start(cls, vault_root: Path) -> Prehash | None:
        """Fork the child for the vault at ``vault_root``; None where it is not worth it (one core, a
        small log), a fork is not possible, or not safe: with other threads running, one of them could
        hold a lock (of OpenSSL, say) that the child would then wait for forever."""
        if (os.cpu_count() or 1) < 2 or not hasattr(os, "fork"):
            return None
        if _other_threads():
            return None
        try:
            if os.stat(vault_root / "log.jsonl").st_size <= MIN_LOG:
                return None
            store = os.stat(_store_of(vault_root))
        except OSError:
            return None  # verify reports it
        results_r, results_w = os.pipe()
        with contextlib.suppress(OSError, AttributeError):  # room for every result without a reader
            import fcntl

            fcntl.fcntl(results_w, fcntl.F_SETPIPE_SZ, PIPE)
        try:
            pid = os.fork()
        except OSError:
            os.close(results_r)
            os.close(results_w)
            return None
        if pid == 0:  # the child: never returns
            status = 0
            try:
                os.close(results_r)
                _child(_store_of(vault_root), results_w)
            except BaseException:
                status = 1
            finally:
                os._exit(status)
        os.close(results_w)
        return cls(pid, results_r, store)

    def take(self) -> dict[str, Found]:
        """Stop the child; the objects it found intact, by hex digest (empty if it failed)."""
        if self._found is not None:
            return self._found
        # The child stops after the object it is on. Should the signal come before its handler is set,
        # it dies of it, and its results are not used.
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, signal.SIGUSR1)
        chunks: list[bytes] = []
        deadline = time.monotonic() + STOP_WITHIN
        os.set_blocking(self._results, False)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:  # stuck (it never should be): killed, and nothing it found is used
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._pid, signal.SIGKILL)
                chunks = []
                break
            select.select([self._results], [], [], left)
            try:
                chunk = os.read(self._results, 1 << 16)
            except BlockingIOError:
                continue
            if not chunk:
                break
            chunks.append(chunk)
        os.close(self._results)
        _, status = os.waitpid(self._pid, 0)
        found: dict[str, Found] = {}
        if status == 0:
            for line in b"".join(chunks).splitlines():
                hex_digest, size, mode = line.decode("ascii").split()
                found[hex_digest] = Found(int(size), int(mode))
        self._found = found
        return found

    def close(self) -> None:
        self.take()

    def __enter__(self) -> Prehash:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _other_threads() -> bool:
    """Does this process run threads besides this one?"""
    threading = sys.modules.get("threading")  # not imported yet: no Python threads
    return threading is not None and threading.active_count() > 1


def _store_of(vault_root: Path) -> str:
    return os.path.join(vault_root, "objects", "sha256")


_stopped = False


def _stop(signum: int, frame: object) -> None:
    global _stopped
    _stopped = True


def _child(base: str, results: int) -> None:
    """Hash the small regular files of the store until told to stop (SIGUSR1), this process's parent
    is gone, or there is no room left for results; write one line per intact object."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGUSR1, _stop)
    parent = os.getppid()
    os.set_blocking(results, False)
    found = 0
    for sub in sorted(os.listdir(base)):
        with os.scandir(os.path.join(base, sub)) as entries:
            for entry in entries:
                if _stopped or os.getppid() != parent or found >= MAX_FOUND:
                    return
                intact = _intact(entry.path, entry.name)
                if intact is None:
                    continue  # the object pass checks it again and reports it
                try:
                    os.write(results, f"{entry.name} {intact.size} {intact.mode}\n".encode("ascii"))
                except BlockingIOError:
                    return  # no room left: the object pass does the rest
                found += 1


def _intact(path: str, name: str) -> Found | None:
    """The object's size and mode if it is a small regular file whose content hashes to ``name``."""
    try:
        # Without blocking (a FIFO must not hold the child up); a link is left to the object pass.
        fd, st = open_regular(path, follow=False)
    except OSError:
        return None
    try:
        data = os.read(fd, st.st_size + 1) if st.st_size <= SMALL else None
    except OSError:
        return None
    finally:
        os.close(fd)
    if data is None or len(data) != st.st_size or hashlib.sha256(data).hexdigest() != name:
        return None
    return Found(st.st_size, st.st_mode)
