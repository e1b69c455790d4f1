"""The child that re-hashes small objects while verify starts up: it hands over only objects whose content
hashes to their names, stops when told, and verify's findings are the same with it as without it."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from evidence_vault import objects, prehash
from evidence_vault.prehash import Prehash
from evidence_vault.report import Report
from evidence_vault.vault import Vault
from evidence_vault.verify import verify_vault

from .conftest import Cli


@pytest.fixture(autouse=True)
def single_threaded(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in servers of other tests may still run threads in this process, and the child is
    then not forked at all (a safety rule, tested on its own below). Here it is forked anyway: those
    threads wait on sockets and hold no lock the child needs; a stuck child would be killed by take()."""
    if request.node.name != "test_not_forked_while_other_threads_run":
        monkeypatch.setattr(prehash, "_other_threads", lambda: False)


def _objects(vault: Path) -> list[Path]:
    return sorted((vault / "objects" / "sha256").glob("*/*"))


def _findings(report: Report) -> list[tuple[str, str, str, str]]:
    return sorted((f.level, f.code, f.subject, f.message) for f in report.findings)


def test_the_store_bound_is_the_object_stores() -> None:
    assert prehash.SMALL == objects.SMALL


def test_only_intact_objects_are_handed_over(big_vault: Path) -> None:
    stored = _objects(big_vault)
    damaged, writable = stored[5], stored[9]
    damaged.chmod(0o644)
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"?")
    writable.chmod(0o644)
    os.mkfifo(stored[0].parent / ("f" * 64))  # a FIFO in the store must not block the child
    early = Prehash.start(big_vault)
    assert early is not None
    with early:
        _done(early)
        found = early.take()
    assert damaged.name not in found and "f" * 64 not in found
    for hex_digest, got in found.items():
        path = big_vault / "objects" / "sha256" / hex_digest[:2] / hex_digest
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == hex_digest
        assert got == prehash.Found(len(data), path.stat().st_mode)
    assert len(found) == len(stored) - 1  # all but the damaged one
    assert found[writable.name].mode & 0o200  # handed over: the object pass warns of the mode
    assert early.take() is found  # once
    with pytest.raises(ChildProcessError):
        os.waitpid(early._pid, os.WNOHANG)  # reaped


def _done(early: Prehash) -> None:
    """Wait until the child got through the whole store and exited (left for take() to reap)."""
    os.waitid(os.P_PID, early._pid, os.WEXITED | os.WNOWAIT)


def test_it_stops_when_told(big_vault: Path) -> None:
    """Stopped at once, it hands over what it had; the rest is left to the object pass."""
    many = len(_objects(big_vault))
    early = Prehash.start(big_vault)
    assert early is not None
    found = early.take()
    assert len(found) < many  # a fresh child has not hashed 1,240 objects yet
    with pytest.raises(ChildProcessError):
        os.waitpid(early._pid, os.WNOHANG)


def test_not_started_where_it_does_not_pay(big_vault: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert Prehash.start(big_vault) is None
    monkeypatch.undo()
    small = big_vault.parent / "small"
    small.mkdir()
    (small / "log.jsonl").write_bytes(b"x" * 1000)
    assert Prehash.start(small) is None
    assert Prehash.start(big_vault.parent / "no-such-vault") is None


def test_verify_finds_the_same_with_the_child(big_vault: Path, identity: str) -> None:
    originals = [p for p in _objects(big_vault) if p.stat().st_size == 68]
    damaged, gone, writable = originals[3], originals[200], originals[500]
    damaged.chmod(0o644)
    damaged.write_bytes(b"x" * 68)
    gone.unlink()
    writable.chmod(0o644)
    without = verify_vault(Vault(big_vault), trusted=[identity], record_head=False)

    early = Prehash.start(big_vault)
    assert early is not None
    _done(early)  # every intact object is handed over
    with early:
        handed = early.take()
        assert len(handed) == len(_objects(big_vault)) - 1  # all but the damaged one
        with_child = verify_vault(Vault(big_vault), trusted=[identity], record_head=False, prehashed=early)
    assert (
        len(handed) == 620
        and all(  # the originals were taken from it; not their metadata objects
            (big_vault / "objects" / "sha256" / h[:2] / h).stat().st_size != 68 for h in handed
        )
    )
    assert _findings(with_child) == _findings(without)
    codes = sorted(f.code for f in with_child.findings if f.level != "INFO")
    assert codes == ["object.hash-mismatch", "object.missing", "object.writable", "object.writable"]
    assert with_child.stats == without.stats


def test_cli_verify_starts_it_but_not_for_incremental(
    cli: Cli, big_vault: Path, identity: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[Prehash | None] = []
    real = Prehash.start.__func__  # type: ignore[attr-defined]

    def spy(cls: type[Prehash], root: Path) -> Prehash | None:
        early = real(cls, root)
        started.append(early)
        return early

    monkeypatch.setattr(Prehash, "start", classmethod(spy))
    assert cli("--vault", big_vault, "verify", "--trust", identity).code == 0
    assert len(started) == 1 and started[0] is not None and started[0]._found is not None  # taken
    assert cli("--vault", big_vault, "verify", "--incremental", "--trust", identity).code == 0
    assert len(started) == 1


def test_the_command_line_is_read_before_typer(big_vault: Path, tmp_path: Path) -> None:
    """main starts the child for `verify` from the arguments alone; the command claims it for its vault."""
    from evidence_vault.cli import early

    assert early.split_command(["--vault", "v", "--key=SHA256:x", "verify", "--strict"]) == (
        "v",
        "verify",
        ["--strict"],
    )
    assert early.split_command(["--vault=v", "--passphrase-file", "verify", "ls"]) == ("v", "ls", [])
    assert early.split_command(["-h"]) == (None, None, [])
    for argv in (["--vault", str(big_vault), "verify", "--incremental"], ["--vault", str(big_vault), "ls"]):
        early.start(argv)
        assert early._started is None, argv
    early.start(["--vault", str(tmp_path / "nowhere"), "verify"])  # the command reports it
    assert early._started is None

    early.start(["--vault", str(big_vault), "verify"])
    started = early._started
    assert started is not None
    assert early.claim(tmp_path) is None and started._found == {}  # another directory: stopped, unused
    early.start(["--vault", str(big_vault), "verify"])
    started = early._started
    assert started is not None and early.claim(big_vault) is started and early._started is None
    started.close()
    early.start(["--vault", str(big_vault), "verify"])
    started = early._started
    early.stop()  # the command never claimed it
    assert started is not None and started._found is not None and early._started is None


def test_verify_ignores_a_child_of_another_vault(big_vault: Path, identity: str, tmp_path: Path) -> None:
    """A copy holds the same objects intact; in the vault verified, one is damaged: it must be found."""
    other = tmp_path / "other"
    shutil.copytree(big_vault, other)
    damaged = next(p for p in _objects(big_vault) if p.stat().st_size == 68)
    damaged.chmod(0o644)
    damaged.write_bytes(b"x" * 68)
    damaged.chmod(0o444)
    early = Prehash.start(other)
    assert early is not None
    _done(early)
    with early:
        assert damaged.name in early.take()
        report = verify_vault(Vault(big_vault), trusted=[identity], record_head=False, prehashed=early)
    assert [f.code for f in report.failures] == ["object.hash-mismatch"]
    assert not early.covers(big_vault) and early.covers(other)


def test_a_stuck_child_is_killed_and_not_used(big_vault: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """take() never waits for ever: a child that does not stop in time is killed, and none of what it
    found is used."""
    import time

    monkeypatch.setattr(prehash, "STOP_WITHIN", 0.5)
    monkeypatch.setattr(prehash, "_stop", lambda *a: None)  # the child ignores the request to stop
    monkeypatch.setattr(prehash, "_intact", lambda path, name: time.sleep(0.05))  # and crawls
    early = Prehash.start(big_vault)
    assert early is not None
    started = time.monotonic()
    assert early.take() == {}
    assert time.monotonic() - started < 5
    with pytest.raises(ChildProcessError):
        os.waitpid(early._pid, os.WNOHANG)


def test_not_forked_while_other_threads_run(big_vault: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another thread could hold a lock (OpenSSL's, say) at the fork, which the child would then wait
    for forever: with other threads running, no child."""
    import threading

    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert prehash._other_threads()
        assert Prehash.start(big_vault) is None
    finally:
        stop.set()
        other.join()
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    assert not prehash._other_threads()


def test_verify_takes_the_child_after_the_workers_fork(
    big_vault: Path, identity: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child hashes on while the workers fork; it is stopped before the log pass checks anything."""
    from evidence_vault import object_checks

    order: list[str] = []
    fork_workers = object_checks.ObjectPass.start_early
    take = Prehash.take

    def start_early(self: object) -> None:
        order.append("workers")
        fork_workers(self)  # type: ignore[arg-type]

    def taken(self: Prehash) -> dict[str, prehash.Found]:
        order.append("take")
        return take(self)

    monkeypatch.setattr(object_checks.ObjectPass, "start_early", start_early)
    monkeypatch.setattr(Prehash, "take", taken)
    early = Prehash.start(big_vault)
    assert early is not None
    with early:
        report = verify_vault(Vault(big_vault), trusted=[identity], record_head=False, prehashed=early)
    assert order[:2] == ["workers", "take"]
    assert report.outcome == "PASS" and report.stats["items"] == 620


def test_the_child_is_stopped_when_the_workers_cannot_fork(
    big_vault: Path, identity: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evidence_vault import object_checks

    def no_fork(self: object) -> None:
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(object_checks.ObjectPass, "start_early", no_fork)
    early = Prehash.start(big_vault)
    assert early is not None
    with pytest.raises(OSError):
        verify_vault(Vault(big_vault), trusted=[identity], record_head=False, prehashed=early)
    with pytest.raises(ChildProcessError):
        os.waitpid(early._pid, os.WNOHANG)  # stopped and reaped by verify_vault itself
