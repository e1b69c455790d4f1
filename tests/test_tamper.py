"""Tamper matrix: every kind of change to objects or the log is a FAIL (exit 1) with the right finding."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from evidence_vault import prehash, signing
from evidence_vault.events import Event, line_hash
from evidence_vault.keystore import KeyStore, utc_now
from tests.conftest import PASSPHRASE, Cli, object_path

Report = dict[str, Any]


@pytest.fixture
def verify(cli: Cli, identity: str) -> Callable[..., tuple[int, Report]]:
    def run(vault: Path, *extra: str, trust: bool = True) -> tuple[int, Report]:
        args = ["--vault", str(vault), "verify", "--json", *extra]
        if trust:
            args += ["--trust", identity]
        res = cli(*args)
        assert "Traceback" not in res.stderr
        return res.code, json.loads(res.stdout)

    return run


def failures(report: Report) -> set[tuple[str, int | None]]:
    return {(f["code"], f["seq"]) for f in report["findings"] if f["level"] == "FAIL"}


def fail_codes(report: Report) -> set[str]:
    return {f["code"] for f in report["findings"] if f["level"] == "FAIL"}


def first_item(filled_vault: Path, cli: Cli) -> dict[str, Any]:
    res = cli("--vault", filled_vault, "ls", "--json")
    item: dict[str, Any] = res.json()[0]
    return item


def write_log(vault: Path, lines: list[bytes]) -> None:
    (vault / "log.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))


def rewrite_object(path: Path, data: bytes) -> None:
    os.chmod(path, 0o644)
    path.write_bytes(data)
    os.chmod(path, 0o444)


def test_clean_vault_has_zero_findings(filled_vault: Path, verify: Callable[..., tuple[int, Report]]) -> None:
    code, report = verify(filled_vault)
    assert code == 0
    assert report["outcome"] == "PASS" and report["findings"] == []
    assert report["genesis_pinned"] is True


def test_byte_flipped_in_object(
    filled_vault: Path, cli: Cli, verify: Callable[..., tuple[int, Report]]
) -> None:
    item = first_item(filled_vault, cli)
    path = object_path(filled_vault, item["id"])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    rewrite_object(path, bytes(data))
    code, report = verify(filled_vault)
    assert code == 1
    (finding,) = [f for f in report["findings"] if f["level"] == "FAIL"]
    assert finding["code"] == "object.hash-mismatch"
    assert finding["item"] == item["id"] and finding["subject"].startswith("original ")


def test_object_truncated(filled_vault: Path, cli: Cli, verify: Callable[..., tuple[int, Report]]) -> None:
    item = first_item(filled_vault, cli)
    path = object_path(filled_vault, item["id"])
    rewrite_object(path, path.read_bytes()[:-100])
    code, report = verify(filled_vault)
    assert code == 1
    (finding,) = [f for f in report["findings"] if f["level"] == "FAIL"]
    assert finding["code"] == "object.hash-mismatch" and finding["item"] == item["id"]
    assert f"recorded {item['size']}" in finding["message"]


def test_object_deleted(filled_vault: Path, cli: Cli, verify: Callable[..., tuple[int, Report]]) -> None:
    item = first_item(filled_vault, cli)
    object_path(filled_vault, item["id"]).unlink()
    code, report = verify(filled_vault)
    assert code == 1
    assert {(f["code"], f["item"]) for f in report["findings"]} == {("object.missing", item["id"])}


def test_object_replaced_by_same_size_file(
    filled_vault: Path, cli: Cli, verify: Callable[..., tuple[int, Report]]
) -> None:
    item = first_item(filled_vault, cli)
    path = object_path(filled_vault, item["id"])
    original = path.read_bytes()
    rewrite_object(path, original[::-1])
    assert path.stat().st_size == item["size"]
    code, report = verify(filled_vault)
    assert code == 1
    assert {(f["code"], f["item"]) for f in report["findings"]} == {("object.hash-mismatch", item["id"])}


def test_log_line_edited_canonically(
    filled_vault: Path, log_lines: Callable[[Path], list[bytes]], verify: Callable[..., tuple[int, Report]]
) -> None:
    lines = log_lines(filled_vault)
    event = json.loads(lines[2])
    event["data"]["tags"] = ["planted"]
    lines[2] = rfc8785.dumps(event)
    write_log(filled_vault, lines)
    code, report = verify(filled_vault)
    assert code == 1
    found = failures(report)
    assert ("log.bad-signature", 2) in found
    assert ("log.chain-broken", 3) in found
    assert ("log.non-canonical", 2) not in found


def test_middle_line_deleted(
    filled_vault: Path, log_lines: Callable[[Path], list[bytes]], verify: Callable[..., tuple[int, Report]]
) -> None:
    lines = log_lines(filled_vault)
    del lines[2]
    write_log(filled_vault, lines)
    code, report = verify(filled_vault)
    assert code == 1
    found = failures(report)
    assert ("log.seq-mismatch", 2) in found and ("log.chain-broken", 2) in found
    assert "log.truncated" in fail_codes(report)


def test_last_line_deleted_caught_by_head_pin(
    filled_vault: Path, log_lines: Callable[[Path], list[bytes]], verify: Callable[..., tuple[int, Report]]
) -> None:
    lines = log_lines(filled_vault)
    write_log(filled_vault, lines[:-1])
    code, report = verify(filled_vault)
    assert code == 1
    # The shortened log is internally consistent: only this machine's pin of the head notices.
    assert fail_codes(report) == {"log.truncated"}
    (finding,) = [f for f in report["findings"] if f["code"] == "log.truncated"]
    assert finding["subject"] == "log.jsonl" and "seq 4" in finding["message"]


def test_line_duplicated(
    filled_vault: Path, log_lines: Callable[[Path], list[bytes]], verify: Callable[..., tuple[int, Report]]
) -> None:
    lines = log_lines(filled_vault)
    lines.insert(3, lines[2])
    write_log(filled_vault, lines)
    code, report = verify(filled_vault)
    assert code == 1
    found = failures(report)
    assert ("log.seq-mismatch", 3) in found and ("log.chain-broken", 3) in found


def test_lines_swapped(
    filled_vault: Path, log_lines: Callable[[Path], list[bytes]], verify: Callable[..., tuple[int, Report]]
) -> None:
    lines = log_lines(filled_vault)
    lines[2], lines[3] = lines[3], lines[2]
    write_log(filled_vault, lines)
    code, report = verify(filled_vault)
    assert code == 1
    found = failures(report)
    assert {("log.seq-mismatch", 2), ("log.seq-mismatch", 3), ("log.chain-broken", 2)} <= found


def test_signature_from_another_line(
    filled_vault: Path, log_lines: Callable[[Path], list[bytes]], verify: Callable[..., tuple[int, Report]]
) -> None:
    lines = log_lines(filled_vault)
    target, donor = json.loads(lines[2]), json.loads(lines[3])
    target["sig"] = donor["sig"]
    lines[2] = rfc8785.dumps(target)
    write_log(filled_vault, lines)
    code, report = verify(filled_vault)
    assert code == 1
    found = failures(report)
    assert ("log.bad-signature", 2) in found
    assert ("log.bad-signature", 3) not in found


def test_line_signed_by_unauthorized_key(
    filled_vault: Path, log_lines: Callable[[Path], list[bytes]], verify: Callable[..., tuple[int, Report]]
) -> None:
    lines = log_lines(filled_vault)
    last = json.loads(lines[-1])
    intruder = signing.generate()
    event = Event(
        seq=last["seq"] + 1,
        prev=line_hash(lines[-1]),
        time=utc_now(),
        type="item.annotated",
        actor=intruder.fingerprint,
        data={"item": last["data"]["item"], "note": "planted"},
    )
    sig = base64.b64encode(intruder.sign(event.signing_bytes())).decode()
    signed = Event(**{**event.__dict__, "sig": sig})
    # The forged line is well formed and its signature checks: only authorization fails.
    signing.verify_signature(signed.signature, signed.signing_bytes(), intruder.public)
    write_log(filled_vault, [*lines, signed.line()])
    code, report = verify(filled_vault)
    assert code == 1
    assert failures(report) == {("log.unauthorized-signer", last["seq"] + 1)}
    (finding,) = [f for f in report["findings"] if f["level"] == "FAIL"]
    assert intruder.fingerprint in finding["message"]


def test_non_canonical_equivalent_line(
    filled_vault: Path, log_lines: Callable[[Path], list[bytes]], verify: Callable[..., tuple[int, Report]]
) -> None:
    lines = log_lines(filled_vault)
    event = json.loads(lines[2])
    lines[2] = json.dumps(event, ensure_ascii=False).encode()  # same value, with spaces, key order kept
    assert json.loads(lines[2]) == event and lines[2] != rfc8785.dumps(event)
    write_log(filled_vault, lines)
    code, report = verify(filled_vault)
    assert code == 1
    found = failures(report)
    assert ("log.non-canonical", 2) in found
    assert ("log.bad-signature", 2) not in found  # the signature covers the value, not the spelling


def test_metadata_object_edited(
    filled_vault: Path, cli: Cli, verify: Callable[..., tuple[int, Report]]
) -> None:
    item = first_item(filled_vault, cli)
    path = object_path(filled_vault, item["metadata_object"])
    doc = json.loads(path.read_bytes())
    doc["fields"]["original_name"]["value"] = "innocent.jpg"
    rewrite_object(path, rfc8785.dumps(doc))
    code, report = verify(filled_vault)
    assert code == 1
    (finding,) = [f for f in report["findings"] if f["level"] == "FAIL"]
    assert finding["code"] == "object.hash-mismatch"
    assert finding["subject"].startswith("metadata object") and finding["item"] == item["id"]


def test_metadata_swapped_and_log_resigned_commitment_does_not_open(
    filled_vault: Path,
    cli: Cli,
    identity: str,
    log_lines: Callable[[Path], list[bytes]],
    verify: Callable[..., tuple[int, Report]],
) -> None:
    """Even the key holder cannot change a committed value: the signed commitment no longer opens."""
    from evidence_vault.objects import FileObjectStore

    lines = log_lines(filled_vault)
    event = json.loads(lines[1])
    old = object_path(filled_vault, event["data"]["metadata"])
    doc = json.loads(old.read_bytes())
    doc["fields"]["original_name"]["value"] = "innocent.jpg"
    new_digest, _ = FileObjectStore(filled_vault / "objects").put_bytes(rfc8785.dumps(doc))
    old.chmod(0o644)
    old.unlink()
    store = KeyStore()
    signer = store.signer(store.find(identity), lambda _what: PASSPHRASE.encode())
    prev = line_hash(lines[0])
    for i in range(1, len(lines)):
        d = json.loads(lines[i])
        if i == 1:
            d["data"]["metadata"] = new_digest.id
        d["prev"] = prev
        ev = Event(**{k: v for k, v in d.items()})
        ev = Event(**{**ev.__dict__, "sig": base64.b64encode(signer.sign(ev.signing_bytes())).decode()})
        lines[i] = ev.line()
        prev = line_hash(lines[i])
    write_log(filled_vault, lines)
    code, report = verify(filled_vault)
    assert code == 1
    fails = [f for f in report["findings"] if f["level"] == "FAIL"]
    assert ("metadata.commitment-mismatch", event["data"]["item"]) in {(f["code"], f["item"]) for f in fails}
    assert any("original_name" in f["message"] for f in fails if f["code"] == "metadata.commitment-mismatch")
    # This machine saw the original head, so the rewritten history is flagged too.
    assert "log.rewritten" in fail_codes(report)
    assert not fail_codes(report) & {"log.bad-signature", "log.chain-broken", "object.hash-mismatch"}


def test_unpinned_genesis_warns(
    filled_vault: Path,
    verify: Callable[..., tuple[int, Report]],
    identity: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("EVIDENCE_VAULT_HOME", str(tmp_path / "fresh-home"))
    code, report = verify(filled_vault, trust=False)
    assert code == 0
    assert report["outcome"] == "WARN" and report["genesis_pinned"] is False
    (finding,) = report["findings"]
    assert (finding["level"], finding["code"]) == ("WARN", "trust.genesis-not-pinned")
    assert identity in finding["message"]
    code, report = verify(filled_vault, "--strict", trust=False)
    assert code == 1 and report["outcome"] == "WARN"


def test_trusting_another_key_fails(filled_vault: Path, cli: Cli, identity: str) -> None:
    other = signing.generate().fingerprint
    res = cli("--vault", filled_vault, "verify", "--json", "--trust", other)
    assert res.code == 1
    report = json.loads(res.stdout)
    assert failures(report) == {("trust.genesis-mismatch", 0)}
    assert report["genesis_pinned"] is False and report["genesis_key"] == identity


def test_line_with_an_integer_beyond_rfc8785_is_a_finding_not_a_crash(
    filled_vault: Path, cli: Cli, verify: Callable[..., tuple[int, Report]]
) -> None:
    """A hand-made line with an integer RFC 8785 cannot serialize: FAIL findings, never a traceback."""
    log = filled_vault / "log.jsonl"
    lines = log.read_bytes().splitlines()
    event = json.loads(lines[-1])
    event.update(seq=len(lines), prev="sha256:" + hashlib.sha256(lines[-1]).hexdigest())
    event["data"] = {**event["data"], "size": 2**60}
    log.write_bytes(
        log.read_bytes() + json.dumps(event, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    )
    code, report = verify(filled_vault)
    assert code == 1
    assert "log.bad-signature" in fail_codes(report)


def test_object_replaced_by_a_link_to_an_identical_file_outside(
    filled_vault: Path, cli: Cli, verify: Callable[..., tuple[int, Report]], tmp_path: Path
) -> None:
    """Content that lives outside the vault can change at any time: a link is no stored object, even to
    a file that still hashes right (full run, incremental run, and the pre-hashing child)."""
    assert verify(filled_vault)[0] == 0  # the state an incremental run builds on
    item = first_item(filled_vault, cli)
    path = object_path(filled_vault, item["id"])
    outside = tmp_path / "outside.bin"
    outside.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(outside)
    for extra in ((), ("--incremental",)):
        code, report = verify(filled_vault, *extra)
        assert code == 1, extra
        (finding,) = [f for f in report["findings"] if f["level"] == "FAIL"]
        assert finding["code"] == "object.unreadable" and finding["item"] == item["id"]
        assert "symbolic link" in finding["message"]
    assert prehash._intact(str(path), item["id"].removeprefix("sha256:")) is None


def test_public_key_file_replaced_or_removed(
    filled_vault: Path, cli: Cli, verify: Callable[..., tuple[int, Report]], identity: str
) -> None:
    """keys/*.pub are what the ssh-keygen recipe of docs/formats.md reads: another key there would make
    a check by hand trust the wrong key (FAIL); a missing one only stops that check (WARN)."""
    (pub,) = (filled_vault / "keys").glob("*.pub")
    assert identity.removeprefix("SHA256:").replace("/", "_").replace("+", "-") + ".pub" == pub.name
    good = pub.read_bytes()
    pub.write_text(signing.generate().public.openssh() + "\n")
    code, report = verify(filled_vault)
    assert code == 1 and fail_codes(report) == {"vault.key-file-mismatch"}
    pub.unlink()
    code, report = verify(filled_vault)
    assert code == 0 and {f["code"] for f in report["findings"]} == {"vault.key-file-missing"}
    pub.write_bytes(good)
    assert verify(filled_vault)[0] == 0
