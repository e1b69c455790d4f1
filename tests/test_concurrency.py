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
