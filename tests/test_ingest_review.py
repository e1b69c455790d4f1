"""Regression tests for ingest defects found in review: what an interrupted or damaged add must not lose."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from evidence_vault.custody_log import CustodyLog
from evidence_vault.vault import Vault
from evidence_vault.verify import verify_vault
from tests.conftest import SAMPLE_FILES, Cli


def _ingest_lines(vault: Path) -> list[dict[str, Any]]:
    lines = (vault / "log.jsonl").read_bytes().splitlines()
    return [e for e in map(json.loads, lines) if e["type"] == "item.ingested"]


def test_interrupt_after_append_keeps_metadata_objects(
    cli: Cli, vault: Path, identity: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C arriving after the log append returned: the appended lines' metadata objects stay."""
    real_append = CustodyLog.append

    def append_then_interrupt(self: CustodyLog, *args: Any, **kwargs: Any) -> Any:
        real_append(self, *args, **kwargs)
        raise KeyboardInterrupt

    with monkeypatch.context() as m:  # not monkeypatch.undo(): that also undoes the test's home
        m.setattr(CustodyLog, "append", append_then_interrupt)
        res = cli("--vault", vault, "add", *SAMPLE_FILES[:2])
    assert res.code == 130, res.stderr
    ingested = _ingest_lines(vault)
    assert len(ingested) == 2
    v = Vault(vault)
    try:
        for event in ingested:
            assert v.objects.exists(event["data"]["metadata"].removeprefix("sha256:"))
        report = verify_vault(v, trusted=[identity], record_head=False)
    finally:
        v.close()
    assert report.outcome != "FAIL", [f.to_dict() for f in report.failures]


def test_refused_append_discards_metadata_objects(
    cli: Cli, vault: Path, identity: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing appended (interrupted before the append): the batch's metadata objects are removed."""

    def interrupt(self: CustodyLog, *args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(CustodyLog, "append", interrupt)
        res = cli("--vault", vault, "add", SAMPLE_FILES[0])
    assert res.code == 130, res.stderr
    assert _ingest_lines(vault) == []
    v = Vault(vault)
    try:
        stored = list(v.objects.list())
    finally:
        v.close()
    assert len(stored) == 1  # the original only (an orphan until a re-run adds it)


def _plant(vault: Path, content: bytes, stored: bytes) -> Path:
    """Put ``stored`` under the object name of ``content`` (a torn or tampered leftover), read-only."""
    hex_digest = hashlib.sha256(content).hexdigest()
    path = vault / "objects" / "sha256" / hex_digest[:2] / hex_digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(stored)
    path.chmod(0o444)
    return path


@pytest.mark.parametrize("size", [100, 5 << 20])  # read whole, and streamed
def test_same_size_damaged_orphan_is_replaced(
    cli: Cli, vault: Path, identity: str, tmp_path: Path, size: int
) -> None:
    """A leftover object of the right size but the wrong content, that no event names, is replaced by
    the fresh copy: `add` then reports "added" and `verify` passes."""
    content = os.urandom(size)
    src = tmp_path / "photo.bin"
    src.write_bytes(content)
    planted = _plant(vault, content, bytes(size))
    res = cli("--vault", vault, "add", src, "--json")
    assert res.code == 0, res.stderr
    assert res.json_lines()[0]["status"] == "added"
    assert planted.read_bytes() == content
    assert planted.stat().st_mode & 0o777 == 0o444
    verified = cli("--vault", vault, "verify", "--trust", identity)
    assert verified.code == 0, verified.stderr


def test_wrong_size_object_the_log_names_is_restored_and_said(
    cli: Cli, vault: Path, identity: str, tmp_path: Path
) -> None:
    """The log names the item, its stored copy has the wrong size: re-adding the file restores it and
    says so (not a plain "already in the vault")."""
    src = tmp_path / "photo.bin"
    src.write_bytes(b"evidence " * 100)
    assert cli("--vault", vault, "add", src).code == 0
    stored = _plant(vault, src.read_bytes(), b"cut")
    res = cli("--vault", vault, "add", src, "--json")
    assert res.code == 0, res.stderr
    (line,) = res.json_lines()
    assert line["status"] == "duplicate"
    assert "restored" in line["message"]
    assert stored.read_bytes() == src.read_bytes()
    human = cli("--vault", vault, "add", src)
    assert "restored" not in human.stderr  # intact now: a plain duplicate
    assert cli("--vault", vault, "verify", "--trust", identity).code == 0


def test_unstattable_path_fails_alone(cli: Cli, vault: Path, tmp_path: Path) -> None:
    """A named path that cannot even be stat'ed (ENAMETOOLONG; EACCES and EIO alike) is one failed
    line naming it; the other files are still added (exit 1, not an internal error)."""
    good = tmp_path / "good.bin"
    good.write_bytes(b"kept")
    long_name = str(tmp_path / ("x" * 300))
    res = cli("--vault", vault, "add", long_name, good, "--json")
    assert res.code == 1, res.stderr
    failed, added = res.json_lines()
    assert failed["status"] == "failed" and failed["path"] == long_name
    assert "too long" in failed["message"]
    assert added["status"] == "added"


BAD_TEXT = "case \udcff"  # what Python makes of the byte 0xff on a UTF-8 command line


def _state(vault: Path) -> tuple[bytes, list[Path]]:
    return (vault / "log.jsonl").read_bytes(), sorted((vault / "objects").rglob("*"))


@pytest.mark.parametrize(
    "args",
    [
        ["add", "{file}", "--note", BAD_TEXT],
        ["add", "{file}", "--source", BAD_TEXT],
        ["add", "{file}", "--captured-by", BAD_TEXT],
        ["add", "{file}", "--tag", "fine", "--tag", BAD_TEXT],
        ["annotate", "{item}", "--note", BAD_TEXT],
        ["annotate", "{item}", "--tag", BAD_TEXT],
        ["access", "{item}", "--purpose", BAD_TEXT],
        ["open", "{item}", "--purpose", BAD_TEXT],
        ["transfer", "{item}", "--to", "SHA256:x", "--reason", BAD_TEXT],
        ["derive", "{item}", "{file}", "--action", "redact", "--tool", BAD_TEXT],
        ["derive", "{item}", "{file}", "--action", "redact", "--tool", "t", "--note", BAD_TEXT],
        ["key", "revoke", "SHA256:x", "--reason", BAD_TEXT],
    ],
    ids=lambda a: "-".join(x for x in a if x.startswith("--") or x.isalpha())[:40],
)
def test_undecodable_text_option_is_a_usage_error(
    cli: Cli, filled_vault: Path, tmp_path: Path, args: list[str]
) -> None:
    """Free text that cannot be signed (not valid UTF-8): exit 2, one line naming the option, and
    nothing written (no event, no orphan object)."""
    new_file = tmp_path / "new.bin"
    new_file.write_bytes(b"not yet in the vault")
    item = str(SAMPLE_FILES[0])
    before = _state(filled_vault)
    argv = [a.format(file=new_file, item=item) for a in args]
    res = cli("--vault", filled_vault, *argv)
    assert res.code == 2, res.stderr
    option = next(a for a in reversed(args) if a.startswith("--"))
    assert res.stderr.strip().splitlines() == [
        f"evidence-vault: error: {option}: not valid UTF-8 text (undecodable bytes); give it as UTF-8"
    ]
    assert _state(filled_vault) == before


def test_undecodable_vault_or_key_name_is_a_usage_error(cli: Cli, identity: str, tmp_path: Path) -> None:
    res = cli("init", tmp_path / "v", "--name", BAD_TEXT)
    assert res.code == 2 and "--name: not valid UTF-8" in res.stderr
    assert not (tmp_path / "v").exists()
    res = cli("key", "new", "--name", BAD_TEXT)
    assert res.code == 2 and "--name: not valid UTF-8" in res.stderr


def test_sockets_and_fifos_are_skipped_not_failed(
    run: Cli, vault: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Met while walking a directory: skipped, exit 0 (a socket was a failed ENXIO open). Named on the
    command line: skipped, exit 1 (as cp does). Neither is opened, so a FIFO cannot block."""
    top = tmp_path / "card"
    top.mkdir()
    (top / "photo.bin").write_bytes(b"a photo")
    os.mkfifo(top / "fifo")
    monkeypatch.chdir(top)  # a relative name: AF_UNIX paths are short
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind("sock")
        res = run("--vault", vault, "add", "-r", top, "--json", timeout=60)
        assert res.code == 0, res.stderr
        by_name = {Path(r["path"]).name: r for r in res.json_lines()}
        assert by_name["photo.bin"]["status"] == "added"
        for name in ("fifo", "sock"):
            assert by_name[name]["status"] == "skipped"
            assert by_name[name]["message"] == "not a regular file"
        res = run("--vault", vault, "add", top / "sock", top / "fifo", "--json", timeout=60)
        assert res.code == 1, res.stderr
        assert [r["status"] for r in res.json_lines()] == ["skipped", "skipped"]
    finally:
        sock.close()


def test_media_type_falls_back_on_the_original_name(cli: Cli, vault: Path, tmp_path: Path) -> None:
    """Content with no known signature (an MP3 without an ID3 tag) is typed by the name it was given,
    not by its extension-less object name."""
    mp3 = tmp_path / "call.MP3"
    mp3.write_bytes(b"\xff\xfb\x90\x64" + bytes(400))  # an MPEG audio frame header, no ID3 tag
    res = cli("--vault", vault, "add", mp3, "--json")
    assert res.code == 0, res.stderr
    assert res.json_lines()[0]["media_type"] == "audio/mpeg"
    plain = tmp_path / "notes"
    plain.write_bytes(b"\xff\xfb\x90\x64" + bytes(401))
    assert cli("--vault", vault, "add", plain, "--json").json_lines()[0]["media_type"] == (
        "application/octet-stream"
    )


def test_json_paths_are_as_given(cli: Cli, vault: Path, tmp_path: Path) -> None:
    """`add --json` names each path exactly as given (pathlib would drop "./", "//" and a trailing "/");
    a file found in a directory: the directory as given joined with its relative path."""
    card = tmp_path / "card"
    (card / "sub").mkdir(parents=True)
    (card / "one.bin").write_bytes(b"one")
    (card / "sub" / "two.bin").write_bytes(b"two")
    res = cli(
        "--vault", vault, "add", "./card/one.bin", "card//sub/two.bin", "card/", "-r", "--json", cwd=tmp_path
    )
    assert res.code == 0, res.stderr
    assert [r["path"] for r in res.json_lines()] == [
        "./card/one.bin",
        "card//sub/two.bin",
        "card/one.bin",
        "card/sub/two.bin",
    ]
    res = cli("--vault", vault, "add", "./card/", "--json", cwd=tmp_path)
    assert res.code == 1  # a named directory without -r
    assert res.json_lines()[0]["path"] == "./card/"
