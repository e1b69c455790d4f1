"""libmediainfo's helper process: a runaway parse is capped or killed, a crash is reported, a lost helper
is replaced, the file goes over by descriptor, and this process does not grow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from evidence_vault.errors import MediaError
from evidence_vault.metadata import mediainfo_process
from tests.paths import CORPUS
from tests.spin_3gp import spinning_3gp

SAMPLE = CORPUS / "video" / "sample.3gp"


@pytest.fixture(autouse=True)
def fresh_helper() -> Iterator[None]:
    """Each test starts its own helper (with the settings it patched) and leaves none behind."""
    mediainfo_process.shutdown()
    mediainfo_process._start_error = None
    yield
    mediainfo_process.shutdown()
    mediainfo_process._start_error = None


def _parse(path: Path, timeout: float = 10.0) -> list[dict[str, object]]:
    with path.open("rb") as fh:
        return mediainfo_process.parse(fh.fileno(), timeout)


def _helper_pid() -> int:
    helper = mediainfo_process._helper
    assert helper is not None
    return helper.proc.pid


def _status(pid: int, field: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {field} for {pid}")


def _rss_mb() -> float:
    return int(_status(os.getpid(), "VmRSS").split()[0]) / 1024


def _gone(pid: int) -> bool:
    """True once ``pid`` is reaped (no such process) — a zombie would still be there."""
    return not Path(f"/proc/{pid}").exists()


def test_tracks_of_a_real_video() -> None:
    tracks = _parse(SAMPLE)
    kinds = [t["track_type"] for t in tracks]
    assert kinds[0] == "General" and "Video" in kinds and "Audio" in kinds
    general = tracks[0]
    assert general["format"] == "MPEG-4" and not any(k.startswith("other_") for k in general)
    assert "complete_name" not in general and "file_name" not in general  # path-independent
    assert mediainfo_process.version().startswith("mediainfo ")


def test_one_helper_serves_every_file() -> None:
    _parse(SAMPLE)
    pid = _helper_pid()
    for name in ("with-gps.mp4", "bbb_480p_vp9_opus_1second.webm", "issue55.flv"):
        assert _parse(CORPUS / "video" / name)[0]["track_type"] == "General"
    assert _helper_pid() == pid


def test_file_goes_over_by_descriptor(tmp_path: Path) -> None:
    """The helper parses the open file, even once its name is gone (no re-open by path)."""
    path = tmp_path / "clip.3gp"
    path.write_bytes(SAMPLE.read_bytes())
    with path.open("rb") as fh:
        path.unlink()
        fh.seek(1000)  # the helper reads by pread: our offset is neither used nor moved
        tracks = mediainfo_process.parse(fh.fileno(), 10.0)
        assert fh.tell() == 1000
    assert tracks[0]["format"] == "MPEG-4"


def test_runaway_parse_is_capped_and_we_do_not_grow(tmp_path: Path) -> None:
    path = tmp_path / "spin.3gp"
    path.write_bytes(spinning_3gp())
    _parse(SAMPLE)
    before = _rss_mb()
    start = time.monotonic()
    tracks = _parse(path)
    assert time.monotonic() - start < 5  # the cap, not the 10 s timeout, ends it
    assert tracks and tracks[0]["track_type"] == "General"
    peak_kb = int(_status(_helper_pid(), "VmHWM").split()[0])
    assert peak_kb * 1024 < mediainfo_process.ADDRESS_SPACE_LIMIT
    assert _rss_mb() - before < 20  # the allocations happened in the helper, not here


def test_runaway_parse_is_killed_at_the_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mediainfo_process, "ADDRESS_SPACE_LIMIT", 0)  # no cap: only the timeout stops it
    path = tmp_path / "spin.3gp"
    path.write_bytes(spinning_3gp())
    _parse(SAMPLE)
    pid = _helper_pid()
    before = _rss_mb()
    start = time.monotonic()
    with pytest.raises(MediaError, match=r"did not finish within 0.5 s; stopped"):
        _parse(path, timeout=0.5)
    assert time.monotonic() - start < 3
    assert _gone(pid)  # killed and reaped: it does not go on spinning
    assert mediainfo_process._helper is None
    assert _rss_mb() - before < 20
    assert _parse(SAMPLE)[0]["format"] == "MPEG-4"  # the next file gets a new helper
    assert _helper_pid() != pid


def test_helper_lost_while_idle_is_replaced() -> None:
    _parse(SAMPLE)
    helper = mediainfo_process._helper
    assert helper is not None
    os.kill(helper.proc.pid, signal.SIGKILL)
    helper.proc.wait()
    assert _parse(SAMPLE)[0]["format"] == "MPEG-4"
    assert _helper_pid() != helper.proc.pid


def _fake_child(tmp_path: Path, on_request: str, hello: str = '{"version": "mediainfo fake"}') -> Path:
    """A stand-in helper program speaking the same protocol, for the failures a real file cannot cause
    on demand."""
    script = tmp_path / "fake_child.py"
    script.write_text(
        f"""
import os, signal, socket, struct, sys
sock = socket.socket(fileno=int(sys.argv[1]))
body = {hello!r}.encode()
sock.sendall(struct.pack(">Q", len(body)) + body)
msg, fds, _, _ = socket.recv_fds(sock, 64, 1)
{on_request}
"""
    )
    return script


def test_helper_crash_is_reported_with_its_signal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        mediainfo_process, "_CHILD", _fake_child(tmp_path, "os.kill(os.getpid(), signal.SIGSEGV)")
    )
    with pytest.raises(
        MediaError, match=r"libmediainfo failed on this file \(its process ended by SIGSEGV\)"
    ):
        _parse(SAMPLE)
    assert mediainfo_process._helper is None


def test_malformed_answer_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reply = 'sock.sendall(struct.pack(">Q", 1 << 40)); signal.pause()'
    monkeypatch.setattr(mediainfo_process, "_CHILD", _fake_child(tmp_path, reply))
    with pytest.raises(MediaError, match="answer is too large"):
        _parse(SAMPLE)
    assert mediainfo_process._helper is None  # stopped (killed: it would not leave by itself)


def test_helper_that_cannot_start_is_reported_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hello = json.dumps({"error": "cannot load libmediainfo: OSError: libmediainfo.so.0: not found"})
    monkeypatch.setattr(mediainfo_process, "_CHILD", _fake_child(tmp_path, "", hello=hello))
    with pytest.raises(MediaError, match=r"libmediainfo\.so\.0: not found"):
        _parse(SAMPLE)
    monkeypatch.setattr(mediainfo_process, "_CHILD", tmp_path / "never-run.py")
    with pytest.raises(MediaError, match=r"libmediainfo\.so\.0: not found"):  # not started again per file
        _parse(SAMPLE)
    from evidence_vault.metadata import video

    assert video.mediainfo_version() == "mediainfo unknown"


def test_forked_child_gets_its_own_helper() -> None:
    _parse(SAMPLE)
    parent_helper = _helper_pid()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            child_tracks = _parse(SAMPLE)
            child_helper = _helper_pid()
            mediainfo_process.shutdown()
            os.write(write_end, json.dumps([child_tracks[0]["format"], child_helper]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        fmt, child_helper = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert fmt == "MPEG-4" and child_helper != parent_helper
    assert _parse(SAMPLE)[0]["format"] == "MPEG-4"  # ours was not disturbed by the child's use
    assert _helper_pid() == parent_helper


_AT_EXIT = """
import atexit, os, sys
from pathlib import Path

def check():  # registered first, so it runs after the package's own exit handler
    try:
        os.waitpid(helper, os.WNOHANG)
        print("not reaped")
    except ChildProcessError:
        print("reaped")

atexit.register(check)
from evidence_vault.metadata import extract_metadata, mediainfo_process
extract_metadata(Path(sys.argv[1]))
helper = mediainfo_process._helper.proc.pid
"""


def test_helper_is_reaped_when_the_command_exits() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _AT_EXIT, str(SAMPLE)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "reaped", out.stderr
