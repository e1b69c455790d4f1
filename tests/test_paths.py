"""Hostile and unusual paths given to `add`: control characters, Unicode normalization, long names,
undecodable bytes, symbolic links into and out of the vault, FIFOs, files that change while read."""

from __future__ import annotations

import json
import os
import threading
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from evidence_vault import hashing
from evidence_vault.objects import SMALL
from tests.conftest import Cli, CliResult, object_path


def _lines(res: CliResult) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.strip()]


def _docs(res: CliResult) -> list[dict[str, Any]]:
    return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]


def _events(vault: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (vault / "log.jsonl").read_bytes().splitlines()]


def test_control_characters_stay_on_one_line(cli: Cli, vault: Path, tmp_path: Path) -> None:
    names = ["new\nline.jpg", "tab\there.bin", "esc\x1b[31mred.bin", "bell\x07.bin", "cr\rreturn.bin"]
    paths = []
    for i, name in enumerate(names):
        p = tmp_path / name
        p.write_bytes(os.urandom(64) + bytes([i]))
        paths.append(p)
    res = cli("--vault", vault, "add", *paths)
    assert res.code == 0, res.stderr
    lines = _lines(res)
    assert len(lines) == len(names) + 1  # one line per item, then the summary
    assert all(line.startswith("added") for line in lines[:-1])
    assert "\x1b" not in res.stderr and "\x07" not in res.stderr and "\r" not in res.stderr
    assert any("new\\nline.jpg" in line for line in lines)
    # The exact names are kept (as committed metadata) and listed escaped.
    listing = cli("--vault", vault, "ls", "--json").json()
    assert sorted(i["name"] for i in listing) == sorted(names)
    ls_lines = _lines(cli("--vault", vault, "ls"))
    assert not any("\x1b" in line for line in ls_lines)
    check = cli("--vault", vault, "verify", "--json")
    assert check.code == 0 and check.json()["outcome"] == "PASS"


def test_nfc_and_nfd_names(cli: Cli, vault: Path, tmp_path: Path) -> None:
    nfc = unicodedata.normalize("NFC", "café.jpg")
    nfd = unicodedata.normalize("NFD", "café.jpg")
    assert nfc != nfd and os.fsencode(nfc) != os.fsencode(nfd)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / nfc).write_bytes(b"first content")
    (a / nfd).write_bytes(b"second content")
    (b / nfc).write_bytes(b"same content")
    (b / nfd).write_bytes(b"same content")
    assert len(os.listdir(a)) == 2
    res = cli("--vault", vault, "add", "--json", a / nfc, a / nfd)
    assert res.code == 0, res.stderr
    assert [d["status"] for d in _docs(res)] == ["added", "added"]
    res = cli("--vault", vault, "add", "--json", b / nfc, b / nfd)
    assert [d["status"] for d in _docs(res)] == ["added", "duplicate"]
    names = {i["name"] for i in cli("--vault", vault, "ls", "--json").json()}
    assert nfc in names and nfd in names  # kept as given, not normalized


def test_long_and_undecodable_names(cli: Cli, vault: Path, tmp_path: Path) -> None:
    long_name = "é" * 125 + "x.jpg"  # 250 + 5 = 255 bytes, the usual NAME_MAX
    assert len(os.fsencode(long_name)) == 255
    (tmp_path / long_name).write_bytes(os.urandom(100))
    raw = os.path.join(os.fsencode(tmp_path), b"bad-\xff\xfe-utf8.bin")
    with open(raw, "wb") as fh:
        fh.write(os.urandom(100))
    res = cli("--vault", vault, "add", tmp_path / long_name, os.fsdecode(raw))
    assert res.code == 0, res.stderr
    lines = _lines(res)
    assert len(lines) == 3
    assert "bad-\\xff\\xfe-utf8.bin" in res.stderr
    names = {i["name"] for i in cli("--vault", vault, "ls", "--json").json()}
    assert long_name in names
    assert cli("--vault", vault, "verify").code == 0


def test_symlinks_not_followed_by_default(cli: Cli, vault: Path, tmp_path: Path, filled_vault: Path) -> None:
    outside = tmp_path / "outside.bin"
    outside.write_bytes(os.urandom(200))
    link_out = tmp_path / "link-out.bin"
    link_out.symlink_to(outside)
    # A link pointing into the vault: at an original stored there (``vault`` is ``filled_vault``).
    first = json.loads(cli("--vault", vault, "ls", "--json").stdout)[0]["id"]
    stored = object_path(vault, first)
    link_in = tmp_path / "link-in.bin"
    link_in.symlink_to(stored)
    d = tmp_path / "tree"
    d.mkdir()
    (d / "real.bin").write_bytes(os.urandom(50))
    (d / "dirlink").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "hidden.bin").write_bytes(os.urandom(50))

    before = (vault / "log.jsonl").read_bytes()
    res = cli("--vault", vault, "add", "--json", link_out, link_in)
    assert res.code == 1, res.stderr  # named on the command line and not added
    assert [d["status"] for d in _docs(res)] == ["skipped", "skipped"]
    assert all("symbolic link" in d["message"] for d in _docs(res))
    assert (vault / "log.jsonl").read_bytes() == before
    res = cli("--vault", vault, "add", "--json", "-r", d)
    assert res.code == 0, res.stderr  # a link met while walking is reported, not an error
    statuses = {Path(x["path"]).name: x["status"] for x in _docs(res)}
    assert statuses == {"real.bin": "added", "dirlink": "skipped"}

    res = cli("--vault", vault, "add", "--json", "--follow-symlinks", link_out, link_in)
    assert res.code == 0, res.stderr
    # Followed: the outside file is new; the link into the vault leads to content it already holds.
    assert [d["status"] for d in _docs(res)] == ["added", "duplicate"]
    res = cli("--vault", vault, "add", "--json", "-r", "--follow-symlinks", d)
    statuses = {Path(x["path"]).name: x["status"] for x in _docs(res)}
    assert statuses == {"real.bin": "duplicate", "hidden.bin": "added"}
    assert cli("--vault", vault, "verify").code == 0


def test_vault_inside_the_tree_is_not_ingested(cli: Cli, identity: str, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "photo.bin").write_bytes(os.urandom(64))
    assert cli("init", tree / "v").code == 0
    res = cli("--vault", tree / "v", "add", "--json", "-r", tree)
    assert res.code == 0, res.stderr
    assert [Path(d["path"]).name for d in _docs(res)] == ["photo.bin"]


def test_fifo_is_skipped_without_hanging(run: Cli, vault: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    res = run("--vault", vault, "add", "--json", fifo, timeout=30)
    assert res.code == 1, res.stderr
    (doc,) = _docs(res)
    assert doc["status"] == "skipped" and "not a regular file" in doc["message"]
    assert (vault / "log.jsonl").read_bytes().count(b"\n") == 1


def test_file_grown_between_fstat_and_read(
    cli: Cli, vault: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "growing.bin"
    target.write_bytes(os.urandom(10_000))
    real = hashing.read_small

    def grow_then_read(src_fd: int, expected_size: int, name: str) -> bytes:
        with open(target, "ab") as fh:
            fh.write(b"appended while being ingested")
        return real(src_fd, expected_size, name)

    monkeypatch.setattr("evidence_vault.objects.read_small", grow_then_read)  # small files are read whole
    before = (vault / "log.jsonl").read_bytes()
    objects_before = sorted((vault / "objects").rglob("*"))
    res = cli("--vault", vault, "add", target)
    assert res.code == 1
    lines = _lines(res)
    assert len(lines) == 2 and lines[0].startswith("failed")
    assert "changed while being read" in lines[0] and "nothing recorded" in lines[0]
    assert (vault / "log.jsonl").read_bytes() == before
    leftovers = [p for p in sorted((vault / "objects").rglob("*")) if p not in objects_before and p.is_file()]
    assert leftovers == []


def test_file_appended_by_a_thread_during_a_chunked_read(
    cli: Cli, vault: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "live.bin"
    # Above SMALL, so it is streamed in chunks (smaller files are read whole: the test above covers them).
    target.write_bytes(os.urandom(SMALL + 256 * 1024))
    monkeypatch.setattr(hashing, "CHUNK", 512)  # many small reads: the writer gets in between
    stop = threading.Event()

    def writer() -> None:
        with open(target, "ab", buffering=0) as fh:
            while not stop.is_set():
                fh.write(b"x" * 64)

    t = threading.Thread(target=writer)
    t.start()
    try:
        before = (vault / "log.jsonl").read_bytes()
        res = cli("--vault", vault, "add", "--json", target)
    finally:
        stop.set()
        t.join()
    (doc,) = _docs(res)
    assert doc["status"] == "failed" and "changed while being read" in doc["message"], doc
    assert res.code == 1
    assert (vault / "log.jsonl").read_bytes() == before
