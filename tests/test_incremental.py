"""verify --incremental: sound (a changed prefix means a full run), says what it skipped, and fast."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli, object_path
from tests.paths import CORPUS


def _verify(cli: Cli, vault: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    res = cli("--vault", vault, "verify", "--json", *extra)
    return res.code, json.loads(res.stdout)


def _codes(report: dict[str, Any], level: str) -> set[str]:
    return {f["code"] for f in report["findings"] if f["level"] == level}


def test_incremental_checks_only_new_lines_and_says_so(cli: Cli, filled_vault: Path) -> None:
    code, first = _verify(cli, filled_vault, "--incremental")
    assert code == 0 and "incremental.full" in _codes(first, "INFO")  # nothing saved yet: full run
    assert first["stats"]["lines_checked"] == 5
    assert cli("--vault", filled_vault, "add", CORPUS / "images" / "DSCN0010.jpg").code == 0
    code, second = _verify(cli, filled_vault, "--incremental")
    assert code == 0, second["findings"]
    assert "incremental.skipped" in _codes(second, "INFO")
    assert second["stats"]["lines_checked"] == 1 and second["stats"]["items"] == 5
    # Only the new original and its metadata object were re-read.
    new_size = (CORPUS / "images" / "DSCN0010.jpg").stat().st_size
    assert new_size < second["stats"]["bytes_hashed"] < new_size + 100_000


def test_edited_earlier_line_forces_full_run_and_fails(cli: Cli, filled_vault: Path) -> None:
    assert _verify(cli, filled_vault)[0] == 0  # a clean full run saves the state
    log = filled_vault / "log.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"tags":[]', b'"tags":["x"]')
    log.write_bytes(b"".join(lines))
    code, report = _verify(cli, filled_vault, "--incremental")
    assert code == 1
    assert "incremental.full" in _codes(report, "INFO")
    assert "log.bad-signature" in _codes(report, "FAIL")


def test_truncated_old_object_is_caught_by_size_check(cli: Cli, filled_vault: Path, items: Any) -> None:
    assert _verify(cli, filled_vault)[0] == 0
    victim = object_path(filled_vault, items(filled_vault)[0]["id"])
    os.chmod(victim, 0o644)
    victim.write_bytes(victim.read_bytes()[:-10])
    code, report = _verify(cli, filled_vault, "--incremental")
    assert code == 1 and "object.size-mismatch" in _codes(report, "FAIL")


def test_same_size_change_to_old_object_needs_full_run(cli: Cli, filled_vault: Path, items: Any) -> None:
    assert _verify(cli, filled_vault)[0] == 0
    victim = object_path(filled_vault, items(filled_vault)[0]["id"])
    os.chmod(victim, 0o644)
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF
    victim.write_bytes(bytes(data))
    code, report = _verify(cli, filled_vault, "--incremental")
    # Documented limit: an incremental run does not re-read old objects, and says so.
    assert code == 0 and "not re-hashed" in next(
        f["message"] for f in report["findings"] if f["code"] == "incremental.skipped"
    )
    code, report = _verify(cli, filled_vault)
    assert code == 1 and "object.hash-mismatch" in _codes(report, "FAIL")
    # A failed run saves nothing: the next incremental run does not build on it.
    code, report = _verify(cli, filled_vault, "--incremental")
    assert "incremental.skipped" in _codes(report, "INFO")  # still the state of the last clean run


def test_state_lives_outside_the_vault(cli: Cli, filled_vault: Path, home: Path) -> None:
    assert _verify(cli, filled_vault)[0] == 0
    vault_id = json.loads((filled_vault / "vault.json").read_text())["vault_id"]
    assert (home / "verified" / vault_id / "state.json").exists()
    assert not any("verified" in p.parts for p in filled_vault.rglob("*"))


def _set_pinned_head(home: Path, vault: Path, seq: int, line_hash: str) -> None:
    """This machine's pinned head, as a vaults.json copied from an earlier moment would have it."""
    vault_id = json.loads((vault / "vault.json").read_text())["vault_id"]
    pins_path = home / "vaults.json"
    pins = json.loads(pins_path.read_text())
    pins[vault_id]["head"] = {"seq": seq, "hash": line_hash}
    pins_path.write_text(json.dumps(pins))


def test_pinned_head_inside_verified_prefix_is_checked_not_a_crash(
    cli: Cli, filled_vault: Path, home: Path
) -> None:
    import hashlib

    assert _verify(cli, filled_vault)[0] == 0  # saves the state over the whole log
    line = (filled_vault / "log.jsonl").read_bytes().split(b"\n")[1]
    # An older head (seq 1, inside the verified prefix) that matches the log: still a clean skip.
    _set_pinned_head(home, filled_vault, 1, "sha256:" + hashlib.sha256(line).hexdigest())
    code, report = _verify(cli, filled_vault, "--incremental")
    assert code == 0, report["findings"]
    assert "incremental.skipped" in _codes(report, "INFO")
    # One that does not: the log was rewritten there, as a full run says too.
    _set_pinned_head(home, filled_vault, 1, "sha256:" + "0" * 64)
    code, report = _verify(cli, filled_vault, "--incremental")
    assert code == 1 and "log.rewritten" in _codes(report, "FAIL")
    # The usual case, the head at the prefix's last line, takes that line's hash from the saved state
    # (no line-by-line read): a pin that differs from it is still caught.
    last = (filled_vault / "log.jsonl").read_bytes().split(b"\n")[4]
    _set_pinned_head(home, filled_vault, 4, "sha256:" + hashlib.sha256(last).hexdigest())
    code, report = _verify(cli, filled_vault, "--incremental")
    assert code == 0 and "incremental.skipped" in _codes(report, "INFO"), report["findings"]
    _set_pinned_head(home, filled_vault, 4, "sha256:" + "1" * 64)
    code, report = _verify(cli, filled_vault, "--incremental")
    assert code == 1 and "log.rewritten" in _codes(report, "FAIL")


def _remove(path: Path) -> None:
    os.chmod(path.parent, 0o755)
    path.unlink()


def test_deleted_old_metadata_or_openings_object_fails_incremental(
    cli: Cli, filled_vault: Path, items: Any, log_lines: Any
) -> None:
    first = items(filled_vault)[0]["id"]
    assert cli("--vault", filled_vault, "annotate", first[7:19], "--note", "name of the victim").code == 0
    assert _verify(cli, filled_vault)[0] == 0  # saves the state over all of it
    events = [json.loads(line) for line in log_lines(filled_vault)]
    meta = next(e["data"]["metadata"] for e in events if e["type"] == "item.ingested")
    openings = events[-1]["data"]["openings"]
    _remove(object_path(filled_vault, openings))
    code, report = _verify(cli, filled_vault, "--incremental")
    assert code == 1 and "incremental.skipped" in _codes(report, "INFO")
    assert [f["subject"] for f in report["findings"] if f["code"] == "object.missing"] == [
        f"openings object {openings[7:19]}…"
    ]
    _remove(object_path(filled_vault, meta))
    code, report = _verify(cli, filled_vault, "--incremental")
    assert code == 1
    assert sum(f["code"] == "object.missing" for f in report["findings"]) == 2
    assert any(f"metadata object {meta[7:19]}" in f["subject"] for f in report["findings"])


def test_log_edited_during_a_clean_run_is_not_saved_as_verified(cli: Cli, filled_vault: Path) -> None:
    from evidence_vault import anchors_verify
    from evidence_vault.vault import Vault
    from evidence_vault.verify import verify_vault

    log = filled_vault / "log.jsonl"
    real_check_anchors = anchors_verify.check_anchors

    def edit_then_check(*args: Any, **kwargs: Any) -> None:
        # Someone edits a line after the log pass read it, while the objects and anchors are checked.
        # Same length: the verified prefix still ends at a line boundary.
        data = bytearray(log.read_bytes())
        at = data.index(b'Z","type":"item.ingested"') - 1
        data[at] = ord("7") if data[at] != ord("7") else ord("8")
        log.write_bytes(bytes(data))
        real_check_anchors(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(anchors_verify, "check_anchors", edit_then_check)
        assert verify_vault(Vault(filled_vault)).outcome != "FAIL"  # it checked the bytes before the edit
    code, report = _verify(cli, filled_vault, "--incremental")
    assert "incremental.skipped" not in _codes(report, "INFO"), report["findings"]
    assert code == 1 and "log.bad-signature" in _codes(report, "FAIL")


def test_incremental_strict_still_warns_about_earlier_lines_and_objects(
    cli: Cli, filled_vault: Path, items: Any
) -> None:
    from evidence_vault import custody_log

    # An event dated before the one it follows (the signer's clock went back): WARN log.time-order.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(custody_log, "utc_now", lambda: "2001-01-01T00:00:00.000Z")
        assert cli("--vault", filled_vault, "add", CORPUS / "images" / "DSCN0010.jpg").code == 0
    code, report = _verify(cli, filled_vault, "--strict")
    assert code == 1 and _codes(report, "WARN") == {"log.time-order"}  # saved: WARN is no FAIL
    code, report = _verify(cli, filled_vault, "--incremental", "--strict")
    assert "incremental.skipped" in _codes(report, "INFO")
    assert code == 1 and _codes(report, "WARN") == {"log.time-order"}
    victim = object_path(filled_vault, items(filled_vault)[0]["id"])
    os.chmod(victim, 0o644)
    code, report = _verify(cli, filled_vault, "--incremental", "--strict")
    assert code == 1 and _codes(report, "WARN") == {"log.time-order", "object.writable"}


def test_state_saved_half_way_is_never_used(cli: Cli, filled_vault: Path) -> None:
    import sqlite3

    from evidence_vault import scratch

    assert _verify(cli, filled_vault)[0] == 0  # state over 4 items
    assert cli("--vault", filled_vault, "add", CORPUS / "images" / "DSCN0010.jpg").code == 0

    def disk_full(self: Any, path: str) -> None:
        Path(path + ".tmp").write_bytes(b"half")
        raise sqlite3.OperationalError("database or disk is full")

    for failing_save in (disk_full, _raise_oserror):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(scratch._Db, "save_to", failing_save)
            code, report = _verify(cli, filled_vault)
        assert code == 0, report  # the verification itself passed; only its state could not be kept
    code, report = _verify(cli, filled_vault, "--incremental")
    assert code == 0, report["findings"]
    # Built on a whole state (the first one): every item is known, none was skipped unseen.
    assert "incremental.skipped" in _codes(report, "INFO") and report["stats"]["items"] == 5


def _raise_oserror(self: Any, path: str) -> None:
    raise OSError(28, "No space left on device")


def test_state_replaced_while_read_means_a_full_run(cli: Cli, filled_vault: Path) -> None:
    from evidence_vault import incremental

    assert _verify(cli, filled_vault)[0] == 0
    real_load = incremental.load

    def load_then_lose(vault_id: str, home: Path | None = None) -> Any:
        saved = real_load(vault_id, home)
        assert saved is not None
        os.unlink(saved.items_db)  # a verify running beside this one saved a newer state meanwhile
        return saved

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(incremental, "load", load_then_lose)
        code, report = _verify(cli, filled_vault, "--incremental")
    assert code == 0 and "incremental.full" in _codes(report, "INFO")
    assert report["stats"]["items"] == 4 and report["stats"]["lines_checked"] == 5


def test_checkpoint_directory_copied_in_after_a_clean_run_is_no_false_fail(
    cli: Cli, filled_vault: Path, tmp_path: Path
) -> None:
    import shutil

    assert cli("--vault", filled_vault, "checkpoint").code == 0
    (cp_dir,) = (filled_vault / "checkpoints").iterdir()
    # The log arrived before its checkpoint directory (a replica half synced), then the rest came.
    shutil.move(cp_dir, tmp_path / cp_dir.name)
    assert _verify(cli, filled_vault)[0] == 0
    shutil.move(tmp_path / cp_dir.name, cp_dir)
    code, report = _verify(cli, filled_vault, "--incremental")
    assert "checkpoint.root-mismatch" not in _codes(report, "FAIL")
    assert code == 0 and "incremental.full" in _codes(report, "INFO")


def test_checkpoint_roots_for_timeline_start_from_the_last_clean_verify(
    cli: Cli, filled_vault: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """timeline and prove check each checkpoint against the log's Merkle root. After a clean verify on
    this machine they hash only the lines after the prefix it verified (one SHA-256 pass over the
    prefix instead of a leaf hash per line: seconds on a million-line log); the roots are the same; a
    changed prefix means every line is hashed again."""
    from evidence_vault import anchors_verify, merkle
    from evidence_vault.vault import Vault

    assert cli("--vault", filled_vault, "checkpoint").code == 0  # line 5: size 5
    assert cli("--vault", filled_vault, "add", CORPUS / "images" / "DSCN0010.jpg").code == 0
    assert cli("--vault", filled_vault, "checkpoint").code == 0  # line 7: size 7
    hashed: list[bytes] = []
    real_leaf = merkle.leaf_hash
    monkeypatch.setattr(merkle, "leaf_hash", lambda data: hashed.append(data) or real_leaf(data))
    sizes = {5, 7}

    before = anchors_verify._log_roots(Vault(filled_vault), sizes)  # nothing verified yet
    assert before[1] == {5, 7} and len(hashed) == 8
    assert _verify(cli, filled_vault)[0] == 0  # a clean full run saves its end state (8 lines)
    assert cli("--vault", filled_vault, "add", CORPUS / "images" / "HTC Desire.jpg").code == 0
    assert cli("--vault", filled_vault, "checkpoint").code == 0  # line 9: size 9, after that prefix
    hashed.clear()
    after = anchors_verify._log_roots(Vault(filled_vault), sizes | {9})
    assert len(hashed) == 2  # lines 8 and 9 only
    assert {n: after[0][n] for n in sizes} == before[0] and after[1] == {5, 7, 9}

    hashed.clear()
    monkeypatch.setattr("evidence_vault.incremental.load", lambda *a, **k: None)
    assert anchors_verify._log_roots(Vault(filled_vault), sizes | {9}) == after  # the same, the long way
    assert len(hashed) == 10
    monkeypatch.undo()

    log = filled_vault / "log.jsonl"  # a prefix line changed since: the saved roots are not used
    lines = log.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"tags":[]', b'"tags":["x"]')
    log.write_bytes(b"".join(lines))
    monkeypatch.setattr(merkle, "leaf_hash", lambda data: hashed.append(data) or real_leaf(data))
    hashed.clear()
    changed = anchors_verify._log_roots(Vault(filled_vault), sizes | {9})
    assert len(hashed) == 10 and changed[0][5] != after[0][5]


def test_checkpoint_roots_stop_at_the_last_checkpoint(
    cli: Cli, filled_vault: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lines after the last checkpoint change none of the roots timeline and prove need: they are
    not read (a million-line log with checkpoints at 10,000 and 100,000: 2.7 s instead of 5 s)."""
    from evidence_vault import anchors_verify, merkle
    from evidence_vault.vault import Vault

    assert cli("--vault", filled_vault, "checkpoint").code == 0  # line 5: size 5
    assert cli("--vault", filled_vault, "add", CORPUS / "images" / "DSCN0010.jpg").code == 0
    hashed: list[bytes] = []
    real_leaf = merkle.leaf_hash
    monkeypatch.setattr(merkle, "leaf_hash", lambda data: hashed.append(data) or real_leaf(data))
    roots, recorded = anchors_verify._log_roots(Vault(filled_vault), {5})
    assert len(hashed) == 6 and recorded == {5}  # lines 0-5; line 6, the new file's, is not read
    lines = (filled_vault / "log.jsonl").read_bytes().splitlines()
    assert roots == {5: merkle.root_from_leaves([real_leaf(x) for x in lines[:5]])}


def _flip_byte(path: Path, at: int = 5) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def test_rehash_without_incremental_is_a_usage_error(cli: Cli, filled_vault: Path) -> None:
    res = cli("--vault", filled_vault, "verify", "--rehash")
    assert res.code == 2 and "--rehash goes with --incremental" in res.stderr, res.stderr


def test_rehash_re_hashes_every_object_but_not_the_verified_lines(
    cli: Cli, filled_vault: Path, items: Any, log_lines: Any
) -> None:
    """The nightly check for changed files: the log lines of the last clean run are not checked again,
    but every original, metadata and openings object is re-hashed, and the orphan scan runs."""
    first = items(filled_vault)[0]["id"]
    assert cli("--vault", filled_vault, "annotate", first[7:19], "--note", "name of the victim").code == 0
    code, full = _verify(cli, filled_vault)
    assert code == 0, full["findings"]
    assert cli("--vault", filled_vault, "add", CORPUS / "images" / "DSCN0010.jpg").code == 0
    code, report = _verify(cli, filled_vault, "--incremental", "--rehash")
    assert code == 0, report["findings"]
    skipped = next(f["message"] for f in report["findings"] if f["code"] == "incremental.skipped")
    assert "every object re-hashed all the same (--rehash)" in skipped, skipped
    assert report["stats"]["lines_checked"] == 1 and report["stats"]["items"] == 5
    new_size = (CORPUS / "images" / "DSCN0010.jpg").stat().st_size
    assert report["stats"]["bytes_hashed"] > full["stats"]["bytes_hashed"] + new_size  # all, and the new
    code, again = _verify(cli, filled_vault)  # a full run hashes the same objects
    assert again["stats"]["bytes_hashed"] == report["stats"]["bytes_hashed"]

    events = [json.loads(line) for line in log_lines(filled_vault)]
    meta = next(e["data"]["metadata"] for e in events if e["type"] == "item.ingested")
    openings = next(e["data"]["openings"] for e in events if e["type"] == "item.annotated")
    orphan = object_path(filled_vault, "ab" + "0" * 62)
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"planted")
    for victim in (object_path(filled_vault, first), object_path(filled_vault, meta)):
        _flip_byte(victim)
    _flip_byte(object_path(filled_vault, openings), 2)
    code, report = _verify(cli, filled_vault, "--incremental")
    assert code == 0  # same sizes: the plain incremental run cannot see it (and says so)
    code, report = _verify(cli, filled_vault, "--incremental", "--rehash")
    assert code == 1 and "incremental.skipped" in _codes(report, "INFO")
    mismatched = {f["subject"] for f in report["findings"] if f["code"] == "object.hash-mismatch"}
    assert len(mismatched) == 3 and any(openings[7:19] in s for s in mismatched), mismatched
    assert any(meta[7:19] in s for s in mismatched) and any(first[7:19] in s for s in mismatched)
    orphans = [f["subject"] for f in report["findings"] if f["code"] == "object.orphan"]
    assert len(orphans) == 1 and "ab0000" in orphans[0], orphans


def test_rehash_on_the_parallel_path_hashes_each_object_once(
    cli: Cli, big_vault: Path, items: Any, tmp_path: Path
) -> None:
    """A log big enough for worker processes, the early object pass and the re-hashing child: small
    originals of the new lines are checked during the log pass, those of the verified prefix after it."""
    assert _verify(cli, big_vault)[0] == 0
    new = tmp_path / "new"
    new.mkdir()
    for i in range(3):
        (new / f"n{i}.bin").write_bytes(os.urandom(80))
    assert cli("--vault", big_vault, "add", "-r", new).code == 0
    code, full = _verify(cli, big_vault)
    assert code == 0, full["findings"]
    code, report = _verify(cli, big_vault, "--incremental", "--rehash")
    assert code == 0 and "incremental.skipped" in _codes(report, "INFO"), report["findings"]
    assert report["stats"]["lines_checked"] == 0
    assert report["stats"]["bytes_hashed"] == full["stats"]["bytes_hashed"]
    assert cli("--vault", big_vault, "add", tmp_path / "new" / "n0.bin").code == 0  # a duplicate: no line
    old = items(big_vault)[7]["id"]
    _flip_byte(object_path(big_vault, old), 3)
    code, report = _verify(cli, big_vault, "--incremental", "--rehash")
    assert code == 1
    assert [f["item"] for f in report["findings"] if f["code"] == "object.hash-mismatch"] == [old]
