"""Hostile input: malformed and fuzzed media given to `add`, and fuzzed damage to a valid vault.

`add` must never print a traceback, never hang (each run is bounded by a subprocess timeout) and keep
its memory bounded on decompression bombs (peak RSS of the child, from ``os.wait4``). Any flipped byte
of a log line or an object must make `verify` exit 1 with a FAIL that names the damaged line's seq or
the damaged item; a clean copy never yields a FAIL.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SAMPLE_FILES, Cli, object_path
from tests.paths import CORPUS
from tests.spin_3gp import spinning_3gp

MALFORMED = CORPUS / "malformed"
BOMBS = ("decompression_bomb.gif", "reallybig.bmp")
RSS_LIMIT_MB = 200
FILE_TIMEOUT = 60.0
SEEDS = (
    CORPUS / "images" / "Canon_40D.jpg",
    CORPUS / "images" / "png_with_exif_and_gps.png",
    CORPUS / "images" / "Issue 508.jpg",
    MALFORMED / "exif_gps.jpg",
    MALFORMED / "bipbop_nonfragment_header.mp4",
    MALFORMED / "block_ends_beyond_cluster.mkv",
    MALFORMED / "IllegalArgumentException.HeifReader.processBoxes.heif",
    MALFORMED / "decompression_bomb.gif",
    MALFORMED / "reallybig.bmp",
)


def _command() -> list[str]:
    script = Path(sys.executable).with_name("evidence-vault")
    return [str(script)] if script.exists() else [sys.executable, "-m", "evidence_vault.cli"]


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    seconds: float
    max_rss_mb: float


# Linux counts the RSS of the process that spawned a command in the command's ru_maxrss (exec records
# the old address space's high-water mark): spawned straight from a big pytest process, every `add`
# looked as big as pytest. This small launcher forks the command itself, waits for it and writes its
# rusage peak (KB) to the file named first.
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
os._exit(code if code >= 0 else 128 - code)
"""


def run_bounded(*args: str | os.PathLike[str], timeout: float = FILE_TIMEOUT) -> Run:
    """Run evidence-vault; kill it after ``timeout`` (a hang fails the test); peak RSS of that command
    (and of the workers it waited for), measured by a small launcher process."""
    t0 = time.monotonic()
    command = _command()
    command[0] = shutil.which(command[0]) or command[0]
    with tempfile.NamedTemporaryFile(prefix="rss-", delete=False) as f:
        rss_file = f.name
    proc = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER, rss_file, *command, *(os.fspath(a) for a in args)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # a kill on timeout reaches the launcher and the command
    )
    out: list[bytes] = []
    err: list[bytes] = []
    readers = [
        threading.Thread(target=lambda: out.append(proc.stdout.read() if proc.stdout else b"")),
        threading.Thread(target=lambda: err.append(proc.stderr.read() if proc.stderr else b"")),
    ]
    for r in readers:
        r.start()
    timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
    timer.start()
    try:
        proc.wait()
    finally:
        timer.cancel()
    for r in readers:
        r.join()
    seconds = time.monotonic() - t0
    assert proc.returncode != -signal.SIGKILL, f"evidence-vault {args} hung (killed after {timeout}s)"
    try:
        max_rss_kb = int(Path(rss_file).read_text() or 0)
    finally:
        os.unlink(rss_file)
    return Run(proc.returncode, out[0].decode(), err[0].decode(), seconds, max_rss_kb / 1024)


def _assert_clean_failure_or_success(res: Run, what: str) -> None:
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout, f"{what}: {res.stderr}"
    assert res.code in (0, 1), f"{what}: exit {res.code}: {res.stderr}"
    for line in res.stdout.splitlines():
        doc = json.loads(line)
        assert doc["status"] in ("added", "duplicate", "failed", "skipped")
        if doc["status"] == "failed":
            assert doc["message"] and "\n" not in doc["message"]


@pytest.mark.parametrize("name", sorted(p.name for p in MALFORMED.iterdir() if p.is_file()))
def test_malformed_corpus_file(name: str, vault: Path) -> None:
    res = run_bounded("--vault", vault, "add", "--json", MALFORMED / name)
    _assert_clean_failure_or_success(res, name)
    (doc,) = [json.loads(line) for line in res.stdout.splitlines()]
    assert doc["status"] == "added", doc  # hostile content is still kept as evidence
    assert res.max_rss_mb < RSS_LIMIT_MB, f"{name}: peak RSS {res.max_rss_mb:.0f} MB"


@pytest.mark.parametrize("name", BOMBS)
def test_bombs_memory_bounded_and_vault_verifies(name: str, vault: Path, cli: Cli) -> None:
    res = run_bounded("--vault", vault, "add", "--json", MALFORMED / name)
    _assert_clean_failure_or_success(res, name)
    assert res.max_rss_mb < RSS_LIMIT_MB, f"{name}: peak RSS {res.max_rss_mb:.0f} MB"
    assert res.seconds < 30
    check = cli("--vault", vault, "verify", "--json")
    assert check.code == 0 and check.json()["outcome"] == "PASS", check.stdout


def test_runaway_video_parse_is_bounded(vault: Path, tmp_path: Path) -> None:
    """libmediainfo's runaway parse of this file happens in the helper process, whose address space is
    capped; the helper is reaped by `add`, so its peak counts in the RSS measured here."""
    path = tmp_path / "spin.3gp"
    path.write_bytes(spinning_3gp())
    res = run_bounded("--vault", vault, "add", "--json", path)
    _assert_clean_failure_or_success(res, path.name)
    (doc,) = [json.loads(line) for line in res.stdout.splitlines()]
    assert doc["status"] == "added", doc
    assert res.max_rss_mb < RSS_LIMIT_MB, f"peak RSS {res.max_rss_mb:.0f} MB"
    assert res.seconds < 30


# exifread 3.5.1's HEIC reader loops for ever on a box of size 0 (found by the fuzz test below).
LOOPING_HEIC = (
    b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic\x00\x00\x01\xfemeta\x00\x00\x00\x00"
    b"\x00\x00\x00\x01hdlr\x00\x00\x00\x00\x00\x00\x00\x00"
)


def test_a_metadata_parser_that_loops_is_stopped(vault: Path, tmp_path: Path) -> None:
    """The 52-byte HEIC that sends exifread round a loop is added with an extraction error, in seconds."""
    path = tmp_path / "loop.heic"
    path.write_bytes(LOOPING_HEIC)
    res = run_bounded("--vault", vault, "add", "--json", path, timeout=FILE_TIMEOUT)
    _assert_clean_failure_or_success(res, path.name)
    (doc,) = [json.loads(line) for line in res.stdout.splitlines()]
    assert doc["status"] == "added" and doc["media_type"] == "image/heic"
    assert any("parse stopped" in e for e in doc["metadata_errors"]), doc
    assert res.seconds < 30


@st.composite
def hostile_bytes(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["truncated", "bitflip", "random", "header+random"]))
    if kind == "random":
        return draw(st.binary(min_size=0, max_size=4096))
    seed = draw(st.sampled_from(SEEDS)).read_bytes()[:262144]
    if kind == "truncated":
        return seed[: draw(st.integers(0, len(seed)))]
    if kind == "header+random":
        return seed[: draw(st.integers(1, 64))] + draw(st.binary(min_size=0, max_size=2048))
    data = bytearray(seed)
    for pos in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=16)):
        data[pos] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(hostile_bytes(), min_size=1, max_size=6))
def test_fuzzed_media_never_crash_or_hang(batch: list[bytes], vault: Path, tmp_path: Path) -> None:
    d = tmp_path
    files = []
    for data in batch:
        i = len(list(d.glob("fuzz-*")))
        f = d / f"fuzz-{i:05d}.bin"
        f.write_bytes(data)
        files.append(f)
    res = run_bounded("--vault", vault, "add", "--json", *files, timeout=FILE_TIMEOUT * len(files))
    _assert_clean_failure_or_success(res, "fuzzed batch")
    statuses = {json.loads(line)["status"] for line in res.stdout.splitlines()}
    assert statuses <= {"added", "duplicate"}, res.stdout
    assert res.max_rss_mb < RSS_LIMIT_MB


# -- corruption of a valid vault ------------------------------------------------------------------


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, dict[str, Any]]]:
    """A filled vault made once (its own home), for copying per example."""
    home = tmp_path_factory.mktemp("corrupt-home")
    root = tmp_path_factory.mktemp("corrupt")
    env = {**os.environ, "EVIDENCE_VAULT_HOME": str(home), "EVIDENCE_VAULT_PASSPHRASE": "pw"}
    cmd = _command()
    subprocess.run([*cmd, "key", "new", "--name", "Fuzz"], env=env, check=True, capture_output=True)
    subprocess.run([*cmd, "init", root / "vault"], env=env, check=True, capture_output=True)
    subprocess.run(
        [*cmd, "--vault", root / "vault", "add", *SAMPLE_FILES[:3]], env=env, check=True, capture_output=True
    )
    lines = (root / "vault" / "log.jsonl").read_bytes().splitlines()
    items = [json.loads(x)["data"]["item"] for x in lines if json.loads(x)["type"] == "item.ingested"]
    fp = json.loads(lines[0])["actor"]
    yield root / "vault", home, {"items": items, "fp": fp, "lines": len(lines)}


def _verify(copy: Path, home: Path, fp: str) -> tuple[int, dict[str, Any]]:
    from evidence_vault.vault import Vault
    from evidence_vault.verify import verify_vault

    # In-process (fast) and through the CLI's exit-code mapping.
    v = Vault(copy)
    try:
        report = verify_vault(v, trusted=[fp], record_head=False)
    finally:
        v.close()
    return report.exit_code(), report.to_dict()


def _copy(src: Path, base: Path) -> Path:
    n = len(list(base.glob("copy-*")))
    dst = base / f"copy-{n:04d}"
    shutil.copytree(src, dst)
    return dst


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_flipped_byte_fails_and_names_the_part(
    data: st.DataObject, pristine: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    src, home, info = pristine
    copy = _copy(src, tmp_path)
    target = data.draw(st.sampled_from(["log", *info["items"], "metadata"]))
    if target == "log":
        raw = bytearray((copy / "log.jsonl").read_bytes())
        pos = data.draw(st.integers(0, len(raw) - 1))
        seq = raw[:pos].count(b"\n")
        expect: dict[str, Any] = {"seq": seq}
        path = copy / "log.jsonl"
    else:
        if target == "metadata":
            item = data.draw(st.sampled_from(info["items"]))
            line = next(
                json.loads(x)
                for x in (copy / "log.jsonl").read_bytes().splitlines()
                if json.loads(x)["data"].get("item") == item
            )
            path = object_path(copy, line["data"]["metadata"])
        else:
            item = target
            path = object_path(copy, item)
        raw = bytearray(path.read_bytes())
        pos = data.draw(st.integers(0, len(raw) - 1))
        expect = {"item": item}
    raw[pos] ^= 1 << data.draw(st.integers(0, 7))
    path.chmod(0o644)
    path.write_bytes(bytes(raw))
    code, report = _verify(copy, home, info["fp"])
    fails = [f for f in report["findings"] if f["level"] == "FAIL"]
    assert code == 1, f"flip at {path.name}:{pos} not detected: {report['findings']}"
    key, value = next(iter(expect.items()))
    assert any(f[key] == value for f in fails), f"no FAIL names {key}={value}: {fails}"


def test_clean_copy_never_fails(
    pristine: tuple[Path, Path, dict[str, Any]], tmp_path: Path, cli: Cli
) -> None:
    src, home, info = pristine
    copy = _copy(src, tmp_path)
    code, report = _verify(copy, home, info["fp"])
    assert code == 0 and report["outcome"] == "PASS", report["findings"]
    res = cli("--vault", copy, "verify", "--json", "--trust", info["fp"])
    assert res.code == 0 and not [f for f in res.json()["findings"] if f["level"] == "FAIL"]


def test_flipped_byte_through_the_cli_exits_1(
    pristine: tuple[Path, Path, dict[str, Any]], tmp_path: Path, cli: Cli
) -> None:
    src, _home, info = pristine
    copy = _copy(src, tmp_path)
    raw = bytearray((copy / "log.jsonl").read_bytes())
    lines = raw.split(b"\n")
    pos = len(lines[0]) + 1 + len(lines[1]) // 2
    raw[pos] ^= 0x04
    (copy / "log.jsonl").write_bytes(bytes(raw))
    res = cli("--vault", copy, "verify", "--json", "--trust", info["fp"])
    assert res.code == 1
    assert any(f["level"] == "FAIL" and f["seq"] == 1 for f in res.json()["findings"])


def test_parallel_malformed_batch_in_one_add(vault: Path) -> None:
    """All malformed files in one `add` (the worker pool path), bounded in time and memory."""
    files = sorted(p for p in MALFORMED.iterdir() if p.is_file())
    res = run_bounded("--vault", vault, "add", "--json", *files, timeout=120)
    _assert_clean_failure_or_success(res, "malformed batch")
    docs = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(docs) == len(files) and {d["status"] for d in docs} <= {"added", "duplicate"}
    assert res.max_rss_mb < RSS_LIMIT_MB


def test_signature_base64_malleability_is_a_fail(
    pristine: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    """Regression: changing unused low bits of the last base64 digit of ``sig`` decodes to the same
    signature; the line's bytes (and hash) change, so it must be a FAIL at that line, also for the
    last line, which no later ``prev`` covers."""
    src, home, info = pristine
    copy = _copy(src, tmp_path)
    lines = (copy / "log.jsonl").read_bytes().split(b"\n")
    last = json.loads(lines[-2])
    sig = last["sig"]
    body = sig.rstrip("=")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    assert len(body) < len(sig), "test needs a padded signature"
    twin = body[:-1] + alphabet[alphabet.index(body[-1]) ^ 1] + sig[len(body) :]
    import base64

    assert base64.b64decode(twin) == base64.b64decode(sig)
    lines[-2] = lines[-2].replace(sig.encode(), twin.encode())
    (copy / "log.jsonl").write_bytes(b"\n".join(lines))
    code, report = _verify(copy, home, info["fp"])
    assert code == 1
    assert any(f["level"] == "FAIL" and f["seq"] == info["lines"] - 1 for f in report["findings"])
