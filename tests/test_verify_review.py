"""Review findings in verify, doctor, import and the report formats: each test reproduces one defect."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from tests.conftest import Cli


def test_doctor_keeps_a_copy_of_each_line_set_aside_in_the_same_millisecond(
    cli: Cli, filled_vault: Path, monkeypatch: Any
) -> None:
    from evidence_vault import doctor as doctor_module

    log = filled_vault / "log.jsonl"
    good = log.read_bytes()
    last = good.splitlines(keepends=True)[-1].replace(b'"seq":4,', b'"seq":5,')
    # Three lines after the head this machine saw that nobody wrote there (each chained wrongly),
    # set aside one after the other.
    extra = [re.sub(rb'\d\d\dZ"', b'%03dZ"' % i, last) for i in range(3)]
    log.write_bytes(good + b"".join(extra))
    monkeypatch.setattr(doctor_module, "utc_now", lambda: "2026-01-01T00:00:00.000Z")
    res = cli("--vault", filled_vault, "doctor", "--repair")
    assert res.code == 0, res.stderr
    assert log.read_bytes() == good
    kept = sorted((filled_vault / "quarantine").iterdir())
    assert len(kept) == 3
    assert sorted(p.read_bytes() for p in kept) == sorted(extra)


def _codes(res: Any, level: str) -> list[str]:
    import json

    return [f["code"] for f in json.loads(res.stdout)["findings"] if f["level"] == level]


def test_imported_bag_tag_files_object_is_checked(cli: Cli, filled_vault: Path, tmp_path: Path) -> None:
    from tests.conftest import object_path

    bag = tmp_path / "bag"
    assert cli("--vault", filled_vault, "export", "--all", "--out", bag).code == 0
    receiver = tmp_path / "receiver"
    assert cli("init", receiver, "--name", "receiver").code == 0
    res = cli("--vault", receiver, "import", bag, "--json")
    assert res.code == 0, res.stderr
    bundle = res.json()["provenance"]["bundle_object"]
    assert cli("--vault", receiver, "verify", "--json").code == 0  # saves the incremental state
    victim = object_path(receiver, bundle)
    os.chmod(victim, 0o644)
    victim.write_bytes(victim.read_bytes() + b"x")  # the received custody log and proofs changed
    res = cli("--vault", receiver, "verify", "--json")
    assert res.code == 1 and "object.hash-mismatch" in _codes(res, "FAIL")
    os.chmod(victim.parent, 0o755)
    victim.unlink()
    res = cli("--vault", receiver, "verify", "--json")
    assert res.code == 1 and _codes(res, "FAIL") == ["object.missing"]
    res = cli("--vault", receiver, "verify", "--json", "--incremental")
    assert "incremental.skipped" in _codes(res, "INFO")
    assert res.code == 1 and _codes(res, "FAIL") == ["object.missing"]


def test_importing_the_same_bag_again_keeps_the_first_imports_tag_files(
    cli: Cli, filled_vault: Path, tmp_path: Path
) -> None:
    bag = tmp_path / "bag"
    assert cli("--vault", filled_vault, "export", "--all", "--out", bag).code == 0
    receiver = tmp_path / "receiver"
    assert cli("init", receiver, "--name", "receiver").code == 0
    assert cli("--vault", receiver, "import", bag).code == 0
    again = cli("--vault", receiver, "import", bag)
    assert again.code == 0 and "nothing added" in again.stderr
    res = cli("--vault", receiver, "verify", "--json")
    assert res.code == 0, res.stdout


def test_bag_payload_swapped_after_verification_is_not_imported(
    cli: Cli, filled_vault: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    """A bag directory changed between its verification and the ingest of its files (a swap by whoever
    can write it) must not be imported under the bag's provenance."""
    from evidence_vault import import_bag as import_module

    bag = tmp_path / "bag"
    assert cli("--vault", filled_vault, "export", "--all", "--out", bag).code == 0
    victim = sorted(p for p in (bag / "data").rglob("*") if p.is_file())[0]
    real_verify = import_module.verify_bundle

    def verify_then_swap(*args: Any, **kwargs: Any) -> Any:
        report = real_verify(*args, **kwargs)
        victim.write_bytes(b"not the evidence the bag's log vouches for")
        (bag / "data" / "planted.txt").write_bytes(b"planted after verification")
        return report

    monkeypatch.setattr(import_module, "verify_bundle", verify_then_swap)
    receiver = tmp_path / "receiver"
    assert cli("init", receiver, "--name", "receiver").code == 0
    res = cli("--vault", receiver, "import", bag, "--json")
    assert res.code == 1, res.stdout
    failed = sorted(os.path.basename(r["path"]) for r in res.json()["results"] if r["status"] == "failed")
    assert failed == sorted([victim.name, "planted.txt"]), res.stdout
    assert all(
        "changed since the bag was verified" in r["message"]
        for r in res.json()["results"]
        if r["status"] == "failed"
    )
    res = cli("--vault", receiver, "verify", "--json")  # (monkeypatch.undo() would undo the test home)
    assert res.code == 0 and "object.orphan" not in _codes(res, "WARN"), res.stdout


def test_emptied_log_fails(cli: Cli, filled_vault: Path, tmp_path: Path) -> None:
    (filled_vault / "log.jsonl").write_bytes(b"")  # every event removed, the objects left
    res = cli("--vault", filled_vault, "verify", "--json")
    assert res.code == 1, res.stdout
    assert {"log.empty", "log.truncated"} <= set(_codes(res, "FAIL"))  # this machine saw seq 4
    # A machine that never saw the vault: nothing pinned, and still no PASS or WARN for a log without events.
    res = cli(
        "--vault", filled_vault, "verify", "--json", env={"EVIDENCE_VAULT_HOME": str(tmp_path / "other")}
    )
    assert res.code == 1 and _codes(res, "FAIL") == ["log.empty"]


def test_deleted_log_fails_and_the_report_lists_the_rest(
    cli: Cli, filled_vault: Path, tmp_path: Path
) -> None:
    """A deleted log.jsonl (vault.json still there) is evidence removed: FAIL log.missing (exit 1), not
    exit 2 "No such file or directory", which CI reads as an infrastructure problem."""
    (filled_vault / "log.jsonl").unlink()
    res = cli("--vault", filled_vault, "verify", "--json")
    assert res.code == 1, (res.stdout, res.stderr)
    fails = _codes(res, "FAIL")
    assert "log.missing" in fails and "log.empty" not in fails
    assert "log.truncated" in fails  # this machine saw seq 4
    truncated = next(f for f in res.json()["findings"] if f["code"] == "log.truncated")
    assert "now has no events" in truncated["message"]
    assert len(_codes(res, "WARN")) == 8  # every object (4 originals, 4 metadata) is an orphan now
    res = cli("--vault", filled_vault, "verify")  # the text report too: one line per finding
    assert res.code == 1 and "log.missing" in res.stderr and "No such file" not in res.stderr
    res = cli("--vault", filled_vault, "verify", "--incremental", "--json")
    assert res.code == 1 and "log.missing" in _codes(res, "FAIL")
    res = cli(
        "--vault", filled_vault, "verify", "--json", env={"EVIDENCE_VAULT_HOME": str(tmp_path / "other")}
    )
    assert res.code == 1 and _codes(res, "FAIL") == ["log.missing"]


def test_log_names_the_file_and_line_of_a_damaged_line(cli: Cli, filled_vault: Path) -> None:
    with open(filled_vault / "log.jsonl", "ab") as fh:
        fh.write(b'{"not an event\n')
    res = cli("--vault", filled_vault, "log")
    assert res.code == 1
    error = res.stderr.strip().splitlines()[-1]
    assert "log.jsonl: line 6 is damaged" in error and "Traceback" not in res.stderr


def test_forged_index_cache_rows_are_a_clear_error_not_an_internal_one(
    cli: Cli, filled_vault: Path, items: Any
) -> None:
    import sqlite3

    item = items(filled_vault)[0]["id"]
    cache = filled_vault / "cache" / "index.sqlite"
    for sql in (
        "UPDATE items SET size='x'",
        "UPDATE item_events SET offset='zz'",
        "UPDATE item_events SET offset=99999999",
    ):
        with sqlite3.connect(cache) as db:
            db.execute(sql)
        for args in (("ls",), ("show", item[7:19]), ("log", "--item", item[7:19])):
            res = cli("--vault", filled_vault, *args)
            if res.code == 0:
                continue  # this command does not read the forged column
            assert res.code == 2, (sql, args, res.stderr)
            assert "internal error" not in res.stderr and "index cache is damaged" in res.stderr
            assert "index.sqlite" in res.stderr
        cache.unlink()
        assert cli("--vault", filled_vault, "ls").code == 0  # rebuilt from the log
    # A forged catch-up mark makes the cache rebuild itself.
    with sqlite3.connect(cache) as db:
        db.execute("UPDATE meta SET v='abc' WHERE k='offset'")
    res = cli("--vault", filled_vault, "show", item[7:19])
    assert res.code == 0, res.stderr


def test_doctor_repair_completes_a_whole_last_event_that_lacks_its_newline(
    cli: Cli, filled_vault: Path
) -> None:
    from evidence_vault import schemas

    log = filled_vault / "log.jsonl"
    good = log.read_bytes()
    log.write_bytes(good[:-1])  # an editor saved the log without its final newline
    assert cli("--vault", filled_vault, "verify").code == 1  # log.torn-line
    found = cli("--vault", filled_vault, "doctor", "--json")
    assert found.code == 1 and found.json()["torn_complete"] is True
    assert found.json()["unsound_lines"] == []
    res = cli("--vault", filled_vault, "doctor", "--repair", "--json")
    assert res.code == 0, res.stderr
    assert schemas.validate("doctor-result", res.json())
    assert res.json()["torn_saved_to"] is None
    assert log.read_bytes() == good  # the recorded event (the head this machine saw) is kept
    assert cli("--vault", filled_vault, "verify").code == 0
    # A line cut short is still set aside, with its copy.
    with open(log, "ab") as fh:
        fh.write(good.splitlines(keepends=True)[-1][:-20])
    res = cli("--vault", filled_vault, "doctor", "--repair", "--json")
    assert res.code == 0 and res.json()["torn_complete"] is False and res.json()["torn_saved_to"]
    assert log.read_bytes() == good


def test_show_and_report_survive_a_forged_metadata_object(
    cli: Cli, filled_vault: Path, items: Any, tmp_path: Path
) -> None:
    import json

    from tests.conftest import object_path

    item = items(filled_vault)[0]["id"]
    ingest = next(
        json.loads(line)
        for line in (filled_vault / "log.jsonl").read_bytes().splitlines()
        if json.loads(line)["data"].get("item") == item
    )
    meta = object_path(filled_vault, ingest["data"]["metadata"])
    os.chmod(meta, 0o644)
    for forged in (b'{"fields":[1]}', b'{"fields":{"original_name":"x"}}'):
        meta.write_bytes(forged)
        res = cli("--vault", filled_vault, "show", item[7:19], "--json")
        assert res.code == 0, res.stderr
        assert "original_name" in res.json()["withheld_fields"]  # no opening of its commitment
        res = cli("--vault", filled_vault, "report", "--out", tmp_path / "report.html")
        assert res.code == 0, res.stderr
        assert cli("--vault", filled_vault, "verify").code == 1  # object.hash-mismatch


def test_a_fifo_in_place_of_an_object_or_the_log_does_not_hang_verify(
    run: Cli, filled_vault: Path, items: Any
) -> None:
    from tests.conftest import object_path

    victim = object_path(filled_vault, items(filled_vault)[0]["id"])
    os.chmod(victim.parent, 0o755)
    victim.unlink()
    os.mkfifo(victim)  # no writer: a blocking open never returns
    res = run("--vault", filled_vault, "verify", "--json", timeout=60)
    assert res.code == 1 and "object.unreadable" in _codes(res, "FAIL")
    log = filled_vault / "log.jsonl"
    log.unlink()
    os.mkfifo(log)
    res = run("--vault", filled_vault, "verify", "--json", timeout=60)
    assert res.code == 2 and "log.jsonl: the custody log is not a regular file" in res.stderr


def test_log_shows_control_characters_of_a_hand_made_line_escaped(cli: Cli, filled_vault: Path) -> None:
    import hashlib
    import json

    log = filled_vault / "log.jsonl"
    last = log.read_bytes().splitlines()[-1]
    event = json.loads(last)
    event.update(
        seq=event["seq"] + 1,
        prev="sha256:" + hashlib.sha256(last).hexdigest(),
        type="x\x1b]0;title\x07\x1b[2J",
        data={"item": "\x1b[31mred"},
    )
    with open(log, "ab") as fh:
        fh.write(json.dumps(event, separators=(",", ":"), sort_keys=True).encode() + b"\n")
    res = cli("--vault", filled_vault, "log")
    assert res.code == 0, res.stderr
    assert "\x1b" not in res.stderr + res.stdout and "\\x1b[31mred" in res.stderr + res.stdout


def test_fifos_among_checkpoint_and_bag_files_do_not_hang_verify(
    run: Cli, filled_vault: Path, tmp_path: Path
) -> None:
    """A FIFO in place of a checkpoint's files, the stored block headers or a bag's tag file: a finding,
    never a read that blocks for ever."""
    assert run("--vault", filled_vault, "checkpoint", timeout=60).code == 0
    bag = tmp_path / "bag"
    res = run("--vault", filled_vault, "export", "--all", "--out", bag, timeout=60)
    assert res.code == 0, res.stderr
    signers = bag / "evidence" / "keys" / "allowed_signers"
    signers.unlink()
    os.mkfifo(signers)
    res = run("verify-bundle", bag, "--json", timeout=60)
    assert res.code == 1, res.stderr
    assert "bundle.keys-mismatch" in _codes(res, "FAIL"), _codes(res, "FAIL")
    (cp,) = [d for d in (filled_vault / "checkpoints").iterdir() if d.is_dir() and d.name.isdigit()]
    sig = cp / "checkpoint.sig"
    os.chmod(cp, 0o755)
    sig.unlink()
    os.mkfifo(sig)
    os.mkfifo(filled_vault / "checkpoints" / "headers.json")
    res = run("--vault", filled_vault, "verify", "--json", timeout=60)
    assert res.code == 1, res.stderr
    fails = _codes(res, "FAIL")
    assert "checkpoint.bad-signature" in fails and "anchors.bad-headers" in fails, fails


def test_verify_on_a_terminal_writes_nothing_into_the_vault(
    cli: Cli, run: Cli, filled_vault: Path, tmp_path: Path
) -> None:
    """docs/ci.md: verify writes nothing into the vault. On a terminal it once caught up the listing
    cache to size its progress bar; the total now comes from its own log pass."""
    from evidence_vault.vault import Vault
    from evidence_vault.verify import verify_vault

    extra = tmp_path / "extra.bin"
    extra.write_bytes(os.urandom(5000))
    assert run("--vault", filled_vault, "add", extra).code == 0
    cache = filled_vault / "cache"
    before = {p.name: p.read_bytes() for p in cache.iterdir()}
    # The cache behind the log: the last line's item is not in it yet (it would be caught up).
    res = run("--vault", filled_vault, "verify", env={"FORCE_COLOR": "1"})
    assert res.code in (0, 1), res.stderr
    assert "5 items" in res.stdout + res.stderr
    assert {p.name: p.read_bytes() for p in cache.iterdir()} == before
    shutil.rmtree(cache)
    res = run("--vault", filled_vault, "verify", env={"FORCE_COLOR": "1"})
    assert res.code in (0, 1), res.stderr
    assert not cache.exists()
    # The total the bar is given: the bytes of every original the run re-hashes.
    totals: list[int] = []
    vault = Vault(filled_vault)
    verify_vault(vault, on_total=totals.append, record_head=False)
    originals = sum(
        os.path.getsize(p)
        for p in (filled_vault / "objects" / "sha256").rglob("*")
        if p.is_file() and not p.read_bytes().startswith(b"{")
    )
    assert totals == [originals] and originals > 5000
    assert not cache.exists()


def test_findings_in_a_ci_log_are_whole_lines(run: Cli, filled_vault: Path, tmp_path: Path) -> None:
    """Where stderr is not a terminal (a CI log), each finding is one line with its code and message
    uncut: an 80-column table cut the code and the fingerprint the user is told to compare."""
    res = run("--vault", filled_vault, "verify", env={"EVIDENCE_VAULT_HOME": str(tmp_path / "elsewhere")})
    assert res.code == 0, res.stderr
    fingerprint = re.search(r"genesis key (SHA256:\S+) \(NOT pinned\)", res.stderr)
    assert fingerprint is not None, res.stderr
    line = next(x for x in res.stderr.splitlines() if "trust.genesis-not-pinned" in x)
    assert line.startswith("  WARN  trust.genesis-not-pinned  log.jsonl line 1 (seq 0): ")
    # Only the summary line starts with the outcome (scripts look for it).
    assert [x.split()[0] for x in res.stderr.splitlines() if x.startswith(("PASS ", "WARN ", "FAIL "))] == [
        "WARN"
    ]
    assert line.count(fingerprint.group(1)) == 2 and "…" not in line
    assert "┃" not in res.stderr and "│" not in res.stderr
    assert "4 items" in res.stderr and "0 failures, 1 warning\n" in res.stderr
