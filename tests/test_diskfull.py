"""Disk full while adding: a clear one-line error, and the vault still verifies afterwards.

The real test mounts a 2 MB tmpfs (needs root and CAP_SYS_ADMIN, as in CI). Where mounting is not
permitted it falls back to fault injection (ENOSPC raised by the object store's and the log's writes);
the fault-injection tests always run as well, so both the object copy and the log append are covered.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evidence_vault import hashing
from tests.conftest import Cli, CliResult


def _errors(res: CliResult) -> list[str]:
    return [line for line in res.stderr.splitlines() if "error:" in line]


def _assert_clean(res: CliResult) -> None:
    assert "Traceback" not in res.stderr, res.stderr
    assert res.code in (1, 2), (res.code, res.stderr)
    for line in res.stderr.splitlines():
        assert len(line) < 2000
    if res.code == 2:
        (err,) = _errors(res)  # exactly one error line
        # From the SQLite cache on a full disk the message is "database or disk is full" or, when the
        # WAL index cannot grow, "disk I/O error": named as the index cache, never an internal error.
        assert any(m in err for m in ("No space left on device", "disk is full", "disk I/O error")), err
        assert "internal error" not in err, err
    else:
        failed = [json.loads(x) for x in res.stdout.splitlines() if json.loads(x)["status"] == "failed"]
        assert failed and all("No space left on device" in d["message"] for d in failed), res.stdout


def _verify_ok(cli: Cli, vault: Path) -> dict[str, Any]:
    res = cli("--vault", vault, "verify", "--json")
    assert res.stdout, res.stderr
    report: dict[str, Any] = json.loads(res.stdout)
    assert res.code == 0, [f for f in report["findings"] if f["level"] == "FAIL"]
    assert not (vault / "log.jsonl").read_bytes() or (vault / "log.jsonl").read_bytes().endswith(b"\n")
    return report


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path | None]:
    """A 2 MB tmpfs, or None if this machine does not let us mount one."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    try:
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True
        )
        mounted = proc.returncode == 0
    except FileNotFoundError:
        mounted = False
    yield mnt if mounted else None
    if mounted:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _inject_enospc(monkeypatch: pytest.MonkeyPatch, after_bytes: int) -> None:
    """Every vault write fails with ENOSPC once ``after_bytes`` were written (a filling disk)."""
    budget = {"left": after_bytes}
    real_write = os.write

    def write(fd: int, data: Any) -> int:
        n = len(data)
        if budget["left"] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if n > budget["left"]:
            n = budget["left"]  # a partial write, then the disk is full
        budget["left"] -= n
        return real_write(fd, bytes(memoryview(data)[:n]))

    class FullFile:
        """Stands in for the object store's temporary file (``write`` of each copied chunk)."""

        def __init__(self, fh: Any) -> None:
            self.fh = fh

        def write(self, chunk: Any) -> int:
            if budget["left"] < len(chunk):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            budget["left"] -= len(chunk)
            written: int = self.fh.write(chunk)
            return written

        def __getattr__(self, name: str) -> Any:
            return getattr(self.fh, name)

    real_copy = hashing.copy_and_hash

    def copy_and_hash(src_fd: int, dst: Any, *args: Any, **kw: Any) -> hashing.Digest:
        return real_copy(src_fd, FullFile(dst), *args, **kw)  # type: ignore[arg-type]

    real_unlink = os.unlink

    def unlink(path: Any, *args: Any, **kw: Any) -> None:
        """Removing a partly written temporary object gives its space back, as on a real disk."""
        try:
            freed = os.stat(path).st_size
        except OSError:
            freed = 0
        real_unlink(path, *args, **kw)
        budget["left"] += freed

    monkeypatch.setattr(os, "write", write)  # custody_log and small objects call os.write
    monkeypatch.setattr(os, "unlink", unlink)
    monkeypatch.setattr("evidence_vault.objects.copy_and_hash", copy_and_hash)


def _files(d: Path, n: int, size: int) -> list[Path]:
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = d / f"f{i:04d}.bin"
        p.write_bytes(os.urandom(size))
        out.append(p)
    return out


def test_disk_full_on_a_real_small_filesystem(
    cli: Cli, identity: str, small_fs: Path | None, tmp_path: Path
) -> None:
    fault = pytest.MonkeyPatch()  # not the autouse fixture's: undoing it must keep the test's home
    if small_fs is None:  # not permitted here (no root / no CAP_SYS_ADMIN): inject the fault instead
        vault = tmp_path / "vault"
        assert cli("init", vault).code == 0
        _inject_enospc(fault, after_bytes=600_000)
    else:
        vault = small_fs / "vault"
        assert cli("init", vault).code == 0, "cannot create a vault on the tmpfs"
    big = _files(tmp_path / "big", 1, 3_000_000)
    res = cli("--vault", vault, "add", "--json", *big)
    _assert_clean(res)
    assert res.code == 1  # the one file failed, nothing recorded
    (doc,) = [json.loads(x) for x in res.stdout.splitlines()]
    assert doc["status"] == "failed" and "No space left on device" in doc["message"]
    assert (vault / "log.jsonl").read_bytes().count(b"\n") == 1
    _verify_ok(cli, vault)

    # Many small files until the disk fills up, in whatever step it happens (object, metadata, log).
    small = _files(tmp_path / "small", 400, 6000)
    res = cli("--vault", vault, "add", "--json", *small)
    _assert_clean(res)
    report = _verify_ok(cli, vault)
    added = report["stats"]["items"]
    # Some batches may have gone in before the disk filled (timing-dependent); never all of them.
    assert added < len(small), (res.code, res.stderr[-800:])

    # Room again: the same add completes the work, without duplicates.
    if small_fs is not None:
        subprocess.run(["mount", "-o", "remount,size=64m", str(small_fs)], check=True)  # keeps the files
    fault.undo()
    res = cli("--vault", vault, "add", "--json", *small)
    assert res.code == 0, res.stderr
    assert _verify_ok(cli, vault)["stats"]["items"] == len(small)


def test_log_append_enospc_leaves_no_torn_line(
    cli: Cli, vault: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The append writes part of its lines, then ENOSPC: the partial lines are taken back."""
    files = _files(tmp_path / "f", 5, 500)
    before = (vault / "log.jsonl").read_bytes()
    real_write = os.write

    def write(fd: int, data: Any) -> int:
        if b'"type":"item.ingested"' in bytes(data):
            real_write(fd, bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    with monkeypatch.context() as m:
        m.setattr(os, "write", write)  # custody_log calls os.write
        res = cli("--vault", vault, "add", *files)
    assert res.code == 2, res.stderr
    (err,) = _errors(res)
    assert "No space left on device" in err
    assert (vault / "log.jsonl").read_bytes() == before  # no torn line left behind
    assert cli("--vault", vault, "doctor").code == 0
    _verify_ok(cli, vault)
    res = cli("--vault", vault, "add", "--json", *files)
    assert res.code == 0 and {json.loads(x)["status"] for x in res.stdout.splitlines()} == {"added"}
    assert _verify_ok(cli, vault)["stats"]["items"] == 5


def test_object_copy_enospc_is_one_failed_line(
    cli: Cli, vault: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _files(tmp_path / "f", 3, 50_000)
    with monkeypatch.context() as m:
        _inject_enospc(m, after_bytes=70_000)
        res = cli("--vault", vault, "add", *files)
    assert res.code == 1
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    failed = [line for line in lines if line.startswith("failed")]
    assert failed and all("No space left on device" in line for line in failed)
    tmp = vault / "objects" / "tmp"
    assert not tmp.exists() or not list(tmp.iterdir())  # no half-written temporary object left
    _verify_ok(cli, vault)
