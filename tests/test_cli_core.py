"""End to end through the CLI on real corpus files: keys, init, add, ls, show, log, verify, doctor."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from evidence_vault import __version__
from tests.conftest import SAMPLE_FILES, Cli, object_path
from tests.paths import CORPUS

IPHONE = CORPUS / "images" / "Apple iPhone 4.jpg"
SAMSUNG = CORPUS / "images" / "Samsung GT-I9000 (Galaxy S).jpg"
MOV = CORPUS / "video" / "with-gps.mov"
CANON = CORPUS / "images" / "Canon_40D.jpg"
NON_ASCII = "Zeugenaussage_Ärztin_вход.jpg"


def sha256_of(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def expected_sha(rel: str) -> str:
    facts = json.loads((CORPUS / "expected.json").read_text("utf-8"))
    return "sha256:" + str(facts[rel]["sha256"])


def one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_version(cli: Cli, run: Cli) -> None:
    for runner in (cli, run):
        res = runner("--version")
        assert res.code == 0
        assert res.stdout.strip() == f"evidence-vault {__version__}"


def test_full_workflow(
    cli: Cli, identity: str, tmp_path: Path, log_lines: Callable[[Path], list[bytes]]
) -> None:
    vault = tmp_path / "v"
    res = cli("init", vault, "--json")
    assert res.code == 0, res.stderr
    init = res.json()
    assert init["genesis_key"] == identity
    assert init["path"] == str(vault.resolve())

    renamed = tmp_path / NON_ASCII
    shutil.copyfile(CANON, renamed)
    res = cli(
        "--vault",
        vault,
        "add",
        "--json",
        "--tag",
        "case-17",
        "--tag",
        "injury",
        "--note",
        "left arm",
        "--source",
        "phone of witness",
        "--captured-by",
        "Dr. Ärztin",
        IPHONE,
        SAMSUNG,
        MOV,
        renamed,
    )
    assert res.code == 0, res.stderr
    lines = res.json_lines()
    assert [r["status"] for r in lines] == ["added"] * 4
    by_path = {r["path"]: r for r in lines}
    assert by_path[str(IPHONE)]["id"] == expected_sha("images/Apple iPhone 4.jpg")
    assert by_path[str(SAMSUNG)]["id"] == expected_sha("images/Samsung GT-I9000 (Galaxy S).jpg")
    assert by_path[str(MOV)]["id"] == expected_sha("video/with-gps.mov")
    assert by_path[str(MOV)]["media_type"] == "video/quicktime"
    assert by_path[str(renamed)]["id"] == sha256_of(CANON)
    assert sorted(r["seq"] for r in lines) == [1, 2, 3, 4]
    # Originals are stored byte-identical and read-only.
    stored = object_path(vault, by_path[str(IPHONE)]["id"])
    assert stored.read_bytes() == IPHONE.read_bytes()
    assert stored.stat().st_mode & 0o222 == 0

    # A second add of the same content records nothing.
    before = log_lines(vault)
    res = cli("--vault", vault, "add", "--json", IPHONE)
    assert res.code == 0, res.stderr
    (dup,) = res.json_lines()
    assert dup["status"] == "duplicate" and dup["seq"] is None
    assert "already" in dup["message"]
    assert log_lines(vault) == before
    res = cli("--vault", vault, "add", IPHONE)
    assert res.code == 0 and "already" in res.stderr
    assert log_lines(vault) == before

    # ls
    res = cli("--vault", vault, "ls", "--json")
    assert res.code == 0, res.stderr
    listing = {i["id"]: i for i in res.json()}
    assert len(listing) == 4
    assert listing[sha256_of(CANON)]["name"] == NON_ASCII
    assert listing[expected_sha("images/Apple iPhone 4.jpg")]["name"] == "Apple iPhone 4.jpg"
    assert all(i["tags"] == ["case-17", "injury"] for i in listing.values())
    res = cli("--vault", vault, "ls", "--json", "--tag", "nope")
    assert res.code == 0 and res.json() == []

    # show by id prefix and by path give the same item; metadata normalized, GPS as strings
    iphone_id = expected_sha("images/Apple iPhone 4.jpg")
    res = cli("--vault", vault, "show", "--json", iphone_id.removeprefix("sha256:")[:10])
    assert res.code == 0, res.stderr
    shown = res.json()
    assert shown["id"] == iphone_id
    meta = shown["metadata"]
    assert meta["make"] == "Apple" and meta["model"] == "iPhone 4"
    assert (meta["width"], meta["height"]) == (1296, 968)
    assert meta["gps_lat"] == "41.853000" and isinstance(meta["gps_lon"], str)
    assert meta["note"] == "left arm" and meta["source"] == "phone of witness"
    assert meta["captured_by"] == "Dr. Ärztin"
    assert meta["original_name"] == "Apple iPhone 4.jpg"
    assert shown["withheld_fields"] == []
    assert [e["type"] for e in shown["events"]] == ["item.ingested"]
    res = cli("--vault", vault, "show", "--json", renamed)
    assert res.code == 0, res.stderr
    assert res.json()["id"] == sha256_of(CANON)
    assert res.json()["metadata"]["original_name"] == NON_ASCII
    res = cli("--vault", vault, "show", iphone_id)
    assert res.code == 0 and iphone_id in res.stderr

    # log --item
    res = cli("--vault", vault, "log", "--json", "--item", str(MOV))
    assert res.code == 0, res.stderr
    (event,) = res.json_lines()
    assert event["type"] == "item.ingested" and event["data"]["item"] == expected_sha("video/with-gps.mov")
    res = cli("--vault", vault, "log", "--json")
    assert [e["seq"] for e in res.json_lines()] == [0, 1, 2, 3, 4]

    # verify, with the genesis key trusted explicitly
    res = cli("--vault", vault, "verify", "--json", "--trust", identity)
    assert res.code == 0, res.stdout
    report = res.json()
    assert report["outcome"] == "PASS"
    assert report["findings"] == []
    assert report["stats"]["items"] == 4 and report["stats"]["events"] == 5
    res = cli("--vault", vault, "verify", "--strict")
    assert res.code == 0, res.stderr
    assert "PASS" in res.stderr


def test_show_unknown_item_is_usage_error(cli: Cli, filled_vault: Path) -> None:
    res = cli("--vault", filled_vault, "show", "deadbeefdeadbeef")
    assert res.code == 2
    assert "no item" in one_error_line(res.stderr)


def test_directory_needs_recursive(
    cli: Cli, vault: Path, tmp_path: Path, items: Callable[[Path], list[Any]]
) -> None:
    folder = tmp_path / "incoming"
    (folder / "sub").mkdir(parents=True)
    shutil.copyfile(IPHONE, folder / "a.jpg")
    shutil.copyfile(MOV, folder / "sub" / "b.mov")
    res = cli("--vault", vault, "add", "--json", folder)
    assert res.code == 1, res.stderr  # a named path not added: as `cp dir dest` without -r
    (skip,) = res.json_lines()
    assert skip["status"] == "skipped" and "--recursive" in skip["message"]
    assert items(vault) == []
    res = cli("--vault", vault, "add", folder, IPHONE)
    assert res.code == 1 and "is a directory (use --recursive)" in res.stderr
    assert "1 added, 0 already present, 0 failed, 1 skipped" in res.stderr

    res = cli("--vault", vault, "add", "--json", "--recursive", folder)
    assert res.code == 0, res.stderr
    statuses = {Path(r["path"]).name: r["status"] for r in res.json_lines()}
    assert statuses == {"a.jpg": "duplicate", "b.mov": "added"}
    assert {i["name"] for i in items(vault)} == {IPHONE.name, "b.mov"}


def test_unreadable_inputs_fail_at_the_end_others_ingested(
    cli: Cli, vault: Path, tmp_path: Path, items: Callable[[Path], list[Any]]
) -> None:
    missing = tmp_path / "does-not-exist.jpg"
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    dangling = tmp_path / "dangling.jpg"
    dangling.symlink_to(tmp_path / "gone")
    res = cli("--vault", vault, "add", "--json", missing, IPHONE, fifo, dangling, "--follow-symlinks", MOV)
    assert res.code == 1, res.stderr
    status = {r["path"]: r for r in res.json_lines()}
    assert status[str(IPHONE)]["status"] == "added"
    assert status[str(MOV)]["status"] == "added"
    assert status[str(missing)]["status"] == "failed"
    assert "No such file" in status[str(missing)]["message"]
    assert status[str(dangling)]["status"] == "failed"
    assert status[str(fifo)]["status"] in ("skipped", "failed")
    assert len(items(vault)) == 2
    res = cli("--vault", vault, "verify", "--json")
    assert res.code == 0 and res.json()["findings"] == []


def test_unreadable_input_human_output(cli: Cli, vault: Path, tmp_path: Path) -> None:
    res = cli("--vault", vault, "add", tmp_path / "nope.jpg", SAMSUNG)
    assert res.code == 1
    assert "nope.jpg" in res.stderr and "1 added" in res.stderr and "1 failed" in res.stderr
    assert "Traceback" not in res.stderr


def test_doctor_clean_vault(cli: Cli, filled_vault: Path) -> None:
    res = cli("--vault", filled_vault, "doctor", "--json")
    assert res.code == 0, res.stderr
    assert res.json() == {
        "healthy": True,
        "torn_bytes": 0,
        "torn_complete": False,
        "torn_saved_to": None,
        "temp_files": [],
        "unsound_lines": [],
        "log_problem": None,
        "repaired": False,
    }
    res = cli("--vault", filled_vault, "doctor")
    assert res.code == 0 and "nothing to repair" in res.stderr


def test_doctor_repairs_torn_last_line(
    cli: Cli, filled_vault: Path, identity: str, log_lines: Callable[[Path], list[bytes]]
) -> None:
    log = filled_vault / "log.jsonl"
    complete = log.read_bytes()
    garbage = b'{"actor":"SHA256:torn","data":{"item":"sha'
    with open(log, "ab") as fh:
        fh.write(garbage)

    res = cli("--vault", filled_vault, "verify", "--json", "--trust", identity)
    assert res.code == 1
    codes = {(f["code"], f["subject"]) for f in res.json()["findings"]}
    assert ("log.torn-line", "log.jsonl line 6") in codes
    res = cli("--vault", filled_vault, "add", MOV.with_name("with-gps.mp4"))
    # The tool cannot do its job until the log is repaired: exit 2, and nothing is stored.
    assert res.code == 2 and "doctor --repair" in one_error_line(res.stderr)

    res = cli("--vault", filled_vault, "doctor", "--json")
    assert res.code == 1
    assert res.json()["torn_bytes"] == len(garbage) and res.json()["healthy"] is False
    assert log.read_bytes() == complete + garbage  # doctor without --repair changes nothing

    res = cli("--vault", filled_vault, "doctor", "--repair", "--json")
    assert res.code == 0, res.stderr
    saved = Path(res.json()["torn_saved_to"])
    assert saved.parent == filled_vault / "quarantine"
    assert saved.read_bytes() == garbage
    assert log.read_bytes() == complete

    res = cli("--vault", filled_vault, "verify", "--json", "--trust", identity)
    assert res.code == 0, res.stdout
    # The refused add stored nothing: no orphan objects either.
    assert res.json()["findings"] == []


def test_vault_discovery(cli: Cli, run: Cli, filled_vault: Path, tmp_path: Path) -> None:
    sub = filled_vault / "deep" / "er"
    sub.mkdir(parents=True)
    res = cli("ls", "--json", cwd=sub)
    assert res.code == 0, res.stderr
    assert len(res.json()) == len(SAMPLE_FILES)
    res = run("ls", "--json", cwd=sub)
    assert res.code == 0, res.stderr
    assert len(res.json()) == len(SAMPLE_FILES)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = run("ls", "--json", cwd=elsewhere, env={"EVIDENCE_VAULT": str(filled_vault)})
    assert res.code == 0, res.stderr
    assert len(res.json()) == len(SAMPLE_FILES)
    res = cli("ls", "--json", cwd=elsewhere, env={"EVIDENCE_VAULT": str(filled_vault)})
    assert res.code == 0 and len(res.json()) == len(SAMPLE_FILES)


def test_missing_vault_exit_2(cli: Cli, run: Cli, identity: str, tmp_path: Path) -> None:
    res = run("ls", cwd=tmp_path)
    assert res.code == 2
    assert "no vault" in one_error_line(res.stderr)
    res = run("--vault", tmp_path / "nowhere", "verify")
    assert res.code == 2
    assert "nowhere" in one_error_line(res.stderr)


def test_wrong_passphrase_exit_2(run: Cli, cli: Cli, vault: Path) -> None:
    res = run("--vault", vault, "add", IPHONE, env={"EVIDENCE_VAULT_PASSPHRASE": "wrong"})
    assert res.code == 2
    assert "passphrase" in one_error_line(res.stderr)
    assert cli("--vault", vault, "ls", "--json").json() == []


def test_no_identity_exit_2(run: Cli, tmp_path: Path) -> None:
    res = run("init", tmp_path / "v")
    assert res.code == 2
    assert "no identity" in one_error_line(res.stderr)
    assert not (tmp_path / "v" / "vault.json").exists()


def test_no_identity_on_add_exit_2(run: Cli, filled_vault: Path, tmp_path: Path) -> None:
    other_home = tmp_path / "other-home"
    res = run(
        "--vault",
        filled_vault,
        "add",
        MOV.with_name("with-gps.mp4"),
        env={"EVIDENCE_VAULT_HOME": str(other_home)},
    )
    assert res.code == 2
    assert "no identity" in one_error_line(res.stderr)


def test_index_rebuilt_from_the_log_equals_the_one_kept_current(cli: Cli, filled_vault: Path) -> None:
    """The index cache is derived data: deleted, it is rebuilt from the log (item events written in
    batches) with exactly what the commands had kept current, event by event."""
    items = cli("--vault", filled_vault, "ls", "--json").json()
    first = items[0]["id"][7:19]
    assert cli("--vault", filled_vault, "annotate", first, "--tag", "scene", "--note", "n").code == 0
    assert cli("--vault", filled_vault, "access", first, "--purpose", "review").code == 0
    views = [("ls", "--json"), ("ls", "--tag", "scene", "--json"), ("show", first, "--json")]
    before = [cli("--vault", filled_vault, *v).stdout for v in views]
    (filled_vault / "cache" / "index.sqlite").unlink()
    after = [cli("--vault", filled_vault, *v).stdout for v in views]
    assert after == before and len(json.loads(before[1])) == 1
    assert len(json.loads(before[2])["events"]) == 3


def test_first_index_build_leaves_no_big_wal(
    cli: Cli, filled_vault: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command that indexes a long stretch of the log folds the write-ahead log into the database
    itself: the next command neither reads it at open nor copies it at close (0.2 s + 0.8 s after a
    million events)."""
    from evidence_vault import index

    cache = filled_vault / "cache"
    for f in cache.iterdir():
        f.unlink()
    monkeypatch.setattr(index, "_BIG_CATCH_UP", 0)  # this small log counts as a long stretch
    wal_sizes: list[int] = []
    real_refresh = index.Index.refresh

    def refresh(self: index.Index, *, rebuild: bool = False) -> None:
        real_refresh(self, rebuild=rebuild)
        wal_sizes.append((cache / "index.sqlite-wal").stat().st_size)

    monkeypatch.setattr(index.Index, "refresh", refresh)
    res = cli("--vault", filled_vault, "ls", "--json")
    assert res.code == 0 and len(res.json()) == 4, res.stderr
    assert wal_sizes == [0], "emptied right after the catch-up, before the command ends"


def test_fingerprints_and_times_are_never_cut_to_fit(cli: Cli, filled_vault: Path, identity: str) -> None:
    """`key list` is where a fingerprint is copied from, `timeline` a record: neither cuts a value to
    fit 80 columns (they were tables whose cells rich shortened to "SHA256:iZaFt…")."""
    listed = cli("--vault", filled_vault, "key", "list", env={"COLUMNS": "60"})
    assert listed.code == 0 and listed.stderr.count(identity) == 2, listed.stderr  # yours and authorized
    item = cli("--vault", filled_vault, "ls", "--json").json()[0]["id"]
    events = cli("--vault", filled_vault, "timeline", item, "--json").json()["events"]
    text = cli("--vault", filled_vault, "timeline", item, env={"COLUMNS": "60"})
    assert text.code == 0 and "…" not in text.stderr
    for e in events:
        assert e["time"] in text.stderr and e["actor"] in text.stderr
    both = cli("--vault", filled_vault, "timeline", item, "--json", "--format", "markdown")
    assert both.code == 2 and "two formats" in both.stderr


def test_ls_lists_whole_ids_and_names_in_columns(cli: Cli, vault: Path, tmp_path: Path) -> None:
    """`ls` is where an id is copied from: 16 hex digits and the whole name on every line, aligned, at
    any terminal width (rich's table cut them to "48cfeb8a35fc…" in 80 columns, and took 7 s to lay
    out 10,000 items)."""
    names = ["short.bin", "a rather long file name that no 80-column table cell would hold.bin"]
    for i, name in enumerate(names):
        (tmp_path / name).write_bytes(bytes([i]) * 10)
    assert cli("--vault", vault, "add", *(tmp_path / n for n in names)).code == 0
    assert cli("--vault", vault, "annotate", cli("--vault", vault, "ls", "--json").json()[0]["id"][7:19],
               "--tag", "injury").code == 0  # fmt: skip
    items = {i["name"]: i for i in cli("--vault", vault, "ls", "--json").json()}
    listed = cli("--vault", vault, "ls", env={"COLUMNS": "60"})
    lines = listed.stderr.splitlines()
    assert listed.code == 0 and lines[0].split() == ["id", "name", "type", "size", "added", "tags"]
    assert lines[-1] == "2 items" and "…" not in listed.stderr
    for name, item in items.items():
        row = next(line for line in lines if item["id"][7:23] in line)
        assert name in row and item["added"] in row
        if len(name) <= 40:  # a longer value pushes the rest of its own row only
            assert row.index(item["added"]) == lines[0].index("added")
    assert sum("injury" in line for line in lines) == 1


def test_many_findings_are_lines_not_a_table(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    """More findings than TABLE_MAX are plain lines on a terminal too (a table of 10,000 rows took
    seconds to lay out); fewer stay a table there."""
    from evidence_vault.cli import output, vault_commands
    from evidence_vault.report import Report

    monkeypatch.setattr(output, "plain", lambda: False)
    report = Report(target="v")
    for n in range(3):
        report.warn("object.orphan", f"objects/{n}", "not referenced by the log")
    vault_commands.print_report(report)
    assert "┃" in capsys.readouterr().err
    monkeypatch.setattr(output, "TABLE_MAX", 2)
    vault_commands.print_report(report)
    err = capsys.readouterr().err
    assert "┃" not in err and err.count("  WARN  object.orphan  objects/") == 3


def _at_a_terminal_prompt(args: list[str], key: bytes, env: dict[str, str]) -> tuple[int, str]:
    """Run ``evidence-vault ARGS`` on a pseudo-terminal, type ``key`` at its first prompt; (exit, output)."""
    import pty
    import select
    import time

    from tests.conftest import _command

    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once
        command = _command()
        os.execve(command[0], [*command, *args], env)
    out = b""
    typed = False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # EIO: the child is gone
                    break
                if not chunk:
                    break
                out += chunk
            if not typed and b"assphrase" in out:
                time.sleep(0.2)  # let getpass switch echo off first
                os.write(fd, key)
                typed = True
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode("utf-8", "replace")


def test_end_of_input_at_a_passphrase_prompt_is_one_line_exit_2(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-D at a passphrase prompt printed click's "Aborted!" and exited 1 (FAIL elsewhere); Ctrl-C
    there exits 130 with "interrupted", as anywhere else."""
    monkeypatch.delenv("EVIDENCE_VAULT_PASSPHRASE")
    env = {**os.environ, "NO_COLOR": "1", "TERM": "dumb"}
    code, out = _at_a_terminal_prompt(["key", "new", "--name", "X"], b"\x04", env)
    assert code == 2, out
    assert "Aborted" not in out and "Traceback" not in out
    assert (
        "error: no passphrase given (end of input): set EVIDENCE_VAULT_PASSPHRASE or use --passphrase-file"
        in out
    )
    assert not (home / "identities.json").exists()
    code, out = _at_a_terminal_prompt(["key", "new", "--name", "X"], b"\x03", env)
    assert code == 130, out
    assert "error: interrupted" in out and "Aborted" not in out
