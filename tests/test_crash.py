"""Crash safety: really SIGKILL `evidence-vault add` / `checkpoint` / `stamp` at random moments.

After every kill: every complete log line that existed before is still byte-identical, verification
finds no FAIL other than a torn last line (which `doctor --repair` sets aside, after which verification
passes), every object under its final name has the content its name says, and no content is ingested
twice. Re-running the same `add` finishes the work: every file's id in exactly one item.ingested event.

Trials run in a few parallel lanes (each its own vault); kill delays are drawn from a seeded
``random.Random`` over the measured start-up and full-run times, so the whole test stays within a few
minutes. Run with ``-s`` to see the trial counts.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from evidence_vault.doctor import doctor
from evidence_vault.keystore import KeyStore
from evidence_vault.vault import Vault
from evidence_vault.verify import verify_vault
from tests.conftest import PASSPHRASE
from tests.paths import CORPUS

SEED = 20240611
LANES = 6
ADD_TRIALS = 180
CHECKPOINT_TRIALS = 10
STAMP_TRIALS = 10
N_FILES = 600  # more than one add batch (512 files), so that some kills land between two appends
JPEGS = ("Canon_40D.jpg", "DSCN0010.jpg", "Apple iPhone 4.jpg", "HTC Desire.jpg", "no_exif.jpg")


def _command() -> list[str]:
    script = Path(sys.executable).with_name("evidence-vault")
    return [str(script)] if script.exists() else [sys.executable, "-m", "evidence_vault.cli"]


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def _make_files(directory: Path, rng: random.Random) -> list[Path]:
    directory.mkdir(parents=True)
    files = []
    for name in JPEGS:
        files.append(directory / name)
        shutil.copyfile(CORPUS / "images" / name, files[-1])
    for i in range(N_FILES - len(JPEGS)):
        files.append(directory / f"r{i:03d}.bin")
        files[-1].write_bytes(rng.randbytes(rng.randint(64, 4096)))
    return files


def _ingest_counts(vault: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in (vault / "log.jsonl").read_bytes().split(b"\n"):
        if not line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a torn last line: checked separately
        if event.get("type") == "item.ingested":
            counts[event["data"]["item"]] += 1
    return counts


def _file_id(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Tally:
    trials: Counter[str] = field(default_factory=Counter)
    killed: Counter[str] = field(default_factory=Counter)  # still running at the kill
    midway: int = 0  # add killed after some but not all of its events were appended
    torn: int = 0
    completed_runs: int = 0
    finished_by_kill: int = 0  # the run had written everything when it was killed
    orphans_seen: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Pace:
    """A factor on the calibrated kill delays of add trials, nudged after each one toward half real kills.

    The calibration runs every lane's add at once; during the trials the lanes also verify in this process,
    so the adds may run faster or slower than calibrated (in one CI run 84% of them finished before their
    kill point). Each add trial that was killed lengthens later delays by ``STEP``, each one that finished
    first shortens them, so the share of real kills settles near half whatever the machine's load.
    """

    STEP = 1.08
    factor: float = 1.0
    lowest: float = 1.0
    highest: float = 1.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def delay(self, calibrated: float) -> float:
        with self.lock:
            return calibrated * self.factor

    def update(self, killed: bool) -> None:
        with self.lock:
            self.factor = min(max(self.factor * (self.STEP if killed else 1 / self.STEP), 0.2), 5.0)
            self.lowest = min(self.lowest, self.factor)
            self.highest = max(self.highest, self.factor)


class Lane:
    def __init__(self, root: Path, fingerprint: str, rng: random.Random, tally: Tally) -> None:
        self.root = root
        self.fp = fingerprint
        self.rng = rng
        self.tally = tally
        self.generation = 0
        self.vault = root / "vault-0"
        self.files: list[Path] = []

    def fresh(self) -> None:
        """A new vault and a new set of files (after a run completed)."""
        self.generation += 1
        self.vault = self.root / f"vault-{self.generation}"
        store = KeyStore()
        signer = store.signer(store.find(self.fp), lambda _: PASSPHRASE.encode())
        Vault.init(self.vault, name=None, signer=signer, signer_name="crash").close()
        self.files = _make_files(self.root / f"files-{self.generation}", self.rng)

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [*_command(), "--vault", str(self.vault), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # `add --json` results: more than a pipe holds for N_FILES files
            stderr=subprocess.PIPE,
        )

    def full_add(self) -> tuple[float, float, float]:
        """Run one add to the end: (time of the first log append, of the last one, of the exit)."""
        log = self.vault / "log.jsonl"
        size = log.stat().st_size
        first = last = 0.0
        t0 = time.monotonic()
        proc = self.spawn("add", "--json", *map(str, self.files))
        while proc.poll() is None:
            now = log.stat().st_size
            if now != size:
                last = time.monotonic() - t0
                first = first or last
                size = now
            time.sleep(0.005)
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        return first, last, time.monotonic() - t0

    def trial(self, kind: str, when: Callable[[float], float], port: int) -> bool:
        """One trial; True if the process was still running when it was killed."""
        log = self.vault / "log.jsonl"
        before = log.read_bytes()
        assert before.endswith(b"\n")
        ingested_before = sum(_ingest_counts(self.vault).values())
        delay = when(1 - ingested_before / N_FILES)
        if kind == "add":
            args = ["add", "--json", *map(str, self.files)]
        elif kind == "checkpoint":
            args = ["checkpoint"]
        else:
            url = f"http://127.0.0.1:{port}"
            args = ["stamp", "--calendar", url, "--min-calendars", "1", "--timeout", "1"]
        proc = self.spawn(*args)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        _out, err = proc.communicate(timeout=60)
        killed = proc.returncode == -signal.SIGKILL  # else it finished just before the kill
        if not killed:
            assert proc.returncode == 0, f"{kind} exited {proc.returncode}: {err.decode()}"
        assert b"Traceback" not in err, err.decode()
        self._check(kind, before, killed, ingested_before)
        return killed

    def _check(self, kind: str, before: bytes, killed: bool, ingested_before: int) -> None:
        after = (self.vault / "log.jsonl").read_bytes()
        # No complete event lost or altered: the old log is a byte prefix of the new one.
        assert after.startswith(before), f"{self.vault}: a complete log line changed after a kill"
        counts = _ingest_counts(self.vault)
        assert all(n == 1 for n in counts.values()), f"content ingested twice: {counts.most_common(3)}"
        # Every object under its final name has the content its name says (orphans included).
        objects = sorted((self.vault / "objects" / "sha256").glob("*/*"))
        for obj in objects:
            assert hashlib.sha256(obj.read_bytes()).hexdigest() == obj.name, f"object {obj} has wrong content"
        vault = Vault(self.vault)
        try:
            report = verify_vault(vault, trusted=[self.fp], record_head=False)
            fails = {f.code for f in report.failures}
            assert fails <= {"log.torn-line"}, [f.to_dict() for f in report.failures]
            torn = bool(fails)
            if torn:
                result = doctor(vault, repair=True)
                assert result.torn_bytes > 0 and result.repaired
                assert (self.vault / "log.jsonl").read_bytes().startswith(before)
                again = verify_vault(vault, trusted=[self.fp], record_head=False)
                assert not again.failures, [f.to_dict() for f in again.failures]
            orphans = sum(1 for f in report.warnings if f.code == "object.orphan")
        finally:
            vault.close()
        added = sum(counts.values()) - ingested_before
        with self.tally.lock:
            self.tally.trials[kind] += 1
            self.tally.killed[kind] += killed
            self.tally.torn += torn
            self.tally.orphans_seen += orphans > 0
            if kind == "add" and killed and added and sum(counts.values()) < N_FILES:
                self.tally.midway += 1
        if kind == "add" and not killed:
            self._assert_complete()
        if kind == "add" and set(counts) >= {_file_id(p) for p in self.files}:
            # This set of files is all in: check exactly once, then start over with a new vault.
            self._assert_complete()
            with self.tally.lock:
                self.tally.completed_runs += 1
                self.tally.finished_by_kill += killed
            self.fresh()

    def _assert_complete(self) -> None:
        counts = _ingest_counts(self.vault)
        ids = {_file_id(p) for p in self.files}
        assert set(counts) == ids, f"{len(ids - set(counts))} files missing from the log"
        assert all(counts[i] == 1 for i in ids)

    def finish(self) -> None:
        """Re-run the same add to completion: the work is done, without duplicates."""
        self.full_add()
        self._assert_complete()
        vault = Vault(self.vault)
        try:
            report = verify_vault(vault, trusted=[self.fp], record_head=False)
        finally:
            vault.close()
        assert not report.failures, [f.to_dict() for f in report.failures]


def test_sigkill_at_random_moments(identity: str, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    tally = Tally()
    lanes = [Lane(tmp_path / f"lane{i}", identity, random.Random(rng.random()), tally) for i in range(LANES)]
    for lane in lanes:
        lane.fresh()

    # Calibrate under the same parallel load: start-up time, one full add per lane, then the same add
    # again with nothing left to do (a resumed add costs between the two).
    t0 = time.monotonic()
    subprocess.run([*_command(), "--version"], check=True, capture_output=True)
    startup = time.monotonic() - t0
    with ThreadPoolExecutor(LANES) as pool:
        phases = list(pool.map(lambda lane: lane.full_add(), lanes))
        idle: float = max(pool.map(lambda lane: lane.full_add()[2], lanes))
    first = min(p[0] for p in phases)
    last = max(p[1] for p in phases)
    full = max(p[2] for p in phases)
    for lane in lanes:
        lane.fresh()

    # The schedule: kind and kill point of every trial, fixed by the seed, dealt round-robin to lanes. An
    # add's kill delay is scaled at trial time by the share of files its lane has still to ingest: an add
    # that resumes after a kill ends sooner than the calibrating one, and a delay drawn for a full add
    # would mostly miss it.
    kinds = ["add"] * ADD_TRIALS + ["checkpoint"] * CHECKPOINT_TRIALS + ["stamp"] * STAMP_TRIALS
    rng.shuffle(kinds)
    short = max(startup * 1.6, 0.8)  # checkpoint / stamp take about one start-up time

    def scaled(lo: float, hi: float, u: float) -> Callable[[float], float]:
        """The point ``u`` of [lo, hi], where the full-add times in hi shrink with the work left."""

        def at(left: float) -> float:
            end = idle + (hi - idle) * left
            return lo + u * max(end - lo, 0.0)

        return at

    def when(kind: str) -> Callable[[float], float]:
        u = rng.random()
        if kind != "add":
            return lambda _left: startup * 0.6 + u * (short - startup * 0.6)
        if rng.random() < 0.35:  # anywhere in the run, start-up included
            return scaled(startup * 0.6, full * 1.05, u)
        return scaled(first * 0.8, last * 1.15, u)  # mostly while events are being appended

    schedule = [(k, when(k)) for k in kinds]
    port = _closed_port()

    pace = Pace()

    def run_lane(i: int) -> None:
        lane = lanes[i]
        for kind, at in schedule[i::LANES]:
            if kind != "add":
                lane.trial(kind, at, port)
                continue
            killed = lane.trial(kind, lambda left, at=at: pace.delay(at(left)), port)
            pace.update(killed)
        lane.finish()

    with ThreadPoolExecutor(LANES) as pool:
        list(pool.map(run_lane, range(LANES)))

    total = sum(tally.trials.values())
    summary = (
        f"crash trials: {total} ({dict(tally.trials)}); killed while running: {dict(tally.killed)}; "
        f"add killed mid-way with some events written: {tally.midway}; torn lines left: {tally.torn} "
        f"(all repaired by doctor); file sets completed: {tally.completed_runs} "
        f"({tally.finished_by_kill} of them killed after the last event); "
        f"trials leaving orphan objects: {tally.orphans_seen}; start-up {startup:.2f}s, full add {full:.2f}s "
        f"(appends from {first:.2f}s to {last:.2f}s), add with nothing left {idle:.2f}s; "
        f"add delays scaled by {pace.lowest:.2f}-{pace.highest:.2f} (last {pace.factor:.2f})"
    )
    print("\n" + summary)
    assert total == ADD_TRIALS + CHECKPOINT_TRIALS + STAMP_TRIALS, summary
    # Many trials must be real kills: Pace keeps the adds near half. The guard catches a broken pacing,
    # where nearly every add would finish first.
    assert sum(tally.killed.values()) >= total // 4, summary
    assert tally.killed["add"] >= ADD_TRIALS // 5, summary
    assert tally.midway > 0, summary
