"""The program run in the helper process that parses media with libmediainfo (see mediainfo_process).

Run as a script (``python -P mediainfo_child.py FD LIMIT_BYTES``), it imports only the standard library and
pymediainfo. It answers, over the Unix socket ``FD``, one request per file: the request carries the file's
descriptor (SCM_RIGHTS) and a timeout in seconds; the reply is a length-prefixed JSON document, either
``{"tracks": [...]}`` or ``{"error": "..."}``. Its first message is ``{"version": "..."}`` or
``{"error": "..."}``. Its address space is capped at LIMIT_BYTES, it dies with its parent, and an alarm
ends it if one parse outlives its timeout by more than a few seconds (the parent kills it at the timeout).
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import socket
import struct
import sys
from typing import Any

HEADER = struct.Struct(">Q")
# Fields that describe the file system, not the content: they would make the dump path-dependent.
_DROP = {
    "complete_name",
    "folder_name",
    "file_name",
    "file_extension",
    "file_name_extension",
    "file_last_modification_date",
    "file_last_modification_date__local",
    "file_created_date",
    "file_created_date__local",
    "count",
    "kind_of_stream",
    "stream_identifier",
    "fileextension_invalid",
}


class PositionalReader:
    """Read-only file object over a descriptor using pread (no offset shared with anyone else)."""

    mode = "rb"

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pos = 0
        self._size = os.fstat(fd).st_size

    def read(self, n: int | None = -1) -> bytes:
        n = self._size - self._pos if n is None or n < 0 else n
        data = os.pread(self._fd, max(0, min(n, 1 << 24)), self._pos)
        self._pos += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


def send(sock: socket.socket, doc: dict[str, Any]) -> None:
    body = json.dumps(doc, default=str, ensure_ascii=False).encode("utf-8", "replace")
    sock.sendall(HEADER.pack(len(body)) + body)


def tracks_of(fd: int) -> list[dict[str, Any]]:
    """Every track as a plain dict, without the ``other_*`` duplicates and file-system fields."""
    from pymediainfo import MediaInfo

    info = MediaInfo.parse(PositionalReader(fd), encoding_errors="replace", parse_speed=0.5)
    return [
        {k: v for k, v in track.to_data().items() if k not in _DROP and not k.startswith("other_")}
        for track in info.tracks
    ]


def version() -> str:
    from pymediainfo import MediaInfo

    lib, handle, version_str, _ = MediaInfo._get_library()
    lib.MediaInfo_Delete(handle)
    return f"mediainfo {version_str}"


def die_with_parent() -> None:
    """Linux: the kernel kills this process when its parent dies (prctl PR_SET_PDEATHSIG)."""
    try:
        prctl = ctypes.CDLL(None).prctl  # libc's symbols, without find_library's ldconfig run
    except (OSError, AttributeError):
        return
    prctl(1, signal.SIGKILL, 0, 0, 0)


def serve(sock: socket.socket) -> None:
    while True:
        try:
            message, fds, _flags, _addr = socket.recv_fds(sock, 64, 1)
        except OSError:
            return
        if not message:
            return  # the parent closed its end
        if not fds:
            send(sock, {"error": "request without a file descriptor"})
            continue
        fd = fds[0]
        try:
            signal.alarm(max(1, int(float(message.decode("ascii"))) + 5))
            reply: dict[str, Any] = {"tracks": tracks_of(fd)}
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            signal.alarm(0)
            os.close(fd)
        send(sock, reply)


def main() -> None:
    fd, limit = int(sys.argv[1]), int(sys.argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it closes the socket
    die_with_parent()
    if limit > 0:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sock = socket.socket(fileno=fd)
    try:
        hello = {"version": version()}
    except Exception as exc:
        send(sock, {"error": f"cannot load libmediainfo: {type(exc).__name__}: {exc}"})
        return
    send(sock, hello)
    serve(sock)


if __name__ == "__main__":
    main()
