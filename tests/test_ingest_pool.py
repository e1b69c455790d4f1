"""Ingest on every core: small files prepared in worker processes, big ones in threads, order kept."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from evidence_vault import ingest_pool
from evidence_vault.objects import SMALL, FileObjectStore
from evidence_vault.vault import Vault

from .conftest import Cli


def _prepare_in(store: FileObjectStore) -> Any:
    def prepare(path: str, progress: Any) -> tuple[str, int, int]:
        data = Path(path).read_bytes()
        digest, _ = store.put_bytes(data, sync=False)
        if progress is not None:
            progress(len(data))
        return path, digest.size, os.getpid()

    return prepare


def test_outcomes_keep_order_and_worker_objects_are_handed_over(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    paths = []
    for i in range(70):
        p = src / f"f{i:03d}"
        p.write_bytes(os.urandom(100 + i))
        paths.append(str(p))
    store = FileObjectStore(tmp_path / "objects")
    seen: list[int] = []
    out = list(
        ingest_pool.prepare_all(
            paths, _prepare_in(store), store, size_of=lambda o: o[1], on_progress=seen.append, processes=2
        )
    )
    assert [o[0] for o in out] == paths
    assert {o[2] for o in out} - {os.getpid()}, "small files were prepared in worker processes"
    assert sum(seen) == sum(100 + i for i in range(70))  # progress reported once per worker outcome
    handed = store.take_unsynced()
    assert len(handed) == 70 and all(p.is_file() for p in handed)  # the caller's sync() covers them


def test_few_files_or_one_core_stay_in_this_process(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    paths = [str(src / f"f{i}") for i in range(40)]
    for p in paths:
        Path(p).write_bytes(b"x" * 10 + p.encode())
    store = FileObjectStore(tmp_path / "objects")
    out = list(ingest_pool.prepare_all(paths[:5], _prepare_in(store), store, size_of=lambda o: 0))
    assert {o[2] for o in out} == {os.getpid()}
    out = list(ingest_pool.prepare_all(paths, _prepare_in(store), store, size_of=lambda o: 0, processes=1))
    assert {o[2] for o in out} == {os.getpid()}


def test_add_many_files_end_to_end(cli: Cli, vault: Path, tmp_path: Path, identity: str) -> None:
    src = tmp_path / "many"
    src.mkdir()
    for i in range(60):
        (src / f"f{i:03d}.bin").write_bytes(os.urandom(3000 + i))
    big = src / "zz-big.bin"  # above SMALL: streamed in a thread with its chunk tree
    big.write_bytes(os.urandom(SMALL + 12345))
    res = cli("--vault", vault, "add", "-r", "--json", src)
    assert res.code == 0, res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert [Path(x["path"]).name for x in lines] == sorted(p.name for p in src.iterdir())
    assert [x["seq"] for x in lines] == list(range(1, 62))  # events appended in the order given
    for obj in (vault / "objects" / "sha256").rglob("*"):
        if obj.is_file():
            assert stat.S_IMODE(obj.stat().st_mode) == 0o444
    assert not list((vault / "objects" / "tmp").iterdir())
    report = cli("--vault", vault, "verify", "--json", "--trust", identity)
    assert report.code == 0, report.stdout
    assert report.json()["stats"]["items"] == 61


def test_fifo_among_many_is_skipped(cli: Cli, vault: Path, tmp_path: Path) -> None:
    src = tmp_path / "many"
    src.mkdir()
    for i in range(40):
        (src / f"f{i:03d}.bin").write_bytes(os.urandom(100 + i))
    os.mkfifo(src / "f020.fifo")
    res = cli("--vault", vault, "add", "-r", "--json", src)
    assert res.code == 0, res.stderr
    statuses = {
        json.loads(x)["path"].rsplit("/", 1)[-1]: json.loads(x)["status"] for x in res.stdout.splitlines()
    }
    assert statuses["f020.fifo"] == "skipped"
    assert sum(s == "added" for s in statuses.values()) == 40


def test_verify_in_worker_processes_finds_each_damaged_object(
    cli: Cli, vault: Path, tmp_path: Path, identity: str
) -> None:
    """Enough objects that small ones are checked in worker processes: every damage is still named."""
    src = tmp_path / "many"
    src.mkdir()
    for i in range(40):
        (src / f"f{i:03d}.bin").write_bytes(os.urandom(2000 + i))
    res = cli("--vault", vault, "add", "-r", "--json", src)
    assert res.code == 0, res.stderr
    added = [json.loads(x) for x in res.stdout.splitlines()]
    objects = vault / "objects" / "sha256"
    flipped, gone = added[3]["id"][7:], added[30]["id"][7:]
    path = objects / flipped[:2] / flipped
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    (objects / gone[:2] / gone).unlink()
    report = cli("--vault", vault, "verify", "--json", "--trust", identity)
    assert report.code == 1
    found = {(f["code"], f["item"]) for f in report.json()["findings"] if f["level"] == "FAIL"}
    assert found == {("object.hash-mismatch", added[3]["id"]), ("object.missing", added[30]["id"])}
    warned = {f["code"] for f in report.json()["findings"] if f["level"] == "WARN"}
    assert "object.writable" in warned
    assert report.json()["stats"]["bytes_hashed"] == sum(x["size"] for x in added) - added[30]["size"] + sum(
        (objects / m[:2] / m).stat().st_size
        for m in (p.name for p in objects.rglob("*") if p.is_file())
        if m not in {x["id"][7:] for x in added}
    )


def _children_of(pid: int) -> set[int]:
    kids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.add(int(entry.name))
    return kids


def test_killed_add_and_verify_leave_no_worker_processes(run: Cli, vault: Path, tmp_path: Path) -> None:
    """SIGKILL of the main process: its forked workers die with it and release its stderr pipe."""
    import signal
    import subprocess
    import time

    from .conftest import _command

    src = tmp_path / "many"
    src.mkdir()
    for i in range(1500):
        (src / f"f{i:04d}.bin").write_bytes(os.urandom(20_000))
    for args in (["add", "-r", str(src)], ["verify"]):
        proc = subprocess.Popen(
            [*_command(), "--vault", str(vault), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        workers: set[int] = set()
        deadline = time.monotonic() + 30
        while not workers and proc.poll() is None and time.monotonic() < deadline:
            workers = _children_of(proc.pid)
            time.sleep(0.01)
        assert workers, f"{args[0]} started no worker process"
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=20)  # hangs if a worker still holds the pipe
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{w}").exists() for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        alive = [w for w in workers if Path(f"/proc/{w}/stat").exists() and "Z" not in _state(w)]
        assert not alive, f"workers of a killed {args[0]} still running: {alive}"
        if args[0] == "add":
            assert run("--vault", vault, "doctor", "--repair").code in (0, 1)
            assert run("--vault", vault, "add", "-r", str(src)).code == 0  # finish it for the verify


def _state(pid: int) -> str:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split() or ["?"])[0]
    except OSError:
        return "Z"


def test_a_worker_that_dies_is_replaced_by_this_process(tmp_path: Path) -> None:
    """A worker killed mid-batch (OOM killer, a signal): its items run here, every result still comes."""
    from evidence_vault.parallel import ordered_map

    flag = tmp_path / "died"

    def fn(item: int, in_worker: bool) -> tuple[int, bool]:
        if in_worker and item == 40 and not flag.exists():
            flag.touch()
            os._exit(9)  # the worker dies without a word
        return item * 2, in_worker

    out = list(ordered_map(fn, range(200), to_worker=lambda _i: True, processes=2))
    assert [r[0] for r, _ in out] == [i * 2 for i in range(200)]
    assert flag.exists()
    assert any(not in_worker for _, in_worker in out)  # the lost batch, and what followed, ran here


class _Dying:
    flag: Path | None = None
    real: Any = None


def _dying_batch(batch: list[tuple[int, bytes, bytes, bytes]]) -> list[int]:
    """Stands in for verify._verify_batch: the worker given the batch with index 400 dies, once."""
    assert _Dying.flag is not None
    if any(i == 400 for i, *_ in batch) and not _Dying.flag.exists():
        _Dying.flag.touch()
        os._exit(9)
    result: list[int] = _Dying.real(batch)
    return result


def test_signature_checks_survive_a_dead_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A signature worker that dies mid-pass: its batch is checked here, every bad signature still found."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from evidence_vault import verify
    from evidence_vault.parallel import Workers
    from evidence_vault.report import Report

    flag = tmp_path / "died"
    monkeypatch.setattr(_Dying, "flag", flag)
    monkeypatch.setattr(_Dying, "real", staticmethod(verify._verify_batch))
    monkeypatch.setattr(verify, "_verify_batch", _dying_batch)  # before the pool forks: workers run it
    key = Ed25519PrivateKey.generate()
    pub = key.public_key().public_bytes_raw()
    report = Report(target="t", vault_id=None, started="")
    bad = {5, 300, 400, 777}
    with Workers(processes=2) as workers:
        checks = verify.SignatureChecks(workers)
        assert checks.pool is not None
        for i in range(1000):
            data = f"event {i}".encode()
            checks.add(i, pub, key.sign(data if i not in bad else b"something else"), data, report)
        checks.finish(report)
        assert workers.pool() is None  # the broken pool was dropped: later passes run here
    assert flag.exists()
    assert sorted(f.seq for f in report.failures if f.code == "log.bad-signature") == sorted(bad)


def test_small_object_replaced_by_a_big_file_is_streamed_and_reported(
    cli: Cli, vault: Path, tmp_path: Path, identity: str
) -> None:
    """A 3 KB original swapped for a file above SMALL: hashed streaming (not read whole), size named."""
    f = tmp_path / "small.bin"
    f.write_bytes(os.urandom(3000))
    res = cli("--vault", vault, "add", "--json", f)
    assert res.code == 0, res.stderr
    item = json.loads(res.stdout)["id"]
    obj = vault / "objects" / "sha256" / item[7:9] / item[7:]
    obj.chmod(0o644)
    obj.write_bytes(os.urandom(SMALL + 1000))
    report = cli("--vault", vault, "verify", "--json", "--trust", identity)
    assert report.code == 1
    (finding,) = [x for x in report.json()["findings"] if x["level"] == "FAIL"]
    assert finding["code"] == "object.hash-mismatch" and finding["item"] == item
    assert f"size {SMALL + 1000}, recorded 3000" in finding["message"]


def _objects(vault: Path) -> set[str]:
    return {p.name for p in (vault / "objects" / "sha256").rglob("*") if p.is_file()}


def test_re_adding_known_content_reads_no_metadata_and_keeps_order(
    cli: Cli, vault: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A re-run of `add` over the same card (after a crash, say): content the log already holds is hashed
    # and reported as a duplicate without extracting its metadata or writing a metadata object.
    from evidence_vault import metadata

    src = tmp_path / "card"
    src.mkdir()
    for i in range(40):  # enough small files for the worker processes
        (src / f"f{i:03d}.bin").write_bytes(os.urandom(200 + i))
    (src / "f999-big.bin").write_bytes(os.urandom(SMALL + 999))  # and one in a thread
    first = cli("--vault", vault, "add", "-r", "--json", src)
    assert first.code == 0, first.stderr
    media = {json.loads(x)["path"]: json.loads(x)["media_type"] for x in first.stdout.splitlines()}
    (src / "f010-new.bin").write_bytes(os.urandom(300))
    (src / "f020-new.bin").write_bytes(os.urandom(SMALL + 1))
    before = _objects(vault)

    calls = tmp_path / "extracted"  # appended to by this process and the forked workers alike
    real = metadata.extract_metadata

    def counting(path: Any, name: str | None = None) -> Any:
        with open(calls, "a") as f:
            f.write(f"{path}\n")
        return real(path, name)

    monkeypatch.setattr(metadata, "extract_metadata", counting)
    # Each duplicate is confirmed by its line in the log; an index that agrees is never rebuilt.
    monkeypatch.setattr(Vault, "rebuild_index", lambda self: pytest.fail("index rebuilt"))
    res = cli("--vault", vault, "add", "-r", "--json", src)
    assert res.code == 0, res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert [Path(x["path"]).name for x in lines] == sorted(p.name for p in src.iterdir())  # in order
    for x in lines:
        if "-new" in x["path"]:
            assert x["status"] == "added"
        else:
            assert (x["status"], x["media_type"], x["seq"]) == ("duplicate", media[x["path"]], None)
            assert x["message"] == "already in the vault: nothing recorded"
    assert len(calls.read_text().splitlines()) == 2  # only the two new files
    new_objects = _objects(vault) - before
    assert len(new_objects) == 4  # two originals and their two metadata objects, nothing else
    assert not list((vault / "objects" / "tmp").iterdir())


def test_content_an_interrupted_add_left_in_the_store_is_added(cli: Cli, vault: Path, tmp_path: Path) -> None:
    # An add killed after it stored a file but before the log named it leaves an orphan: the next add must
    # record it like new content (metadata, event), not take the stored copy for a duplicate.
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(os.urandom(5000))
    FileObjectStore(vault / "objects").put_bytes(photo.read_bytes())
    found = cli("--vault", vault, "verify", "--json").json()["findings"]
    assert "object.orphan" in {f["code"] for f in found}
    res = cli("--vault", vault, "add", "--json", photo)
    assert res.code == 0, res.stderr
    (doc,) = res.json_lines()
    assert doc["status"] == "added" and doc["seq"] == 1
    report = cli("--vault", vault, "verify", "--json")
    assert report.code == 0 and report.json()["findings"] == [], report.stdout


@pytest.mark.parametrize("stored", [True, False], ids=["content-in-store", "content-not-in-store"])
def test_an_index_that_claims_content_the_log_lacks_cannot_hide_a_new_file(
    cli: Cli, vault: Path, tmp_path: Path, stored: bool
) -> None:
    # The index is a cache inside the vault: someone who can edit the vault could add a row for a file
    # they expect to be collected, so that `add` would call it "already in the vault" and record nothing.
    # The log line the index points at must confirm the claim; here it is another item's line.
    import sqlite3

    first = tmp_path / "first.bin"
    first.write_bytes(os.urandom(500))
    assert cli("--vault", vault, "add", first).code == 0
    assert cli("--vault", vault, "ls").code == 0  # the index catches up with the log
    target = tmp_path / "injury.bin"
    target.write_bytes(os.urandom(700))
    target_id = "sha256:" + hashlib.sha256(target.read_bytes()).hexdigest()
    if stored:  # the early path: the object store already holds the content
        FileObjectStore(vault / "objects").put_bytes(target.read_bytes())
    db = sqlite3.connect(vault / "cache" / "index.sqlite")
    with db:
        offset = db.execute("SELECT offset FROM item_events WHERE seq=1").fetchone()[0]
        db.execute(
            "INSERT INTO items (id, seq, time, actor, size, media_type) VALUES (?, 1, 't', 'a', 700, 'x/y')",
            (target_id,),
        )
        db.execute("INSERT INTO item_events (item, seq, offset) VALUES (?, 1, ?)", (target_id, offset))
    db.close()

    res = cli("--vault", vault, "add", "--json", target)
    assert res.code == 0, res.stderr
    (doc,) = res.json_lines()
    assert (doc["status"], doc["id"], doc["seq"]) == ("added", target_id, 2)
    report = cli("--vault", vault, "verify", "--json")
    assert report.code == 0 and report.json()["findings"] == [], report.stdout
    again = cli("--vault", vault, "add", "--json", target)  # the rebuilt index tells the truth now
    assert [d["status"] for d in again.json_lines()] == ["duplicate"]
