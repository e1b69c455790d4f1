"""Checkpoints, stamping (OpenTimestamps calendars and an RFC 3161 TSA on loopback), upgrade, prove,
and the attacks on anchors that verification must catch — end to end through the CLI."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from evidence_vault import merkle, signing
from evidence_vault.canonical import canonical
from evidence_vault.checkpoint import Checkpoint
from evidence_vault.events import Event
from evidence_vault.timestamps.headers import HeaderStore
from tests.conftest import SAMPLE_FILES, Cli
from tests.paths import CORPUS
from tests.servers.bitcoind import BitcoindServer
from tests.servers.ots_calendar import CalendarServer
from tests.servers.slow import SlowServer
from tests.servers.tsa import LocalTSA
from tests.stamping import stamp_vault

OTS = CORPUS / "timestamps" / "opentimestamps"


def _verify(cli: Cli, vault: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    res = cli("--vault", vault, "verify", "--json", *extra)
    return res.code, json.loads(res.stdout)


def _codes(report: dict[str, Any], level: str = "FAIL") -> set[str]:
    return {f["code"] for f in report["findings"] if f["level"] == level}


def _cp_dirs(vault: Path) -> list[Path]:
    return sorted(p for p in (vault / "checkpoints").iterdir() if p.is_dir() and p.name.isdigit())


@pytest.fixture
def calendars() -> Any:
    with CalendarServer() as a, CalendarServer() as b:
        yield a, b


@pytest.fixture
def tsa() -> Any:
    with LocalTSA() as t:
        yield t


@pytest.fixture
def stamped(cli: Cli, filled_vault: Path, calendars: Any, tsa: Any, tmp_path: Path) -> Path:
    """A vault stamped through two stand-in calendars and the local TSA."""
    a, b = calendars
    res = stamp_vault(cli, filled_vault, [a.url, b.url], tsa, tmp_path, "--json")
    out = res.json()
    assert out["checkpoint"]["size"] == 5 and out["queued"] == []
    assert {s["service"] for s in out["stamped"]} == {"opentimestamps", "rfc3161"}
    return filled_vault


def test_checkpoint_root_is_rfc9162_over_log_lines(cli: Cli, filled_vault: Path) -> None:
    res = cli("--vault", filled_vault, "checkpoint", "--json")
    assert res.code == 0, res.stderr
    info = res.json()
    lines = (filled_vault / "log.jsonl").read_bytes().splitlines()
    expected = merkle.root_from_leaves([merkle.leaf_hash(ln) for ln in lines[:5]])
    assert info["size"] == 5 and info["root"] == expected.hex()
    text = (Path(info["directory"]) / "checkpoint").read_bytes()
    assert text.splitlines()[1:3] == [b"5", base64.b64encode(expected)]
    code, report = _verify(cli, filled_vault)
    assert code == 0 and not _codes(report)
    assert "anchors.unstamped" in _codes(report, "WARN")


def test_anchor_findings_follow_object_findings(cli: Cli, filled_vault: Path) -> None:
    """Anchors are checked while the objects are still being re-hashed; the report keeps its order
    (log, objects, anchors) and lists every item with its proof time."""
    cli("--vault", filled_vault, "checkpoint")
    items = [
        json.loads(ln)["data"]["item"]
        for ln in (filled_vault / "log.jsonl").read_text().splitlines()
        if '"type":"item.ingested"' in ln
    ]
    original = filled_vault / "objects" / "sha256" / items[0][7:9] / items[0][7:]
    original.chmod(0o644)
    original.write_bytes(b"changed")
    original.chmod(0o444)
    code, report = _verify(cli, filled_vault)
    assert code == 1
    codes = [f["code"] for f in report["findings"]]
    assert codes.index("object.hash-mismatch") < codes.index("anchors.unstamped")
    assert [i["id"] for i in report["items"]] == items
    assert all(i["proven_since"] is None for i in report["items"])


def _ssh_keygen_verify(allowed: Path, sig: Path, data: bytes) -> subprocess.CompletedProcess[bytes]:
    cmd = ["ssh-keygen", "-Y", "verify", "-f", allowed, "-I", "custodian", "-n", "evidence-vault", "-s", sig]
    return subprocess.run(cmd, input=data, capture_output=True)


def test_checkpoint_signature_checks_with_ssh_keygen(
    cli: Cli, filled_vault: Path, identity: str, tmp_path: Path
) -> None:
    cli("--vault", filled_vault, "checkpoint")
    d = _cp_dirs(filled_vault)[0]
    pub = cli("key", "export-public").stdout.strip()
    allowed = tmp_path / "allowed"
    allowed.write_text(f"custodian {pub}\n")
    sig = d / "checkpoint.sig"
    ok = _ssh_keygen_verify(allowed, sig, (d / "checkpoint").read_bytes())
    assert ok.returncode == 0, ok.stderr
    bad = _ssh_keygen_verify(allowed, sig, b"tampered\n")
    assert bad.returncode != 0


def test_stamp_then_verify_reports_tsa_time_and_pending_ots(
    cli: Cli, stamped: Path, tsa: Any, tmp_path: Path
) -> None:
    code, report = _verify(cli, stamped)
    assert code == 0, report
    assert not _codes(report)
    assert "anchors.ots-pending" in _codes(report, "WARN")
    assert "anchors.tsa-valid" in _codes(report, "INFO")
    proven = [i for i in report["items"] if i["proven_since"]]
    assert len(proven) == 4 and all(i["proof"].startswith("rfc3161") for i in proven)
    # The token also checks with openssl itself.
    d = _cp_dirs(stamped)[0]
    tsr = next(d.glob("tsa-*.tsr"))
    ca = tmp_path / "ca.pem"
    ca.write_bytes(tsa.ca_pem)
    chain = tmp_path / "chain.pem"
    chain.write_bytes(tsa.chain_pem)
    res = subprocess.run(
        [
            "openssl",
            "ts",
            "-verify",
            "-in",
            tsr,
            "-data",
            d / "checkpoint",
            "-CAfile",
            ca,
            "-untrusted",
            chain,
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0 and "OK" in res.stdout, res.stderr


def test_tsa_ca_bundle_of_two_certificates_still_verifies(
    cli: Cli, filled_vault: Path, calendars: Any, tsa: Any, tmp_path: Path
) -> None:
    """--tsa-ca with a bundle (root + intermediate): the chain file beside the token must stay readable."""
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(tsa.ca_pem + tsa.intermediate_pem)
    a, _ = calendars
    args: list[Any] = ["--vault", filled_vault, "stamp", "--calendar", a.url, "--min-calendars", "1"]
    res = cli(*args, "--tsa", tsa.url, "--tsa-ca", bundle)
    assert res.code == 0, res.stderr
    code, report = _verify(cli, filled_vault)
    assert code == 0 and not _codes(report), report["findings"]
    assert "anchors.tsa-valid" in _codes(report, "INFO")
    # A chain file written by an earlier version (DER certificates back to back) reads too.
    chain = next(_cp_dirs(filled_vault)[0].glob("tsa-*.chain.pem"))
    from evidence_vault.timestamps.rfc3161 import split_pem_or_der_certs

    ders = split_pem_or_der_certs(chain.read_bytes())
    assert len(ders) == 2
    chain.write_bytes(b"".join(ders))
    code, report = _verify(cli, filled_vault)
    assert code == 0 and not _codes(report), report["findings"]


#: ``stamp`` with two calendars nothing listens on (port 9): everything is queued.
OFFLINE_STAMP = [
    "stamp",
    "--calendar",
    "http://127.0.0.1:9",
    "--calendar",
    "http://127.0.0.1:9/b",
    "--timeout",
    "2",
]


def test_stamp_offline_queues_and_next_stamp_catches_up(cli: Cli, filled_vault: Path) -> None:
    res = cli("--vault", filled_vault, *OFFLINE_STAMP)
    assert res.code == 0
    assert "queued" in res.stderr
    queue = json.loads((filled_vault / "checkpoints" / "queue.json").read_text())
    assert queue == {"ots": [5]}
    with CalendarServer() as a, CalendarServer() as b:
        res = cli("--vault", filled_vault, "stamp", "--calendar", a.url, "--calendar", b.url, "--json")
        assert res.code == 0, res.stderr
        out = res.json()
        assert out["checkpoint"]["created"] is False  # the log did not grow
        assert [s["size"] for s in out["stamped"]] == [5]
        assert len(a.requests) == 1 and len(b.requests) == 1
    assert json.loads((filled_vault / "checkpoints" / "queue.json").read_text()) == {}
    assert (_cp_dirs(filled_vault)[0] / "checkpoint.ots").exists()


def test_m_of_n_calendars_stamp_says_which_calendar_did_not_answer(cli: Cli, filled_vault: Path) -> None:
    """2 of 3 calendars answering is a stamp, but the third one was not mentioned at all (only in
    --json's "failed"); and an offline reason named each calendar twice ("URL: URL/digest: ...")."""
    dead = "http://127.0.0.1:9"
    with CalendarServer() as a, CalendarServer() as b:
        args = ["stamp", "--calendar", a.url, "--calendar", dead, "--calendar", b.url, "--timeout", "2"]
        res = cli("--vault", filled_vault, *args)
        answered = f"({a.url}, {b.url})"
    assert res.code == 0, res.stderr
    assert f"stamped checkpoint 5 with opentimestamps {answered}" in res.stderr
    assert f"  calendar {dead} did not answer: unreachable (" in res.stderr
    extra = filled_vault.parent / "later.txt"
    extra.write_text("later\n")
    assert cli("--vault", filled_vault, "add", extra).code == 0
    res = cli("--vault", filled_vault, "stamp", "--json")
    (queued,) = res.json()["queued"]
    assert queued["reason"].startswith("only 0 of 2 required calendars answered (")
    assert f"{dead}: unreachable (" in queued["reason"] and "/digest" not in queued["reason"], queued


def test_verify_says_whether_an_unstamped_checkpoint_is_queued(cli: Cli, filled_vault: Path) -> None:
    """Offline, `stamp` queues the checkpoint; verify told the field worker to run `stamp` as if it never
    had. It now says the checkpoint is queued; one `checkpoint` never stamped still gets "run stamp"."""
    assert cli("--vault", filled_vault, "checkpoint").code == 0
    message = {f["code"]: f["message"] for f in _verify(cli, filled_vault)[1]["findings"]}[
        "anchors.unstamped"
    ]
    assert message.endswith("run `evidence-vault stamp`"), message
    offline = ["--calendar", "http://127.0.0.1:9", "--min-calendars", "1", "--timeout", "5"]
    assert cli("--vault", filled_vault, "stamp", *offline).code == 0
    code, report = _verify(cli, filled_vault)
    unstamped = [f for f in report["findings"] if f["code"] == "anchors.unstamped"]
    assert code == 0 and len(unstamped) == 1, report["findings"]
    assert "it is queued" in unstamped[0]["message"], unstamped
    (filled_vault / "checkpoints" / "queue.json").write_text("{not json")  # stamp sets it aside
    unstamped = [f for f in _verify(cli, filled_vault)[1]["findings"] if f["code"] == "anchors.unstamped"]
    assert unstamped[0]["message"].endswith("run `evidence-vault stamp`"), unstamped


def test_stamp_also_stamps_a_recorded_checkpoint_that_has_no_time_proof(
    cli: Cli, filled_vault: Path, tmp_path: Path
) -> None:
    """`checkpoint`, then `add`, then `stamp`: only the new checkpoint was stamped, and verify said
    forever "anchors.unstamped ... run `evidence-vault stamp`" about the first (--strict failed every
    CI run), though running stamp as told never touched it."""
    assert cli("--vault", filled_vault, "checkpoint").code == 0
    extra = tmp_path / "later.txt"
    extra.write_text("later\n")
    assert cli("--vault", filled_vault, "add", extra).code == 0
    with CalendarServer() as a, CalendarServer() as b:
        res = cli("--vault", filled_vault, "stamp", "--calendar", a.url, "--calendar", b.url, "--json")
        assert res.code == 0, res.stderr
        assert sorted(s["size"] for s in res.json()["stamped"]) == [5, 7]
        res = cli("--vault", filled_vault, "stamp", "--json")  # nothing left to do: nothing asked again
        assert res.code == 0 and res.json()["stamped"] == [] and res.json()["queued"] == []
    code, report = _verify(cli, filled_vault)
    assert code == 0 and "anchors.unstamped" not in _codes(report, "WARN"), report["findings"]


def test_stamp_tsa_ca_without_its_tsa_is_a_usage_error(
    cli: Cli, filled_vault: Path, tsa: Any, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(tsa.ca_pem)
    res = cli(
        "--vault", filled_vault, "stamp", "--tsa-ca", ca, "--calendar", "http://127.0.0.1:9", "--timeout", "1"
    )
    assert res.code == 2 and "--tsa-ca" in res.stderr
    assert _cp_dirs(filled_vault) == []  # nothing done


def test_stamp_restores_a_lost_checkpoint_directory_and_drops_no_queued_stamp(
    cli: Cli, filled_vault: Path, tsa: Any, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(tsa.ca_pem)
    offline = ["--calendar", "http://127.0.0.1:9", "--calendar", "http://127.0.0.1:9/b", "--timeout", "2"]
    res = cli("--vault", filled_vault, "stamp", *offline, "--tsa", "http://127.0.0.1:9/tsa", "--tsa-ca", ca)
    assert res.code == 0, res.stderr
    queue_file = filled_vault / "checkpoints" / "queue.json"
    queued = json.loads(queue_file.read_text())
    assert queued == {"ots": [5], "tsa:http://127.0.0.1:9/tsa": [5]}
    shutil.rmtree(_cp_dirs(filled_vault)[0])  # lost (a cleanup script, a bad copy)
    code, report = _verify(cli, filled_vault)
    assert code == 0 and "checkpoint.dir-missing" in _codes(report, "WARN")
    # upgrade keeps what it cannot do, and says why
    res = cli("--vault", filled_vault, "upgrade", "--json")
    assert res.code == 0, res.stderr
    assert all("checkpoint cannot be read" in q["reason"] for q in res.json()["queued"])
    assert json.loads(queue_file.read_text()) == queued
    # stamp writes the recorded checkpoint again (its event holds text and signature) and stamps it
    with CalendarServer() as a, CalendarServer() as b:
        res = cli("--vault", filled_vault, "stamp", "--calendar", a.url, "--calendar", b.url, "--json")
    assert res.code == 0, res.stderr
    assert [s["size"] for s in res.json()["stamped"]] == [5]
    assert json.loads(queue_file.read_text()) == {"tsa:http://127.0.0.1:9/tsa": [5]}
    code, report = _verify(cli, filled_vault)
    assert code == 0 and not _codes(report), report["findings"]
    assert "anchors.ots-pending" in _codes(report, "WARN")


def test_unreadable_queue_is_rebuilt_not_dropped(cli: Cli, filled_vault: Path, tmp_path: Path) -> None:
    offline = OFFLINE_STAMP
    assert cli("--vault", filled_vault, *offline).code == 0
    extra = tmp_path / "later.txt"
    extra.write_text("added after the first stamp\n")
    assert cli("--vault", filled_vault, "add", extra).code == 0
    assert cli("--vault", filled_vault, *offline).code == 0
    queue_file = filled_vault / "checkpoints" / "queue.json"
    assert json.loads(queue_file.read_text()) == {"ots": [5, 7]}
    for damaged in ('{"ots": [5, 7', '["ots"]', '{"ots": ["5", 5, 7]}'):
        queue_file.write_text(damaged)
        res = cli("--vault", filled_vault, "upgrade", "--timeout", "2", "--json")
        assert res.code == 0, res.stderr
        assert sorted(q["size"] for q in res.json()["queued"]) == [5, 7]
    assert (filled_vault / "checkpoints" / "queue.json.unreadable").exists()  # kept for a look
    with CalendarServer() as a, CalendarServer() as b:
        res = cli("--vault", filled_vault, "stamp", "--calendar", a.url, "--calendar", b.url, "--json")
        assert res.code == 0, res.stderr
        assert sorted(s["size"] for s in res.json()["stamped"]) == [5, 7]
        # a proof already made is never replaced by a fresh (pending) one, whatever the queue says
        proof = (_cp_dirs(filled_vault)[0] / "checkpoint.ots").read_bytes()
        queue_file.write_text('{"ots": [5]}')
        res = cli("--vault", filled_vault, "stamp", "--calendar", a.url, "--calendar", b.url, "--json")
        assert res.code == 0 and res.json()["stamped"] == []
        assert (_cp_dirs(filled_vault)[0] / "checkpoint.ots").read_bytes() == proof


def test_ots_proof_written_by_us_is_read_by_the_ots_client(cli: Cli, stamped: Path) -> None:
    d = _cp_dirs(stamped)[0]
    res = subprocess.run(
        [shutil.which("ots") or "ots", "info", d / "checkpoint.ots"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert hashlib.sha256((d / "checkpoint").read_bytes()).hexdigest() in res.stdout
    assert "PendingAttestation" in res.stdout


def test_upgrade_stores_headers_from_bitcoind_and_refuses_grafts(
    cli: Cli, stamped: Path, calendars: Any
) -> None:
    a, b = calendars
    d = _cp_dirs(stamped)[0]
    before = (d / "checkpoint.ots").read_bytes()
    # Graft attempt: both calendars answer our commitment with the real (unrelated) alice answer.
    alice = next((OTS / "calendar-answers").iterdir()).read_bytes()
    digest = hashlib.sha256((d / "checkpoint").read_bytes()).digest()
    commitments = _pending_commitments(before)
    for cal in (a, b):
        for c in commitments:
            cal.answers[c] = alice
    with BitcoindServer() as node:
        res = cli("--vault", stamped, "upgrade", "--bitcoin-node", node.url, "--json")
    assert res.code == 0, res.stderr
    assert res.json()["rejected"], "the graft must be reported"
    assert (d / "checkpoint.ots").read_bytes() == before, "a grafted answer must not be merged"
    code, report = _verify(cli, stamped)
    assert code == 0 and "anchors.ots-pending" in _codes(report, "WARN")
    assert digest  # the proof still commits to our checkpoint
    # Headers given by file are checked and kept for offline verification.
    res = cli("--vault", stamped, "upgrade", "--headers", OTS / "bitcoin-headers.json", "--json")
    assert res.code == 0, res.stderr
    store = HeaderStore.load(stamped / "checkpoints" / "headers.json")
    assert 428648 in store.heights()
    # A mistyped --headers path is an error, not an empty file of headers.
    res = cli("--vault", stamped, "upgrade", "--headers", OTS / "no-such-headers.json")
    assert res.code == 2 and "no-such-headers.json: --headers: no such file" in res.stderr


def test_upgrade_offline_says_which_calendars_it_could_not_reach(cli: Cli, filled_vault: Path) -> None:
    """Offline, `upgrade` said only "checkpoint 5: still pending", as if the calendars had been asked
    and had no Bitcoin block yet, and the library printed one raw line per calendar (its logging's
    last resort), also into --json runs. The calendars not reached are part of the outcome now."""
    with CalendarServer() as a, CalendarServer() as b:
        res = cli("--vault", filled_vault, "stamp", "--calendar", a.url, "--calendar", b.url)
        assert res.code == 0, res.stderr
        res = cli("--vault", filled_vault, "upgrade")
        assert res.code == 0 and "checkpoint 5: still pending (not yet in a Bitcoin block" in res.stderr
        urls = sorted([a.url, b.url])
    res = cli("--vault", filled_vault, "upgrade", "--timeout", "2", "--json")
    assert res.code == 0 and res.stderr == "", res.stderr
    out = res.json()
    assert out["pending"] == [5]
    assert sorted(u.split(": ")[0] for u in out["unreachable"]["5"]) == urls
    assert all("unreachable" in u for u in out["unreachable"]["5"])
    res = cli("--vault", filled_vault, "upgrade", "--timeout", "2")
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "warning: checkpoint 5: still pending: calendar not reached"
    )
    assert all(u in lines[0] for u in urls)


def test_graft_merged_before_its_header_was_known_is_dropped_by_the_next_upgrade(
    cli: Cli, stamped: Path, calendars: Any
) -> None:
    """Without a header source, upgrade cannot check a calendar's Bitcoin attestation and merges it; once
    the header shows it false, the proof must not stay broken (FAIL, its calendar never asked again)."""
    a, b = calendars
    d = _cp_dirs(stamped)[0]
    before = (d / "checkpoint.ots").read_bytes()
    alice = next((OTS / "calendar-answers").iterdir()).read_bytes()  # real answer, for another commitment
    commitments = _pending_commitments(before)
    for cal in (a, b):
        for c in commitments:
            cal.answers[c] = alice
    res = cli("--vault", stamped, "upgrade", "--bitcoin-node", "http://127.0.0.1:9/", "--timeout", "2")
    assert res.code == 0, res.stderr
    assert "block 428648: header not fetched: bitcoind getblockhash: unreachable" in res.stderr
    assert "try again when the source is reachable" in res.stderr
    res = cli("--vault", stamped, "upgrade", "--headers", OTS / "bitcoin-headers.json")
    assert res.code == 0, res.stderr
    assert "does not match Bitcoin block 428648" in res.stderr
    assert (d / "checkpoint.ots").read_bytes() == before, "the false answer is gone, the promises stay"
    code, report = _verify(cli, stamped)
    assert code == 0 and "anchors.ots-pending" in _codes(report, "WARN"), report["findings"]
    # The calendars are asked again (and their graft now refused against the stored header, and said).
    asked = len(a.requests) + len(b.requests)
    res = cli("--vault", stamped, "upgrade", "--json")
    assert res.code == 0 and len(a.requests) + len(b.requests) > asked
    assert "grafted" in res.json()["rejected"]["5"]
    assert (d / "checkpoint.ots").read_bytes() == before


def _pending_commitments(ots_bytes: bytes) -> list[bytes]:
    from opentimestamps.core.notary import PendingAttestation
    from opentimestamps.core.serialize import BytesDeserializationContext
    from opentimestamps.core.timestamp import DetachedTimestampFile

    f = DetachedTimestampFile.deserialize(BytesDeserializationContext(ots_bytes))
    return [msg for msg, att in f.timestamp.all_attestations() if isinstance(att, PendingAttestation)]


def test_prove_and_verify_proof_offline(
    cli: Cli, stamped: Path, tsa: Any, tmp_path: Path, identity: str
) -> None:
    out = tmp_path / "proof"
    target = SAMPLE_FILES[1]
    res = cli("--vault", stamped, "prove", target, "--out", out, "--json")
    assert res.code == 0, res.stderr
    assert res.json()["tree_size"] == 5
    shutil.rmtree(stamped)  # the proof stands alone
    ok = cli("verify-proof", out, "--file", target, "--trust", identity, "--json")
    assert ok.code == 0, ok.stdout
    report = ok.json()
    assert not _codes(report)
    assert report["items"][0]["proof"].startswith("rfc3161")
    # Whoever checks a proof has no vault to `upgrade` (it would say "no vault found"): the hint of the
    # pending OpenTimestamps proof is for the vault's keeper.
    (pending,) = [f["message"] for f in report["findings"] if f["code"] == "anchors.ots-pending"]
    assert pending.endswith("whoever keeps the vault runs `evidence-vault upgrade`, then `prove` again")
    wrong = cli("verify-proof", out, "--file", SAMPLE_FILES[0], "--trust", identity, "--json")
    assert wrong.code == 1 and "object.hash-mismatch" in _codes(wrong.json())
    doc = json.loads((out / "proof.json").read_text())
    (out / "proof.json").write_text(json.dumps({**doc, "vault_id": "00000000-0000-4000-8000-000000000000"}))
    other = cli("verify-proof", out, "--trust", identity, "--json")
    assert other.code == 1 and "checkpoint.wrong-origin" in _codes(other.json())
    doc["inclusion_path"][0] = "00" * 32
    (out / "proof.json").write_text(json.dumps(doc))
    bad = cli("verify-proof", out, "--trust", identity, "--json")
    assert bad.code == 1 and "proof.inclusion-invalid" in _codes(bad.json())


def test_verify_proof_hostile_files_are_findings_not_crashes(cli: Cli, stamped: Path, tmp_path: Path) -> None:
    out = tmp_path / "proof"
    assert cli("--vault", stamped, "prove", SAMPLE_FILES[1], "--out", out).code == 0
    good = {p.name: p.read_bytes() for p in out.iterdir()}
    doc = json.loads(good["proof.json"])

    def damaged(name: str, content: bytes | None) -> dict[str, Any]:
        """verify-proof after replacing ``name`` by ``content`` (None: by a directory)."""
        shutil.rmtree(out)
        out.mkdir()
        for n, b in good.items():
            (out / n).write_bytes(b)
        (out / name).unlink()
        if content is None:
            (out / name).mkdir()
        else:
            (out / name).write_bytes(content)
        res = cli("verify-proof", out, "--json")
        assert res.code == 1, res.stderr
        return res.json()

    assert "proof.malformed" in _codes(damaged("proof.json", json.dumps({**doc, "keys": [1]}).encode()))
    assert "proof.malformed" in _codes(damaged("proof.json", b"[" * 100_000))
    assert "proof.malformed" in _codes(damaged("checkpoint", None))
    assert "proof.malformed" in _codes(damaged("proof.json", json.dumps({**doc, "v": 2}).encode()))
    assert "proof.malformed" in _codes(damaged("proof.json", json.dumps({**doc, "type": "x"}).encode()))
    other = signing.generate().public.openssh()
    fp = next(iter(doc["keys"]))
    listed = f'{fp} namespaces="evidence-vault" {other}\n'.encode()
    assert "proof.key-mismatch" in _codes(damaged("allowed_signers", listed))
    assert "checkpoint.bad-signature" in _codes(damaged("checkpoint.sig", b"\xff\xfe"))
    assert "anchors.ots-invalid" in _codes(damaged("checkpoint.ots", None))
    # and in the vault itself
    ots_path = _cp_dirs(stamped)[0] / "checkpoint.ots"
    ots_path.unlink()
    ots_path.mkdir()
    code, report = _verify(cli, stamped)
    assert code == 1 and "anchors.ots-invalid" in _codes(report)


def test_prove_copies_no_file_from_outside_the_vault(cli: Cli, stamped: Path, tmp_path: Path) -> None:
    """prove copies the TSA root a tsa-*.json names into the proof it hands out: a path out of the vault
    (absolute, "..", a link) must not make it ship, say, a private key; a damaged one must not crash it."""
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the lawyer\n")
    (stamped / "checkpoints" / "link.pem").symlink_to(secret)
    meta_file = next(_cp_dirs(stamped)[0].glob("tsa-*.json"))
    meta = json.loads(meta_file.read_text())
    outs = []
    for i, ca in enumerate([str(secret), f"../{secret.name}", "checkpoints/link.pem", None]):
        meta_file.chmod(0o644)
        meta_file.write_text(json.dumps({**meta, "ca": ca}) if ca else "{")
        out = tmp_path / f"proof{i}"
        res = cli("--vault", stamped, "prove", SAMPLE_FILES[1], "--out", out)
        assert res.code == 0, res.stderr
        outs.append(out)
    for out in outs:
        assert not any(b"not for the lawyer" in f.read_bytes() for f in out.iterdir()), out
    # nor does export put it into the bag
    meta_file.write_text(json.dumps({**meta, "ca": str(secret)}))
    bag = tmp_path / "bag"
    res = cli("--vault", stamped, "export", "--all", "--out", bag)
    assert res.code == 0, res.stderr
    assert not any(b"not for the lawyer" in f.read_bytes() for f in bag.rglob("*") if f.is_file())


# -- attacks: each must give exit 1 with the right finding ------------------------------------------


def test_attack_ots_proof_for_another_digest(cli: Cli, stamped: Path) -> None:
    d = _cp_dirs(stamped)[0]
    (d / "checkpoint.ots").write_bytes((OTS / "hello-world.txt.ots").read_bytes())
    code, report = _verify(cli, stamped)
    assert code == 1 and "anchors.ots-invalid" in _codes(report)


def test_attack_forged_low_difficulty_header(cli: Cli, stamped: Path) -> None:
    real = json.loads((OTS / "bitcoin-headers.json").read_text())
    store = HeaderStore.load(OTS / "bitcoin-headers.json")
    header = bytearray(store.get(428648).raw)  # type: ignore[union-attr]
    header[72:76] = (0x207FFFFF).to_bytes(4, "little")  # regtest-easy target
    for nonce in range(1 << 16):
        header[76:80] = nonce.to_bytes(4, "little")
        h = hashlib.sha256(hashlib.sha256(bytes(header)).digest()).digest()
        if int.from_bytes(h, "little") < (0x7FFFFF << 232):
            break
    (stamped / "checkpoints" / "headers.json").write_text(
        json.dumps({"headers": [{"height": 428648, "hex": bytes(header).hex()}]})
    )
    assert real  # the corpus file itself stays untouched
    code, report = _verify(cli, stamped)
    assert code == 1 and "anchors.bad-headers" in _codes(report)


@pytest.mark.parametrize(
    "height",
    [
        900000,  # a real header (block 358391) stored at a height it is not
        50,  # enough work for height 50 (whose floor is difficulty 1), but a time from 2015: not block 50
    ],
)
def test_attack_header_stored_at_wrong_height(cli: Cli, stamped: Path, height: int) -> None:
    store = HeaderStore.load(OTS / "bitcoin-headers.json")
    raw = store.get(358391).raw  # type: ignore[union-attr]
    (stamped / "checkpoints" / "headers.json").write_text(
        json.dumps({"headers": [{"height": height, "hex": raw.hex()}]})
    )
    code, report = _verify(cli, stamped)
    assert code == 1 and "anchors.bad-headers" in _codes(report)


def test_attack_checkpoint_root_does_not_match_log(cli: Cli, stamped: Path) -> None:
    d = _cp_dirs(stamped)[0]
    lines = (d / "checkpoint").read_bytes().splitlines()
    lines[2] = base64.b64encode(b"\x01" * 32)
    (d / "checkpoint").write_bytes(b"\n".join(lines) + b"\n")
    code, report = _verify(cli, stamped)
    assert code == 1 and "checkpoint.root-mismatch" in _codes(report)


def test_attack_log_rolled_back_past_checkpoint(
    cli: Cli, stamped: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    log = stamped / "log.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:4]))  # the checkpoint event (seq 5) and the item before it are gone
    monkeypatch.setenv("EVIDENCE_VAULT_HOME", str(tmp_path / "other-machine"))  # no head pin to help
    code, report = _verify(cli, stamped)
    assert code == 1 and "log.rollback" in _codes(report)


def test_attack_tsr_for_other_data(cli: Cli, stamped: Path, calendars: Any, tsa: Any) -> None:
    first = _cp_dirs(stamped)[0]
    cli("--vault", stamped, "add", CORPUS / "images" / "DSCN0010.jpg")
    assert calendars  # the stand-in calendars stay up for the second stamp
    assert cli("--vault", stamped, "stamp").code == 0
    second = _cp_dirs(stamped)[1]
    old = next(first.glob("tsa-*.tsr"))
    shutil.copyfile(old, second / old.name)
    code, report = _verify(cli, stamped)
    assert code == 1 and "anchors.tsa-invalid" in _codes(report)


def test_attack_tsr_without_a_root_still_checks_what_needs_none(
    cli: Cli, stamped: Path, calendars: Any, tsa: Any
) -> None:
    """A token with no root to check it against (no tsa-*.json naming one) is only a WARN when it is a
    token of this checkpoint; garbage, or another checkpoint's token, is plain without any root."""
    first = _cp_dirs(stamped)[0]
    cli("--vault", stamped, "add", CORPUS / "images" / "DSCN0010.jpg")
    assert calendars  # the stand-in calendars stay up for the second stamp
    assert cli("--vault", stamped, "stamp").code == 0
    second = _cp_dirs(stamped)[1]
    os.chmod(second, 0o755)
    own = next(second.glob("tsa-*.tsr"))
    shutil.copyfile(own, second / "tsa-own.tsr")  # this checkpoint's token: no root, so a WARN
    code, report = _verify(cli, stamped)
    assert code == 0 and "anchors.tsa-untrusted" in _codes(report, "WARN"), report["findings"]
    for name, data in [
        ("tsa-garbage.tsr", b"garbage\n"),
        ("tsa-other.tsr", next(first.glob("tsa-*.tsr")).read_bytes()),
    ]:
        (second / name).write_bytes(data)
        code, report = _verify(cli, stamped)
        bad = [f for f in report["findings"] if f["code"] == "anchors.tsa-invalid"]
        assert code == 1 and [f["subject"].rsplit("/", 1)[1] for f in bad] == [name], report["findings"]
        (second / name).unlink()


def test_attack_tsr_signature_altered(cli: Cli, stamped: Path) -> None:
    tsr = next(_cp_dirs(stamped)[0].glob("tsa-*.tsr"))
    data = bytearray(tsr.read_bytes())
    data[-10] ^= 0x01  # inside the signature value at the end of the SignerInfo
    tsr.write_bytes(bytes(data))
    code, report = _verify(cli, stamped)
    assert code == 1 and "anchors.tsa-invalid" in _codes(report)


def test_attack_checkpoint_event_signature_forged(cli: Cli, stamped: Path) -> None:
    d = _cp_dirs(stamped)[0]
    sig = (d / "checkpoint.sig").read_text().splitlines()
    body = base64.b64decode("".join(sig[1:-1]))
    body = body[:-5] + bytes([body[-5] ^ 1]) + body[-4:]
    b64 = base64.b64encode(body).decode()
    (d / "checkpoint.sig").write_text(
        "\n".join([sig[0], *[b64[i : i + 70] for i in range(0, len(b64), 70)], sig[-1]]) + "\n"
    )
    code, report = _verify(cli, stamped)
    assert code == 1 and "checkpoint.bad-signature" in _codes(report)


def test_stamping_defaults_from_user_config(cli: Cli, filled_vault: Path, home: Path, calendars: Any) -> None:
    a, b = calendars
    (home / "config.json").write_text(
        json.dumps({"stamping": {"calendars": [a.url, b.url], "min_calendars": 2}})
    )
    res = cli("--vault", filled_vault, "stamp", "--json")
    assert res.code == 0, res.stderr
    assert set(res.json()["stamped"][0]["calendars"]) == {a.url, b.url}
    assert len(a.requests) == 1 and len(b.requests) == 1


def test_tsa_from_user_config_verifies_against_its_configured_root(
    cli: Cli, filled_vault: Path, home: Path, calendars: Any, tsa: Any, tmp_path: Path
) -> None:
    """A TSA with its root in EVIDENCE_VAULT_HOME/config.json (outside the vault): stamp checks the token
    against that root, so verify must too, not call the TSA untrusted."""
    a, _ = calendars
    ca = tmp_path / "tsa-root.pem"
    ca.write_bytes(tsa.ca_pem)
    stamping = {"calendars": [a.url], "min_calendars": 1, "tsas": [{"url": tsa.url, "ca": str(ca)}]}
    (home / "config.json").write_text(json.dumps({"stamping": stamping}))
    res = cli("--vault", filled_vault, "stamp", "--json")
    assert res.code == 0, res.stderr
    assert {s["service"] for s in res.json()["stamped"]} == {"opentimestamps", "rfc3161"}
    code, report = _verify(cli, filled_vault)
    assert code == 0 and "anchors.tsa-untrusted" not in _codes(report, "WARN"), report["findings"]
    assert "anchors.tsa-valid" in _codes(report, "INFO")
    assert all(i["proven_since"] for i in report["items"])
    bag = tmp_path / "bag"
    assert cli("--vault", filled_vault, "export", "--all", "--out", bag).code == 0
    (shipped,) = bag.rglob("tsa-*.ca.pem")  # the root you configured goes with the token
    assert shipped.read_bytes() == tsa.ca_pem


def test_tsa_ca_that_is_no_certificate_is_a_usage_error(cli: Cli, stamped: Path, tmp_path: Path) -> None:
    """--tsa-ca naming a file that holds no certificate is the user's mistake (exit 2 naming the file),
    not a FAIL of every token as if the token were bad; stamp must not store it as a TSA's root either."""
    junk = tmp_path / "not-a-cert.pem"
    junk.write_text("hello\n")
    proof = tmp_path / "proof"
    assert cli("--vault", stamped, "prove", SAMPLE_FILES[1], "--out", proof).code == 0
    for args in (
        ["--vault", stamped, "verify", "--tsa-ca", junk],
        ["verify-proof", proof, "--tsa-ca", junk],
        ["--vault", stamped, "stamp", "--tsa", "http://127.0.0.1:9/", "--tsa-ca", junk, "--timeout", "1"],
    ):
        res = cli(*args)
        assert res.code == 2 and "not-a-cert.pem: --tsa-ca: not a certificate" in res.stderr, (
            args,
            res.stderr,
        )
    assert b"127.0.0.1:9" not in (stamped / "vault.json").read_bytes()


def test_tsa_ca_that_does_not_exist_is_one_line_naming_file_and_option(
    cli: Cli, filled_vault: Path, tmp_path: Path
) -> None:
    """`stamp --tsa URL --tsa-ca MISSING` said "MISSING: cannot read: No such file or directory", without
    the option; the other --tsa-ca errors name it. Nothing is done or saved."""
    before = (filled_vault / "vault.json").read_bytes()
    missing = tmp_path / "no-such-root.pem"
    for args in (
        ["stamp", "--tsa", "http://127.0.0.1:9/tsa", "--tsa-ca", missing, "--calendar", "http://127.0.0.1:9"],
        ["verify", "--tsa-ca", missing],
        ["timeline", SAMPLE_FILES[0], "--tsa-ca", missing],
    ):
        res = cli("--vault", filled_vault, *args)
        assert res.code == 2
        assert (
            res.stderr
            == f"evidence-vault: error: {missing}: --tsa-ca: cannot read: No such file or directory\n"
        )
    assert (filled_vault / "vault.json").read_bytes() == before
    assert _cp_dirs(filled_vault) == []


def test_one_calendar_with_the_default_min_calendars_says_what_to_do(cli: Cli, filled_vault: Path) -> None:
    """The user gave one calendar and no --min-calendars: the error says the 2 is the default and how
    to go on, and nothing is saved or stamped."""
    before = (filled_vault / "vault.json").read_bytes()
    res = cli("--vault", filled_vault, "stamp", "--calendar", "http://127.0.0.1:9", "--timeout", "1")
    assert res.code == 2
    assert "--min-calendars 2 (not given: the default" in res.stderr
    assert "than the 1 calendar to ask" in res.stderr and "--min-calendars 1" in res.stderr
    assert (filled_vault / "vault.json").read_bytes() == before
    assert not any((filled_vault / "checkpoints").iterdir())  # no checkpoint made


def test_min_calendars_below_one_is_refused_and_not_kept(cli: Cli, filled_vault: Path) -> None:
    res = cli("--vault", filled_vault, "stamp", "--min-calendars", "0", "--timeout", "1")
    assert res.code == 2 and "--min-calendars 0" in res.stderr
    assert b'"min_calendars": 0' not in (filled_vault / "vault.json").read_bytes()
    # a vault.json that already says 0 (written by an earlier version) falls back to the default
    doc = json.loads((filled_vault / "vault.json").read_text())
    doc["stamping"] = {"calendars": ["http://127.0.0.1:9", "http://127.0.0.1:9/b"], "min_calendars": 0}
    (filled_vault / "vault.json").write_text(json.dumps(doc))
    res = cli("--vault", filled_vault, "stamp", "--timeout", "1", "--json")
    assert res.code == 0, res.stderr
    assert [q["service"] for q in res.json()["queued"]] == ["ots"]  # offline: queued, not an error


def test_stamp_refuses_a_url_without_scheme_before_saving_it(cli: Cli, filled_vault: Path) -> None:
    before = (filled_vault / "vault.json").read_bytes()
    for option in ("--calendar", "--tsa"):
        res = cli(
            "--vault",
            filled_vault,
            "stamp",
            option,
            "alice.btc.calendar.opentimestamps.org",
            "--timeout",
            "1",
        )
        assert res.code == 2 and "is not an http:// or https:// URL" in res.stderr, res.stderr
    assert (filled_vault / "vault.json").read_bytes() == before


def test_new_tsa_root_does_not_replace_the_root_of_earlier_tokens(
    cli: Cli, stamped: Path, tsa: Any, tmp_path: Path
) -> None:
    """stamp --tsa-ca with another root for the same TSA (renewed, or a mistake) must leave the earlier
    tokens checkable against the root they were made under."""
    other = LocalTSA()
    try:
        wrong = tmp_path / "other-root.pem"
        wrong.write_bytes(other.ca_pem)
    finally:
        other.stop()
    extra = tmp_path / "later.txt"
    extra.write_text("later\n")
    assert cli("--vault", stamped, "add", extra).code == 0
    res = cli("--vault", stamped, "stamp", "--tsa", tsa.url, "--tsa-ca", wrong, "--json")
    assert res.code == 1, res.stderr  # refused: wrong root
    assert [q["service"] for q in res.json()["queued"]] == [f"tsa:{tsa.url}"]
    assert res.json()["refused"] == res.json()["queued"]
    code, report = _verify(cli, stamped)
    assert code == 0 and "anchors.tsa-invalid" not in _codes(report), report["findings"]
    first = [f for f in report["findings"] if f["code"] == "anchors.tsa-valid"]
    assert first and first[0]["subject"].startswith(f"checkpoints/{_cp_dirs(stamped)[0].name}/")


def test_tsa_answer_refused_is_an_error_naming_the_tsa_and_root_and_keeps_the_stamp_queued(
    cli: Cli, filled_vault: Path, tmp_path: Path, home: Path
) -> None:
    """A TSA that answers garbage, or whose token does not verify against the --tsa-ca given, used to be
    a warning with exit 0, as if the laptop were offline: a cron job or a field worker never learned
    that nothing would ever be stamped. Now one error line each naming the TSA (and the root), exit 1;
    the checkpoint and the queue are kept, and the right --tsa-ca then stamps."""
    offline = ["--calendar", "http://127.0.0.1:9", "--min-calendars", "1", "--timeout", "5"]
    log = (filled_vault / "log.jsonl").read_bytes()
    with LocalTSA(mode="garbage") as bad, LocalTSA() as good, LocalTSA() as other:
        ca, wrong, bad_ca = tmp_path / "ca.pem", tmp_path / "wrong-root.pem", tmp_path / "bad-ca.pem"
        ca.write_bytes(good.ca_pem)
        wrong.write_bytes(other.ca_pem)
        bad_ca.write_bytes(bad.ca_pem)
        res = cli("--vault", filled_vault, "stamp", *offline, "--tsa", bad.url, "--tsa-ca", bad_ca)
        assert res.code == 1
        errors = [line for line in res.stderr.splitlines() if line.startswith("evidence-vault: error:")]
        assert len(errors) == 1 and f"TSA {bad.url}: not an RFC 3161 time-stamp response" in errors[0]
        assert "ParseError {" not in res.stderr  # no Rust debug dump
        assert "warning: queued checkpoint 5 for ots" in res.stderr  # offline: still only a warning
        res = cli("--vault", filled_vault, "stamp", "--tsa", good.url, "--tsa-ca", wrong, "--json")
        assert res.code == 1
        refused = {q["service"]: q["reason"] for q in res.json()["refused"]}
        assert set(refused) == {f"tsa:{bad.url}", f"tsa:{good.url}"}
        assert "does not verify against the root saved for it" in refused[f"tsa:{good.url}"]
        assert "from --tsa-ca" in refused[f"tsa:{good.url}"]
        queue = json.loads((filled_vault / "checkpoints" / "queue.json").read_text())
        assert queue == {"ots": [5], f"tsa:{bad.url}": [5], f"tsa:{good.url}": [5]}
        vault_id = json.loads((filled_vault / "vault.json").read_text())["vault_id"]

        def pinned() -> set[str]:
            return set(json.loads((home / "vaults.json").read_text())[vault_id].get("tsa_roots", []))

        def sha(path: Path) -> str:
            return hashlib.sha256(path.read_bytes()).hexdigest()

        assert pinned() == set()  # a root the TSA's answer refused is not trusted on this machine
        res = cli("--vault", filled_vault, "upgrade", "--json")
        assert res.code == 1 and len(res.json()["refused"]) == 2
        bad.mode = "ok"
        res = cli("--vault", filled_vault, "stamp", "--tsa", good.url, "--tsa-ca", ca, "--json")
        assert res.code == 0, res.stderr
        assert sorted(s["tsa"] for s in res.json()["stamped"]) == sorted([bad.url, good.url])
        assert pinned() == {sha(ca), sha(bad_ca)}  # pinned once a token verified under it; not `wrong`
    assert (filled_vault / "log.jsonl").read_bytes().startswith(log)
    assert json.loads((filled_vault / "checkpoints" / "queue.json").read_text()) == {"ots": [5]}
    code, report = _verify(cli, filled_vault)
    assert code == 0 and not _codes(report), report["findings"]


def test_prove_again_into_the_same_directory_leaves_no_stale_file(
    cli: Cli, stamped: Path, tsa: Any, tmp_path: Path
) -> None:
    """The default --out is the same for the same item: a second proof, in a checkpoint stamped by
    another TSA, must not keep the first proof's token (which then failed anchors.tsa-invalid)."""
    out = tmp_path / "proof"
    assert cli("--vault", stamped, "prove", SAMPLE_FILES[1], "--out", out).code == 0
    first = {p.name for p in out.glob("tsa-*.tsr")}
    doc = json.loads((stamped / "vault.json").read_text())
    doc["stamping"]["tsas"] = []  # this TSA is no longer used
    (stamped / "vault.json").write_text(json.dumps(doc))
    extra = tmp_path / "later.txt"
    extra.write_text("later\n")
    assert cli("--vault", stamped, "add", extra).code == 0
    ca = tmp_path / "ca.pem"
    ca.write_bytes(tsa.ca_pem)
    assert cli("--vault", stamped, "stamp", "--tsa", tsa.url + "other", "--tsa-ca", ca).code == 0
    res = cli("--vault", stamped, "prove", SAMPLE_FILES[1], "--out", tmp_path / "earliest", "--json")
    assert res.code == 0 and res.json()["tree_size"] == 5  # the earliest anchored checkpoint: earliest time
    assert res.json()["anchored"] is True and "warning" not in res.stderr
    first_cp = _cp_dirs(stamped)[0]
    os.chmod(first_cp, 0o755)
    for proof in [*first_cp.glob("tsa-*"), first_cp / "checkpoint.ots"]:
        proof.unlink()  # now only the later checkpoint is anchored
    res = cli("--vault", stamped, "prove", SAMPLE_FILES[1], "--out", out, "--json")
    assert res.code == 0, res.stderr
    assert res.json()["tree_size"] == 7
    assert not first & {p.name for p in out.glob("tsa-*.tsr")}
    res = cli("verify-proof", out, "--json")
    assert res.code == 0 and not _codes(res.json()), res.json()["findings"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".proof")] == []
    # a directory that is not a proof is never replaced (the vault itself is refused before that)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "case.txt").write_text("keep\n")
    res = cli("--vault", stamped, "prove", SAMPLE_FILES[1], "--out", notes)
    assert res.code == 2 and "not a proof directory" in res.stderr
    assert (notes / "case.txt").read_text() == "keep\n"
    res = cli("--vault", stamped, "prove", SAMPLE_FILES[1], "--out", stamped)
    assert res.code == 2 and "inside the vault" in res.stderr


def test_tsa_token_without_its_json_is_made_again(cli: Cli, stamped: Path, tsa: Any) -> None:
    """stamp interrupted between writing a token and the .json naming its root: the next stamp makes
    the token again (before, the token stayed, untrusted, for good)."""
    d = _cp_dirs(stamped)[0]
    next(d.glob("tsa-*.json")).unlink()
    code, report = _verify(cli, stamped)
    assert "anchors.tsa-untrusted" in _codes(report, "WARN")
    res = cli("--vault", stamped, "stamp", "--json")
    assert res.code == 0, res.stderr
    assert [s["service"] for s in res.json()["stamped"]] == ["rfc3161"]
    code, report = _verify(cli, stamped)
    assert code == 0 and "anchors.tsa-valid" in _codes(report, "INFO"), report["findings"]


def test_offline_stamp_waits_once_per_service_not_once_per_queued_checkpoint(
    cli: Cli, filled_vault: Path, tmp_path: Path
) -> None:
    """Behind a network that swallows requests (a captive portal), each queued checkpoint used to wait
    the full timeout again: after the first timeout, the other stamps of that service stay queued."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def swallow() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(conn)  # never answered

    threading.Thread(target=swallow, daemon=True).start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}"
    try:
        stamp = ["stamp", "--calendar", url, "--min-calendars", "1", "--timeout", "1", "--json"]
        for name in ("one", "two"):
            assert cli("--vault", filled_vault, *stamp).code == 0
            extra = tmp_path / f"{name}.txt"
            extra.write_text(name)
            assert cli("--vault", filled_vault, "add", extra).code == 0
        before = len(accepted)
        res = cli("--vault", filled_vault, *stamp)
        assert res.code == 0, res.stderr
        assert sorted(q["size"] for q in res.json()["queued"]) == [5, 7, 9]
        assert len(accepted) - before == 1
        assert json.loads((filled_vault / "checkpoints" / "queue.json").read_text()) == {"ots": [5, 7, 9]}
    finally:
        server.close()
        for conn in accepted:
            conn.close()


def test_a_tsa_or_calendar_that_answers_byte_by_byte_does_not_hold_stamp_or_upgrade(
    cli: Cli, filled_vault: Path, tmp_path: Path
) -> None:
    """--timeout used to bound each read only: a TSA or calendar that sends one byte every 0.2 s kept
    `stamp --tsa URL --timeout 1` (and `upgrade`, retrying it) waiting for hours. The whole request
    must end within --timeout; the stamp stays queued, and says why."""
    import time

    with SlowServer() as slow:
        start = time.monotonic()
        args = ["stamp", "--calendar", "http://127.0.0.1:9", "--min-calendars", "1"]
        res = cli("--vault", filled_vault, *args, "--tsa", slow.url, "--timeout", "1", "--json")
        assert res.code == 0, res.stderr
        assert time.monotonic() - start < 15
        assert slow.requests == 1
        reasons = {q["service"]: q["reason"] for q in res.json()["queued"]}
        assert reasons[f"tsa:{slow.url}"] == f"TSA {slow.url} unreachable: no complete answer within 1 s"
        start = time.monotonic()
        res = cli("--vault", filled_vault, "upgrade", "--timeout", "1", "--json")
        assert res.code == 0, res.stderr
        assert time.monotonic() - start < 15
        assert slow.requests == 2
        queue = json.loads((filled_vault / "checkpoints" / "queue.json").read_text())
        assert queue == {"ots": [5], f"tsa:{slow.url}": [5]}


def test_tsa_root_planted_in_the_vault_proves_no_time(
    cli: Cli, stamped: Path, home: Path, tmp_path: Path
) -> None:
    """Someone who can write the vault but holds no key plants their own TSA root and a token of their
    own TSA over a checkpoint (genTime of their choosing): verify must not count it as a proven time. The
    root `stamp --tsa-ca` gave is pinned on this machine (outside the vault) and still counts."""
    import hashlib

    from evidence_vault.timestamps import rfc3161

    (d,) = [p for p in (stamped / "checkpoints").iterdir() if p.is_dir() and p.name.isdigit()]
    digest = hashlib.sha256((d / "checkpoint").read_bytes()).digest()
    with LocalTSA() as evil:
        tsr = rfc3161.request_token(evil.url, digest, timeout=20)
        evil_ca = evil.ca_pem
    for p in (d, stamped / "checkpoints" / "tsa-roots"):
        os.chmod(p, 0o755)
    (stamped / "checkpoints" / "tsa-roots" / "evil.pem").write_bytes(evil_ca)
    (d / "tsa-evil.tsr").write_bytes(tsr)
    meta = {"url": "https://evil.example/", "ca": "checkpoints/tsa-roots/evil.pem"}
    (d / "tsa-evil.json").write_text(json.dumps(meta))
    code, report = _verify(cli, stamped)
    assert code == 0, report["findings"]
    unpinned = [f for f in report["findings"] if f["code"] == "anchors.tsa-unpinned"]
    assert [f["subject"] for f in unpinned] == [f"checkpoints/{d.name}/tsa-evil.tsr"], unpinned
    assert all("evil" not in str(i["proof"]) for i in report["items"])
    # The same vault seen from another machine (no pin, no config): the vault's copy of the real root
    # proves nothing either, until the user gives their own copy with --tsa-ca.
    (home / "vaults.json").unlink()
    code, report = _verify(cli, stamped)
    unpinned = sorted(f["subject"] for f in report["findings"] if f["code"] == "anchors.tsa-unpinned")
    assert len(unpinned) == 2 and unpinned[-1].endswith("tsa-evil.tsr"), unpinned
    assert all(not str(i["proof"] or "").startswith("rfc3161") for i in report["items"])
    code, report = _verify(cli, stamped, "--tsa-ca", tmp_path / "tsa-ca.pem")
    assert "anchors.tsa-unpinned" not in _codes(report, "WARN")
    assert "anchors.tsa-valid" in _codes(report, "INFO")  # the real token, against your root
    assert any(f["code"] == "anchors.tsa-invalid" and "tsa-evil" in f["subject"] for f in report["findings"])


def test_timeline_states_only_the_times_verify_proves(
    cli: Cli, stamped: Path, home: Path, tmp_path: Path
) -> None:
    """`timeline` read the genTime of every tsa-*.tsr it could parse, without checking it: on a machine
    where the TSA root is not pinned it said "existed by <genTime>" while verify said 0 items proven,
    and a token of some other data copied into a checkpoint directory (here a real sigstage token of
    May 2025) backdated every item to its genTime. It must state what verify states, no more."""
    item = SAMPLE_FILES[0]

    def proof_of(*extra: Any) -> str:
        res = cli("--vault", stamped, "timeline", item, "--json", *extra)
        assert res.code == 0, res.stderr
        value: str = res.json()["events"][0]["proof"]
        return value

    _, report = _verify(cli, stamped)
    since = report["items"][0]["proven_since"]
    assert since and report["items"][0]["proof"].startswith("rfc3161")
    assert proof_of().startswith(f"existed by {since} ")
    # A foreign token (another digest, another TSA) planted beside the checkpoint proves nothing.
    d = _cp_dirs(stamped)[0]
    os.chmod(d, 0o755)
    shutil.copyfile(CORPUS / "timestamps/rfc3161/sigstage/response-sha256.tsr", d / "tsa-planted.tsr")
    assert proof_of().startswith(f"existed by {since} ")
    (d / "tsa-planted.tsr").unlink()
    # Another machine (no pin of the TSA root): verify proves no time, and so does the timeline...
    (home / "vaults.json").unlink()
    _, report = _verify(cli, stamped)
    assert not any(i["proven_since"] for i in report["items"])
    text = proof_of()
    assert "existed by" not in text and "no proven time" in text and "pending" in text, text
    # ...until the user gives their own copy of the root, as to verify.
    _, report = _verify(cli, stamped, "--tsa-ca", tmp_path / "tsa-ca.pem")
    assert report["items"][0]["proven_since"] == since
    assert proof_of("--tsa-ca", tmp_path / "tsa-ca.pem").startswith(f"existed by {since} ")
    res = cli("--vault", stamped, "timeline", item, "--tsa-ca", tmp_path / "no-such.pem")
    assert res.code == 2 and "no-such.pem" in res.stderr


def test_tsa_root_shipped_in_a_bag_proves_no_time_by_itself(
    cli: Cli, stamped: Path, home: Path, tmp_path: Path
) -> None:
    """A recipient of a bag has pinned nothing: the root shipped beside a token was chosen by whoever
    made the bag, so only a root the recipient gives makes the token prove a time."""
    bag = tmp_path / "bag"
    assert cli("--vault", stamped, "export", "--all", "--out", bag).code == 0
    mine = cli("verify-bundle", bag, "--json")  # the machine that stamped pinned the root
    assert "anchors.tsa-valid" in _codes(mine.json(), "INFO"), mine.stdout
    (home / "vaults.json").unlink()  # a lawyer's machine
    res = cli("verify-bundle", bag, "--json")
    report = res.json()
    assert res.code == 0 and "anchors.tsa-unpinned" in _codes(report, "WARN"), report["findings"]
    # The lawyer has no vault to `upgrade`: the hint of the pending OpenTimestamps proof is the exporter's.
    (pending,) = [f["message"] for f in report["findings"] if f["code"] == "anchors.ots-pending"]
    assert pending.endswith("whoever keeps the vault runs `evidence-vault upgrade`, then exports again")
    assert "anchors.tsa-valid" not in _codes(report, "INFO")
    res = cli("verify-bundle", bag, "--json", "--tsa-ca", tmp_path / "tsa-ca.pem")
    assert "anchors.tsa-valid" in _codes(res.json(), "INFO") and "anchors.tsa-unpinned" not in _codes(
        res.json(), "WARN"
    )


def test_prove_says_when_no_checkpoint_is_anchored_yet(cli: Cli, filled_vault: Path, tmp_path: Path) -> None:
    """A proof in an unanchored checkpoint shows inclusion, signed, but no time: prove says so."""
    assert cli("--vault", filled_vault, "checkpoint").code == 0
    res = cli("--vault", filled_vault, "prove", SAMPLE_FILES[1], "--out", tmp_path / "p", "--json")
    assert res.code == 0, res.stderr
    assert res.json()["anchored"] is False and res.json()["tree_size"] == 5
    assert "no checkpoint covering this item is anchored in time yet" in res.stderr
    assert "evidence-vault stamp" in res.stderr


def test_verify_proof_counts_what_it_checked(cli: Cli, filled_vault: Path, tmp_path: Path) -> None:
    """verify-proof's summary names the one event and item it checked and the bytes of --file."""
    assert cli("--vault", filled_vault, "checkpoint").code == 0
    assert cli("--vault", filled_vault, "prove", SAMPLE_FILES[1], "--out", tmp_path / "p").code == 0
    res = cli("verify-proof", tmp_path / "p", "--file", SAMPLE_FILES[1], "--json")
    assert res.json()["stats"] == {
        "events": 1,
        "items": 1,
        "bytes_hashed": Path(SAMPLE_FILES[1]).stat().st_size,
    }
    res = cli("verify-proof", tmp_path / "p")
    assert "1 event, 1 item, 0 B re-hashed" in res.stderr


def test_attack_verify_proof_key_filed_under_a_trusted_fingerprint(
    cli: Cli, stamped: Path, tmp_path: Path, identity: str
) -> None:
    """A proof is forged whole by someone with a key of their own: event and checkpoint signed by it,
    and its public key filed in ``keys`` under the trusted fingerprint. The fingerprint must be the
    key's, or ``--trust`` pins nothing; and the unsigned ``genesis_key`` is not reported as pinned."""
    out = tmp_path / "proof"
    assert cli("--vault", stamped, "prove", SAMPLE_FILES[1], "--out", out).code == 0
    doc = json.loads((out / "proof.json").read_text())
    attacker = signing.generate()
    value = json.loads(doc["event_line"])
    event = Event.from_dict(value)
    value["sig"] = base64.b64encode(attacker.sign(event.signing_bytes())).decode()
    line = canonical(value)
    cp = Checkpoint(origin=f"evidence-vault/{doc['vault_id']}", size=1, root=merkle.leaf_hash(line))
    for f in out.iterdir():
        f.unlink()
    (out / "checkpoint").write_bytes(cp.to_text())
    (out / "checkpoint.sig").write_text(signing.armor(attacker.sign(cp.to_text())))
    forged = {
        **doc,
        "event_line": line.decode(),
        "leaf_index": 0,
        "tree_size": 1,
        "inclusion_path": [],
        "checkpoint_signer": identity,
        "keys": {identity: attacker.public.openssh()},
        "files": ["checkpoint", "checkpoint.sig"],
    }
    (out / "proof.json").write_text(json.dumps(forged))
    res = cli("verify-proof", out, "--trust", identity, "--json")
    assert res.code == 1, res.stdout
    assert "proof.key-mismatch" in _codes(res.json())
    assert not res.json()["genesis_pinned"]
