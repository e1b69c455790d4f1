"""Several writers on one vault: the lock serializes appends, waiters say so, --no-wait fails cleanly."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from evidence_vault.locking import exclusive_lock
from tests.conftest import Cli

WRITERS = 4
ROUNDS = 20


def _command() -> list[str]:
    script = Path(sys.executable).with_name("evidence-vault")
    return [str(script)] if script.exists() else [sys.executable, "-m", "evidence_vault.cli"]


def _spawn(vault: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*_command(), "--vault", str(vault), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_four_writers_twenty_rounds(cli: Cli, vault: Path, tmp_path: Path) -> None:
    expected: set[str] = set()
    for rnd in range(ROUNDS):
        procs = []
        for w in range(WRITERS):
            d = tmp_path / f"r{rnd}" / f"w{w}"
            d.mkdir(parents=True)
            files = []
            for k in range(3):
                data = os.urandom(512 + k) + f"{rnd}/{w}/{k}".encode()
                (d / f"f{k}.bin").write_bytes(data)
                files.append(str(d / f"f{k}.bin"))
                expected.add("sha256:" + hashlib.sha256(data).hexdigest())
            procs.append(_spawn(vault, "add", "--json", *files))
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            assert "Traceback" not in err
            assert all(json.loads(line)["status"] == "added" for line in out.splitlines())

    raw = (vault / "log.jsonl").read_bytes()
    assert raw.endswith(b"\n")
    lines = raw.split(b"\n")[:-1]
    events = [json.loads(line) for line in lines]  # no interleaved bytes: every line parses
    assert [e["seq"] for e in events] == list(range(len(events)))
    ingested = Counter(e["data"]["item"] for e in events if e["type"] == "item.ingested")
    assert set(ingested) == expected
    assert all(n == 1 for n in ingested.values())
    assert len(events) == 1 + WRITERS * ROUNDS * 3

    res = cli("--vault", vault, "verify", "--json")
    assert res.code == 0, res.stdout
    assert res.json()["outcome"] == "PASS"
    assert res.json()["stats"]["items"] == len(expected)


def test_second_writer_waits_with_a_message(vault: Path, tmp_path: Path) -> None:
    f = tmp_path / "one.bin"
    f.write_bytes(os.urandom(100))
    lines: list[str] = []
    with exclusive_lock(vault / ".lock"):
        proc = _spawn(vault, "add", str(f))
        assert proc.stderr is not None
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr or ()), daemon=True)
        reader.start()
        deadline = time.monotonic() + 30
        while not any("waiting for another evidence-vault process" in line for line in lines):
            assert time.monotonic() < deadline, f"no waiting message: {lines!r}"
            assert proc.poll() is None, "add did not wait for the lock"
            time.sleep(0.05)
        time.sleep(0.3)
        assert proc.poll() is None  # still waiting while the lock is held
        log_while_locked = (vault / "log.jsonl").read_bytes()
    assert proc.wait(timeout=60) == 0, lines
    reader.join(timeout=10)
    assert "1 added" in "".join(lines)
    assert log_while_locked.count(b"\n") == 1  # nothing was written while the lock was held
    assert (vault / "log.jsonl").read_bytes().count(b"\n") == 2


def test_no_wait_fails_cleanly(vault: Path, tmp_path: Path) -> None:
    f = tmp_path / "one.bin"
    f.write_bytes(os.urandom(100))
    before = (vault / "log.jsonl").read_bytes()
    with exclusive_lock(vault / ".lock"):
        proc = _spawn(vault, "add", "--no-wait", str(f))
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("evidence-vault: error:") and "another evidence-vault process" in lines[0]
    assert "Traceback" not in err and out == ""
    assert (vault / "log.jsonl").read_bytes() == before


def _add_while_another_appends(vault: Path, f: Path, half_written: bytes, rest: bytes) -> list[str]:
    """Hold the lock as a writer would, with ``half_written`` at the end of the log; start ``add``; once
    it waits for the lock, finish the write with ``rest`` and release. Returns add's stderr lines."""
    lines: list[str] = []
    with exclusive_lock(vault / ".lock"):
        with open(vault / "log.jsonl", "ab") as fh:
            fh.write(half_written)
        proc = _spawn(vault, "add", str(f))
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr or ()), daemon=True)
        reader.start()
        deadline = time.monotonic() + 60
        while not any("waiting for another evidence-vault process" in line for line in lines):
            assert proc.poll() is None, f"add refused while another writer held the lock: {lines!r}"
            assert time.monotonic() < deadline, f"add never waited: {lines!r}"
            time.sleep(0.05)
        with open(vault / "log.jsonl", "ab") as fh:
            fh.write(rest)
    assert proc.wait(timeout=60) == 0, lines
    reader.join(timeout=10)
    return lines


def _cut_last_line(cli: Cli, vault: Path, tmp_path: Path) -> bytes:
    """Add one file and take its line off the log again (returned): the state an unlocked reader can see
    while another writer appends that line."""
    g = tmp_path / "other.bin"
    g.write_bytes(os.urandom(64))
    assert cli("--vault", vault, "add", g).code == 0
    raw = (vault / "log.jsonl").read_bytes()
    cut = raw.rstrip(b"\n").rfind(b"\n") + 1
    (vault / "log.jsonl").write_bytes(raw[:cut])
    return raw[cut:]


def test_add_is_not_refused_by_a_line_another_writer_is_still_writing(
    cli: Cli, vault: Path, tmp_path: Path
) -> None:
    """Seen in CI: one of four concurrent adds saw another's half-written line before taking the lock and
    refused with "ends with an incomplete line". An early refusal is now checked again under the lock."""
    line = _cut_last_line(cli, vault, tmp_path)
    f = tmp_path / "one.bin"
    f.write_bytes(os.urandom(100))
    lines = _add_while_another_appends(vault, f, line[:40], line[40:])
    assert "1 added" in "".join(lines)
    res = cli("--vault", vault, "verify", "--json")
    assert res.code == 0 and res.json()["stats"]["items"] == 2, res.stdout


def test_add_is_not_refused_by_the_head_another_writer_has_just_recorded(
    cli: Cli, vault: Path, tmp_path: Path
) -> None:
    """Unlocked, add can read the log's head, then this machine's record of a newer head that another
    writer appended meanwhile: not "lines were removed from the end"."""
    line = _cut_last_line(cli, vault, tmp_path)  # this machine recorded that line's seq as its head
    f = tmp_path / "one.bin"
    f.write_bytes(os.urandom(100))
    lines = _add_while_another_appends(vault, f, b"", line)
    assert "1 added" in "".join(lines)
    res = cli("--vault", vault, "verify", "--json")
    assert res.code == 0 and res.json()["stats"]["items"] == 2, res.stdout


def test_pins_of_this_machine_survive_concurrent_writers(tmp_path: Path) -> None:
    """vaults.json is read, changed and saved by every add (its head) and init (a pin): without a lock,
    two processes each save over the other's change, and a vault loses its genesis pin."""
    from evidence_vault.keystore import TrustStore

    threads_n, each = 6, 15

    def pin_many(t: int) -> None:
        store = TrustStore(tmp_path)  # one store per writer, as one per process
        for i in range(each):
            store.pin(f"v{t}-{i}", f"SHA256:genesis{t}", tmp_path / f"v{t}-{i}")
            store.record_head(f"v{t}-0", i, f"hash{i}")

    threads = [threading.Thread(target=pin_many, args=(t,)) for t in range(threads_n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    pins = json.loads((tmp_path / "vaults.json").read_text())
    assert sorted(pins) == sorted(f"v{t}-{i}" for t in range(threads_n) for i in range(each))
    assert all(pins[f"v{t}-0"]["head"]["seq"] == each - 1 for t in range(threads_n))


def test_identities_added_at_once_are_all_kept(tmp_path: Path) -> None:
    """identities.json is read, changed and saved by each `key new`: two at once lost one's entry (its key
    file stayed, unlisted). Now one default, every identity listed."""
    from evidence_vault import signing
    from evidence_vault.keystore import KeyStore

    n = 8
    signers = [signing.generate() for _ in range(n)]
    threads = [
        threading.Thread(
            target=lambda s=s, i=i: KeyStore(tmp_path).add_identity(
                s, name=f"worker {i}", email=None, passphrase=None
            )
        )
        for i, s in enumerate(signers)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    ids = KeyStore(tmp_path).identities()
    assert sorted(i.fingerprint for i in ids) == sorted(s.fingerprint for s in signers)
    assert sum(i.default for i in ids) == 1
