"""Bad input on the command line: a one-line error naming the file or option, a documented exit code."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SAMPLE_FILES, Cli


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


def test_find_a_fifo_is_refused_not_waited_on(run: Cli, filled_vault: Path, fifo: Path) -> None:
    res = run("--vault", filled_vault, "find", fifo, SAMPLE_FILES[0], timeout=30)
    assert res.code == 1
    assert f"{fifo}: cannot read: not a regular file" in res.stderr
    assert "in vault" in res.stderr


def test_derive_from_a_fifo_is_refused(
    run: Cli, filled_vault: Path, fifo: Path, items: Callable[[Path], list[dict[str, Any]]]
) -> None:
    original = items(filled_vault)[0]["id"]
    before = (filled_vault / "log.jsonl").read_bytes()
    res = run(
        "--vault", filled_vault, "derive", original, fifo, "--action", "redact", "--tool", "t", timeout=30
    )
    assert res.code == 2
    assert str(fifo) in _one_line(res.stderr)
    assert "not a regular file" in res.stderr
    assert (filled_vault / "log.jsonl").read_bytes() == before


def test_verify_proof_file_that_is_a_fifo(
    run: Cli, cli: Cli, filled_vault: Path, fifo: Path, tmp_path: Path
) -> None:
    assert cli("--vault", filled_vault, "checkpoint").code == 0
    proof = tmp_path / "proof"
    assert cli("--vault", filled_vault, "prove", SAMPLE_FILES[0], "--out", proof).code == 0
    res = run("verify-proof", proof, "--file", fifo, timeout=30)
    assert res.code == 2
    assert _one_line(res.stderr).endswith(f"{fifo}: not a regular file")


def test_key_import_of_a_fifo_is_refused(run: Cli, fifo: Path) -> None:
    res = run("key", "import", fifo, timeout=30)
    assert res.code == 2
    assert _one_line(res.stderr).endswith(f"{fifo}: cannot read: not a regular file")


def test_key_import_beside_a_pub_file_that_is_not_utf8(cli: Cli, identity: str, tmp_path: Path) -> None:
    backup = tmp_path / "backup.key"
    assert cli("key", "export", "--encrypted", backup).code == 0
    (tmp_path / "backup.key.pub").write_bytes(b"ssh-ed25519 AAAA comment \xff\xfe\n")
    res = cli("key", "import", backup, "--json", env={"EVIDENCE_VAULT_HOME": str(tmp_path / "new-home")})
    assert res.code == 0, res.stderr
    assert res.json()["fingerprint"] == identity


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_key_add_names_an_argument_that_is_neither_key_nor_file(
    cli: Cli, vault: Path, tmp_path: Path, kind: str
) -> None:
    arg = tmp_path / "alice.pub"
    if kind == "directory":
        arg.mkdir()
    before = (vault / "log.jsonl").read_bytes()
    res = cli("--vault", vault, "key", "add", arg)
    assert res.code == 2
    assert f"'{arg}' is neither an OpenSSH ssh-ed25519 public key line nor a readable file" in _one_line(
        res.stderr
    )
    assert (vault / "log.jsonl").read_bytes() == before


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--since", "notadate", "--since 'notadate': not a date (YYYY-MM-DD) or an ISO 8601 time"),
        ("--since", "2026-13-45", "--since '2026-13-45': not a date (YYYY-MM-DD) or an ISO 8601 time"),
        ("--since", "-5", "--since '-5': not a date (YYYY-MM-DD) or an ISO 8601 time"),
        ("--type", "foo", "--type 'foo': use one of image | video | audio"),
    ],
)
def test_ls_refuses_an_invalid_filter_instead_of_listing_nothing(
    cli: Cli, filled_vault: Path, option: str, value: str, message: str
) -> None:
    res = cli("--vault", filled_vault, "ls", option, value, "--json")
    assert res.code == 2
    assert message in _one_line(res.stderr)
    assert res.stdout == ""


def test_ls_since_takes_a_date_or_a_time_with_an_offset(cli: Cli, filled_vault: Path) -> None:
    def count(*args: str) -> int:
        res = cli("--vault", filled_vault, "ls", "--json", *args)
        assert res.code == 0, res.stderr
        return len(res.json())

    added = cli("--vault", filled_vault, "ls", "--json").json()[0]["added"]
    day = added[:10]
    assert count("--since", day) == 4
    assert count("--since", "9999-12-31") == 0
    # The first item's time written as a local time 14 hours ahead, with its offset: all four count.
    local = datetime.fromisoformat(added).astimezone(timezone(timedelta(hours=14)))
    assert count("--since", local.isoformat(timespec="milliseconds")) == 4
    assert count("--type", "image") == 3


def test_derive_from_a_directory_names_it(
    cli: Cli, filled_vault: Path, tmp_path: Path, items: Callable[[Path], list[dict[str, Any]]]
) -> None:
    original = items(filled_vault)[0]["id"]
    copy = tmp_path / "copy"
    copy.mkdir()
    res = cli("--vault", filled_vault, "derive", original, copy, "--action", "redact", "--tool", "t")
    assert res.code == 2
    assert _one_line(res.stderr).endswith(f"{copy}: Is a directory")


def test_timeline_refuses_an_unknown_format(cli: Cli, filled_vault: Path) -> None:
    res = cli("--vault", filled_vault, "timeline", SAMPLE_FILES[0], "--format", "html")
    assert res.code == 2
    assert "unknown --format 'html': use one of text, json, markdown" in _one_line(res.stderr)
    assert res.stdout == ""


@pytest.mark.parametrize("command", ["stamp", "upgrade"])
@pytest.mark.parametrize("value", ["-1", "0", "nan"])
def test_stamp_and_upgrade_refuse_a_timeout_no_request_could_use(
    cli: Cli, filled_vault: Path, command: str, value: str
) -> None:
    before = (filled_vault / "log.jsonl").read_bytes()
    args = ["--calendar", "http://127.0.0.1:9"] if command == "stamp" else []
    res = cli("--vault", filled_vault, command, "--timeout", value, *args)
    assert res.code == 2
    assert f"--timeout {float(value)}: give a positive number of seconds" in _one_line(res.stderr)
    assert (filled_vault / "log.jsonl").read_bytes() == before
    assert not (filled_vault / "checkpoints" / "queue.json").exists()


@pytest.mark.parametrize(
    ("kind", "message"),
    [("random", "not JSON: not UTF-8 text (byte 0)"), ("directory", "cannot read: Is a directory")],
)
def test_upgrade_headers_that_are_not_a_json_file(
    cli: Cli, vault: Path, tmp_path: Path, kind: str, message: str
) -> None:
    headers = tmp_path / "headers.json"
    if kind == "directory":
        headers.mkdir()
    else:
        headers.write_bytes(b"\xa0\x01\xff" * 50)
    res = cli("--vault", vault, "upgrade", "--headers", headers)
    assert res.code == 2
    assert _one_line(res.stderr).endswith(f"{headers}: {message}")


def test_a_passphrase_that_is_not_utf8_unlocks_instead_of_crashing(cli: Cli, tmp_path: Path) -> None:
    secret = tmp_path / "passphrase"
    secret.write_bytes(b"\xff\xfe not utf-8\n")
    res = cli("--passphrase-file", secret, "key", "new", "--name", "Bytes", "--json")
    assert res.code == 0, res.stderr
    assert cli("--passphrase-file", secret, "init", tmp_path / "v1").code == 0
    # The same bytes in the variable (as the shell hands them over) unlock it too; others do not.
    env = {"EVIDENCE_VAULT_PASSPHRASE": b"\xff\xfe not utf-8".decode("utf-8", "surrogateescape")}
    assert cli("init", tmp_path / "v2", env=env).code == 0
    wrong = cli("init", tmp_path / "v3", env={"EVIDENCE_VAULT_PASSPHRASE": "\udcff"})
    assert wrong.code == 2
    assert "wrong passphrase" in _one_line(wrong.stderr)


def test_export_with_a_tag_no_item_has_says_so(cli: Cli, filled_vault: Path, tmp_path: Path) -> None:
    before = (filled_vault / "log.jsonl").read_bytes()
    res = cli("--vault", filled_vault, "export", "--tag", "nosuch", "--out", tmp_path / "bag")
    assert res.code == 2
    assert "nothing to export: no item has the tag 'nosuch'" in _one_line(res.stderr)
    assert not (tmp_path / "bag").exists()
    assert (filled_vault / "log.jsonl").read_bytes() == before


@pytest.mark.parametrize("value", ["", " "])
@pytest.mark.parametrize(
    "args", [("ls",), ("ls", "--json"), ("export", "--all"), ("export",), ("export", "ITEM")], ids=" ".join
)
def test_an_empty_tag_filter_is_a_usage_error(
    cli: Cli,
    filled_vault: Path,
    tmp_path: Path,
    items: Callable[[Path], list[dict[str, Any]]],
    args: tuple[str, ...],
    value: str,
) -> None:
    """`ls --tag ""` listed "0 items" (exit 0) and `export --all --tag ""` said "give item ids, --all or
    --tag": an empty --tag is a usage error (exit 2) everywhere, as for add and annotate."""
    item = items(filled_vault)[0]["id"][7:19]
    args = tuple(item if a == "ITEM" else a for a in args)
    out = ("--out", tmp_path / "bag") if args[0] == "export" else ()
    before = (filled_vault / "log.jsonl").read_bytes()
    res = cli("--vault", filled_vault, *args, "--tag", value, *out)
    assert res.code == 2, (res.stdout, res.stderr)
    assert res.stdout == "" and "--tag: empty" in _one_line(res.stderr)
    assert not (tmp_path / "bag").exists() and (filled_vault / "log.jsonl").read_bytes() == before


def test_export_all_of_an_empty_vault_does_not_ask_for_all(cli: Cli, vault: Path, tmp_path: Path) -> None:
    res = cli("--vault", vault, "export", "--all", "--out", tmp_path / "bag")
    assert res.code == 2
    line = _one_line(res.stderr)
    assert "nothing to export: the vault holds no items yet" in line and "--all" not in line
    res = cli("--vault", vault, "report")
    assert res.code == 2 and "nothing to report on: the vault holds no items yet" in _one_line(res.stderr)


@pytest.mark.parametrize(("option", "value"), [("--name", "Alice\nEvil"), ("--email", "a@b\r\nc")])
def test_key_new_refuses_a_line_break_that_would_split_the_public_key_line(
    cli: Cli, home: Path, option: str, value: str
) -> None:
    args = ["--name", "Alice"] if option == "--email" else []
    res = cli("key", "new", option, value, *args)
    assert res.code == 2
    assert f"{option} {value!r}: no line breaks or control characters" in _one_line(res.stderr)
    assert not list(home.glob("identities/*.pub"))


def test_key_rotate_refuses_a_line_break_in_the_name_before_the_log_names_the_new_key(
    cli: Cli, vault: Path, home: Path
) -> None:
    before = (vault / "log.jsonl").read_bytes()
    keys = sorted(home.glob("identities/*"))
    res = cli("--vault", vault, "key", "rotate", "--name", "New\nKey")
    assert res.code == 2
    assert "--name 'New\\nKey': no line breaks or control characters" in _one_line(res.stderr)
    assert (vault / "log.jsonl").read_bytes() == before
    assert sorted(home.glob("identities/*")) == keys


@pytest.mark.parametrize("command", ["verify", "verify-bundle", "verify-proof", "import"])
def test_a_malformed_trust_value_is_a_usage_error(
    cli: Cli, filled_vault: Path, tmp_path: Path, command: str
) -> None:
    """A typo in --trust is the caller's mistake (exit 2), not a failed verification (exit 1)."""
    target = {"verify": [], "verify-bundle": [tmp_path], "verify-proof": [tmp_path], "import": [tmp_path]}
    res = cli("--vault", filled_vault, command, *target[command], "--trust", "SHA256:nope")
    assert res.code == 2, res.stderr
    line = _one_line(res.stderr)
    assert "--trust 'SHA256:nope' is not a key fingerprint" in line and "43 base64" in line


def test_a_fingerprint_is_accepted_with_or_without_its_prefix(
    cli: Cli, filled_vault: Path, identity: str
) -> None:
    """... and with base64's `=` padding (what a base64 tool prints for the 32-byte digest), which the
    check of --trust accepted before verify matched it (it matched no key: a false trust failure)."""
    body = identity.removeprefix("SHA256:")
    for given in (identity, body, f" {identity} ", identity + "=", body + "="):
        res = cli("--vault", filled_vault, "verify", "--trust", given, "--json")
        assert res.code == 0, (given, res.stderr)
        assert res.json()["genesis_pinned"] is True, given
    other = "SHA256:" + "A" * 43  # well formed, not this vault's key: a failed verification
    assert cli("--vault", filled_vault, "verify", "--trust", other).code == 1


def test_verify_json_and_another_format_is_a_usage_error(cli: Cli, filled_vault: Path) -> None:
    res = cli("--vault", filled_vault, "verify", "--json", "--format", "junit")
    assert res.code == 2 and res.stdout == ""
    assert "--json and --format junit ask for two formats" in _one_line(res.stderr)
    res = cli("--vault", filled_vault, "verify", "--json", "--format", "json")
    assert res.code == 0 and res.json()["outcome"] in ("PASS", "WARN")


def test_verify_proof_of_no_directory_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    """No proof at all is a mistake in the command (exit 2); a directory with a broken proof is a
    failed verification (exit 1)."""
    res = cli("verify-proof", tmp_path / "nosuch")
    assert res.code == 2 and f"{tmp_path / 'nosuch'}: no such directory" in _one_line(res.stderr)
    (tmp_path / "file").write_text("x")
    res = cli("verify-proof", tmp_path / "file")
    assert res.code == 2 and "not a directory" in _one_line(res.stderr)
    empty = tmp_path / "empty"
    empty.mkdir()
    res = cli("verify-proof", empty)
    assert res.code == 1 and "proof.missing-file" in res.stderr


def test_empty_texts_that_would_be_signed_are_refused(
    cli: Cli, filled_vault: Path, identity: str, items: Callable[[Path], list[dict[str, Any]]]
) -> None:
    """An empty tag, purpose, reason or tool records nothing anyone can use: refused before signing."""
    item = items(filled_vault)[0]["id"][7:19]
    log = (filled_vault / "log.jsonl").read_bytes()
    cases = [
        (("add", SAMPLE_FILES[0], "--tag", "court", "--tag", " "), "--tag: empty"),
        (("access", item, "--purpose", ""), "--purpose: empty"),
        (("open", item, "--purpose", "  "), "--purpose: empty"),
        (("key", "revoke", identity, "--reason", ""), "--reason: empty"),
        (("derive", item, SAMPLE_FILES[1], "--action", "crop", "--tool", ""), "--tool: empty"),
    ]
    for args, said in cases:
        res = cli("--vault", filled_vault, *args)
        assert res.code == 2, (args, res.stderr)
        assert said in _one_line(res.stderr), args
    assert (filled_vault / "log.jsonl").read_bytes() == log, "nothing recorded"


@pytest.mark.parametrize("command", ["export", "prove"])
def test_an_out_path_in_a_missing_folder_is_refused(
    cli: Cli, filled_vault: Path, tmp_path: Path, command: str
) -> None:
    """`export --out` and `prove --out` into a folder that does not exist (a typo, a USB disk not mounted):
    one line naming the folder, exit 2, and no folder made (evidence is not written somewhere unmeant)."""
    assert cli("--vault", filled_vault, "checkpoint").code == 0
    missing = tmp_path / "usb" / "case"
    args = {"export": ["export", "--all"], "prove": ["prove", SAMPLE_FILES[0]]}[command]
    res = cli("--vault", filled_vault, *args, "--out", missing / "out")
    assert res.code == 2, res.stderr
    line = _one_line(res.stderr)
    assert str(missing) in line and "destination folder does not exist" in line
    assert not (tmp_path / "usb").exists()


def _vault_files(vault: Path) -> dict[str, bytes]:
    return {
        p.relative_to(vault).as_posix(): p.read_bytes()
        for p in sorted(vault.rglob("*"))
        if p.is_file() and not p.is_symlink() and "cache" not in p.parts and p.name != ".lock"
    }


@pytest.mark.parametrize(
    "args",
    [
        ("report", "--out", "log.jsonl"),
        ("report", "--out", "vault.json"),
        ("report", "--out", "objects/report.html"),
        ("verify", "--format", "junit", "--output", "log.jsonl"),
        ("prove", SAMPLE_FILES[0], "--out", "checkpoints/proof"),
        ("prove", SAMPLE_FILES[0]),  # the default, proof-ID in the current directory: the vault
        ("export", "--all", "--out", "keys/bag"),
        ("export", "--all", "--zip", "--out", "bag.zip"),
        ("key", "export", "--encrypted", "backup.key"),
    ],
    ids=lambda a: " ".join(str(x) for x in a if not isinstance(x, Path)),
)
def test_an_output_path_inside_the_vault_is_refused(
    cli: Cli, filled_vault: Path, args: tuple[str | Path, ...]
) -> None:
    """Run from inside the vault, as the quickstart leaves you (`cd` into it): no command writes a
    report, proof, bag or key backup there (`report --out log.jsonl` overwrote the custody log)."""
    assert cli("--vault", filled_vault, "checkpoint").code == 0
    before = _vault_files(filled_vault)
    names = sorted(p.name for p in filled_vault.iterdir())
    res = cli(*args, cwd=filled_vault)
    assert res.code == 2, res.stderr
    assert "is inside the vault" in _one_line(res.stderr)
    assert _vault_files(filled_vault) == before, "nothing in the vault was written"
    assert sorted(p.name for p in filled_vault.iterdir()) == names
    assert cli("--vault", filled_vault, "verify").code == 0


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_report_out_through_a_link_to_the_log_is_refused(
    cli: Cli, filled_vault: Path, tmp_path: Path, link: str
) -> None:
    log = filled_vault / "log.jsonl"
    before = log.read_bytes()
    alias = tmp_path / "report.html"
    alias.symlink_to(log) if link == "symlink" else alias.hardlink_to(log)
    res = cli("--vault", filled_vault, "report", "--out", alias)
    assert res.code == 2, res.stderr
    line = _one_line(res.stderr)
    assert str(alias) in line and ("inside the vault" in line or "log.jsonl under another name" in line)
    assert log.read_bytes() == before
    # A path outside the vault is still written.
    res = cli("--vault", filled_vault, "report", "--out", tmp_path / "ok.html")
    assert res.code == 0 and (tmp_path / "ok.html").read_text().startswith("<!DOCTYPE html>")


def test_open_of_a_missing_original_records_no_access(
    cli: Cli,
    filled_vault: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    items: Callable[[Path], list[dict[str, Any]]],
) -> None:
    """`open` signed an `item.accessed` event and then failed on ENOENT: an access that did not happen was
    recorded. Now the copy comes first: one line naming the missing object, exit 2, nothing recorded,
    no empty working-copy folder left behind."""
    import tempfile

    from tests.conftest import object_path

    item = items(filled_vault)[0]["id"]
    obj = object_path(filled_vault, item)
    obj.parent.chmod(0o755)
    obj.unlink()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    log = (filled_vault / "log.jsonl").read_bytes()
    res = cli("--vault", filled_vault, "open", item[7:19])
    assert res.code == 2, res.stderr
    line = _one_line(res.stderr)
    assert f"{obj}: the original of item {item} is missing from the object store" in line
    assert "nothing recorded" in line and "No such file" not in line
    assert (filled_vault / "log.jsonl").read_bytes() == log
    assert list(scratch.iterdir()) == []


def test_key_export_to_a_missing_folder_or_a_directory_is_refused(
    cli: Cli, identity: str, tmp_path: Path
) -> None:
    """`key export --encrypted` made the missing folders of its path (exit 0), where `export --out` and
    `prove --out` refuse; and a directory was called "file exists"."""
    missing = tmp_path / "usb" / "keys"
    res = cli("key", "export", "--encrypted", missing / "backup.key")
    assert res.code == 2, res.stderr
    line = _one_line(res.stderr)
    assert f"{missing}: destination folder does not exist" in line
    assert not (tmp_path / "usb").exists()
    folder = tmp_path / "backups"
    folder.mkdir()
    res = cli("key", "export", "--encrypted", folder)
    assert res.code == 2, res.stderr
    assert f"{folder}: is a directory" in _one_line(res.stderr)
    assert list(folder.iterdir()) == []
    assert cli("key", "export", "--encrypted", folder / "backup.key").code == 0
    res = cli("key", "export", "--encrypted", folder / "backup.key")
    assert res.code == 2 and "file exists; will not overwrite a key file" in _one_line(res.stderr)


def test_export_of_a_missing_original_names_the_item(
    cli: Cli, filled_vault: Path, tmp_path: Path, items: Callable[[Path], list[dict[str, Any]]]
) -> None:
    """export stopped on a bare "No such file or directory": one line names the item, nothing written."""
    from tests.conftest import object_path

    item = items(filled_vault)[0]["id"]
    obj = object_path(filled_vault, item)
    obj.parent.chmod(0o755)
    obj.unlink()
    log = (filled_vault / "log.jsonl").read_bytes()
    res = cli("--vault", filled_vault, "export", item[7:19], "--out", tmp_path / "bag")
    assert res.code == 2, res.stderr
    line = _one_line(res.stderr)
    assert f"the original of item {item} is missing from the object store" in line
    assert "No such file" not in line
    assert (filled_vault / "log.jsonl").read_bytes() == log and not (tmp_path / "bag").exists()
