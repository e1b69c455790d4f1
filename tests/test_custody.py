"""Chain of custody with three keys through the CLI; forbidden actions refused (nothing recorded);
and the same forbidden events, written into the log by hand, caught by verify."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from evidence_vault import events as ev
from evidence_vault.events import Event, line_hash
from evidence_vault.signing import Signer
from tests.conftest import Cli, signer_of
from tests.paths import CORPUS

PHOTO = CORPUS / "images" / "Canon_40D.jpg"
VIDEO = CORPUS / "video" / "with-gps.mov"


class Team:
    """Alice (genesis admin), Bob (custodian), Carol (admin) in one vault."""

    def __init__(self, cli: Cli, vault: Path) -> None:
        self.cli, self.vault = cli, vault

    def run(self, who: str, *args: Any) -> Any:
        return self.cli("--vault", self.vault, "--key", getattr(self, who), *args)

    def lines(self) -> list[bytes]:
        return (self.vault / "log.jsonl").read_bytes().splitlines()


@pytest.fixture
def team(cli: Cli, tmp_path: Path) -> Team:
    fps = {}
    for name in ("Alice", "Bob", "Carol"):
        res = cli("key", "new", "--name", name, "--json")
        assert res.code == 0, res.stderr
        fps[name.lower()] = res.json()["fingerprint"]
    vault = tmp_path / "vault"
    assert cli("--key", fps["alice"], "init", vault).code == 0
    t = Team(cli, vault)
    t.alice, t.bob, t.carol = fps["alice"], fps["bob"], fps["carol"]  # type: ignore[attr-defined]
    assert t.run("alice", "add", PHOTO, VIDEO).code == 0
    for who, role in (("bob", "custodian"), ("carol", "admin")):
        pub = cli("key", "export-public", fps[who]).stdout.strip()
        res = t.run("alice", "key", "add", pub, "--role", role)
        assert res.code == 0, res.stderr
    return t


def _verify(team: Team) -> tuple[int, dict[str, Any]]:
    res = team.cli("--vault", team.vault, "verify", "--json", "--trust", team.alice)  # type: ignore[attr-defined]
    return res.code, json.loads(res.stdout)


def _fails(report: dict[str, Any]) -> set[str]:
    return {f["code"] for f in report["findings"] if f["level"] == "FAIL"}


def _item(team: Team, path: Path) -> str:
    res = team.cli("--vault", team.vault, "show", path, "--json")
    return str(res.json()["id"])


def test_collect_transfer_accept_derive_revoke_rotate(team: Team, tmp_path: Path) -> None:
    photo = _item(team, PHOTO)
    res = team.run("alice", "transfer", PHOTO, "--to", team.bob, "--reason", "to the archive", "--json")  # type: ignore[attr-defined]
    assert res.code == 0, res.stderr
    tid = res.json()["transfer_id"]
    pending = team.cli("--vault", team.vault, "timeline", PHOTO, "--json").json()
    assert [e["type"] for e in pending["events"]] == ["item.ingested", "custody.transferred"]
    assert team.run("bob", "accept", tid).code == 0
    held = team.cli("--vault", team.vault, "ls", "--custodian", team.bob, "--json").json()  # type: ignore[attr-defined]
    assert [i["id"] for i in held] == [photo]
    # Bob makes a redacted working copy; show of either names the other.
    redacted = tmp_path / "redacted.jpg"
    redacted.write_bytes(PHOTO.read_bytes()[:-100] + b"\x00" * 100)
    res = team.run(
        "bob", "derive", photo[7:19], redacted, "--action", "redact", "--tool", "exiftool 12", "--json"
    )
    assert res.code == 0, res.stderr
    derived = res.json()["id"]
    assert team.cli("--vault", team.vault, "show", photo[7:19], "--json").json()["derived_copies"] == [
        derived
    ]
    assert team.cli("--vault", team.vault, "show", redacted, "--json").json()["derived_from"] == photo
    assert (
        team.run("bob", "annotate", photo[7:19], "--note", "faces blurred in copy", "--tag", "reviewed").code
        == 0
    )
    assert team.run("bob", "access", photo[7:19], "--purpose", "court preparation").code == 0
    opened = team.run("bob", "open", photo[7:19], "--json")
    assert opened.code == 0 and Path(opened.json()["path"]).read_bytes() == PHOTO.read_bytes()
    # Carol (admin) revokes Bob; Alice rotates her key.
    assert team.run("carol", "key", "revoke", team.bob, "--reason", "left the organisation").code == 0  # type: ignore[attr-defined]
    res = team.run("alice", "key", "rotate", "--json")
    assert res.code == 0, res.stderr
    new_alice = res.json()["new"]
    assert (
        team.cli("--vault", team.vault, "--key", new_alice, "annotate", photo[7:19], "--note", "ok").code == 0
    )
    timeline = team.cli("--vault", team.vault, "timeline", photo[7:19], "--json").json()["events"]
    assert [e["type"] for e in timeline] == [
        "item.ingested",
        "custody.transferred",
        "custody.accepted",
        "item.derived",
        "item.annotated",
        "item.accessed",
        "item.accessed",
        "item.annotated",
    ]
    assert timeline[2]["actor_name"] == "Bob"
    md = team.cli("--vault", team.vault, "timeline", photo[7:19], "--format", "markdown")
    assert md.code == 0 and "| seq |" in md.stdout and "custody accepted" in md.stdout
    keys = team.cli("--vault", team.vault, "key", "list", "--json").json()["authorized"]
    by_fp = {k["fingerprint"]: k for k in keys}
    assert by_fp[team.bob]["revoked_seq"] is not None  # type: ignore[attr-defined]
    assert by_fp[team.alice]["revoked_reason"].startswith("rotated to")  # type: ignore[attr-defined]
    assert by_fp[new_alice]["role"] == "admin"
    code, report = _verify(team)
    assert code == 0 and not _fails(report), report["findings"]


def test_find_reports_membership(team: Team, tmp_path: Path) -> None:
    other = tmp_path / "other.bin"
    other.write_bytes(b"not evidence")
    res = team.cli("--vault", team.vault, "find", PHOTO, other, "--json")
    assert res.code == 1
    found = {Path(r["path"]).name: r["in_vault"] for r in res.json()}
    assert found == {"Canon_40D.jpg": True, "other.bin": False}


# -- forbidden actions: a clear one-line error, nothing recorded ------------------------------------


def _refused(team: Team, res: Any, before: list[bytes], needle: str) -> None:
    assert res.code == 2, (res.stdout, res.stderr)
    assert needle in res.stderr and "nothing recorded" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert team.lines() == before


def test_unauthorized_signer_refused(team: Team, cli: Cli) -> None:
    dave = cli("key", "new", "--name", "Dave", "--json").json()["fingerprint"]
    before = team.lines()
    res = cli("--vault", team.vault, "--key", dave, "annotate", PHOTO, "--note", "hi")
    _refused(team, res, before, "never authorized")


def test_revoked_signer_refused(team: Team) -> None:
    assert team.run("alice", "key", "revoke", team.bob, "--reason", "lost laptop").code == 0  # type: ignore[attr-defined]
    before = team.lines()
    _refused(team, team.run("bob", "annotate", PHOTO, "--note", "x"), before, "was revoked")


def test_custodian_cannot_add_keys(team: Team, cli: Cli) -> None:
    dave = cli("key", "new", "--name", "Dave", "--json").json()["fingerprint"]
    pub = cli("key", "export-public", dave).stdout.strip()
    before = team.lines()
    _refused(team, team.run("bob", "key", "add", pub), before, "may not add or revoke keys")


def test_accept_by_wrong_key_refused(team: Team) -> None:
    tid = team.run("alice", "transfer", PHOTO, "--to", team.bob, "--json").json()["transfer_id"]  # type: ignore[attr-defined]
    before = team.lines()
    _refused(team, team.run("carol", "accept", tid), before, "not to")


def test_transfer_by_non_holder_refused(team: Team) -> None:
    before = team.lines()
    _refused(team, team.run("bob", "transfer", PHOTO, "--to", team.carol), before, "does not hold")  # type: ignore[attr-defined]


def test_transfer_to_a_key_the_vault_does_not_know_says_how_to_add_it(team: Team, cli: Cli) -> None:
    dave = cli("key", "new", "--name", "Dave", "--json").json()["fingerprint"]
    before = team.lines()
    res = team.run("alice", "transfer", PHOTO, "--to", dave)
    _refused(team, res, before, "no key of this vault matches")
    assert "evidence-vault key add" in res.stderr


def test_derive_from_missing_original_refused(team: Team, tmp_path: Path) -> None:
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(b"some working copy")
    before = team.lines()

    def objects() -> list[str]:
        return sorted(p.name for p in (team.vault / "objects" / "sha256").rglob("*") if p.is_file())

    stored = objects()
    res = team.run("alice", "derive", "ab" * 8, copy, "--action", "redact", "--tool", "t")
    assert res.code == 2 and "no item" in res.stderr
    assert team.lines() == before
    assert objects() == stored, "a refused derive must not leave the working copy in the store"


def test_key_backup_and_import_of_existing_ssh_key(cli: Cli, tmp_path: Path, identity: str) -> None:
    backup = tmp_path / "backup.key"
    assert cli("key", "export", "--encrypted", backup).code == 0
    assert backup.read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    assert oct(backup.stat().st_mode & 0o777) == "0o600"
    # Restoring into a fresh home gives the same fingerprint.
    res = cli("key", "import", backup, "--json", env={"EVIDENCE_VAULT_HOME": str(tmp_path / "new-home")})
    assert res.code == 0, res.stderr
    assert res.json()["fingerprint"] == identity
    # A field worker's existing OpenSSH key.
    ssh = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "worker@field", "-f", ssh], check=True
    )
    res = cli("key", "import", ssh, "--json")
    assert res.code == 0, res.stderr
    printed = subprocess.run(["ssh-keygen", "-lf", f"{ssh}.pub"], capture_output=True, text=True).stdout
    assert res.json()["fingerprint"] in printed and res.json()["name"] == "worker@field"


# -- the same forbidden events written into the log by hand: verify must catch them -----------------


def _forge(team: Team, signer: Signer, etype: str, data: dict[str, Any]) -> None:
    lines = team.lines()
    prev_event = json.loads(lines[-1])
    e = Event(
        seq=prev_event["seq"] + 1,
        prev=line_hash(lines[-1]),
        time="2030-01-01T00:00:00.000Z",
        type=etype,
        actor=signer.fingerprint,
        data=data,
    )
    e = Event(**{**e.__dict__, "sig": base64.b64encode(signer.sign(e.signing_bytes())).decode()})
    with open(team.vault / "log.jsonl", "ab") as fh:
        fh.write(e.line() + b"\n")


def test_verify_catches_revoked_signer_by_hand(team: Team, home: Path) -> None:
    assert team.run("alice", "key", "revoke", team.bob, "--reason", "x").code == 0  # type: ignore[attr-defined]
    _forge(team, signer_of(home, team.bob), ev.ITEM_ANNOTATED, {"item": _item(team, PHOTO), "tags": ["x"]})  # type: ignore[attr-defined]
    code, report = _verify(team)
    assert code == 1 and "log.unauthorized-signer" in _fails(report)


def test_verify_catches_accept_by_wrong_key_by_hand(team: Team, home: Path) -> None:
    tid = team.run("alice", "transfer", PHOTO, "--to", team.bob, "--json").json()["transfer_id"]  # type: ignore[attr-defined]
    _forge(
        team,
        signer_of(home, team.carol),
        ev.CUSTODY_ACCEPTED,
        {"transfer_id": tid, "item": _item(team, PHOTO)},
    )  # type: ignore[attr-defined]
    code, report = _verify(team)
    assert code == 1 and "log.custody-violation" in _fails(report)


def test_verify_catches_derive_from_missing_original_by_hand(team: Team, home: Path) -> None:
    _forge(
        team,
        signer_of(home, team.alice),
        ev.ITEM_DERIVED,  # type: ignore[attr-defined]
        {"original": "sha256:" + "0" * 64, "derived": _item(team, PHOTO), "action": "redact", "tool": "t"},
    )
    code, report = _verify(team)
    assert code == 1 and "log.custody-violation" in _fails(report)


def test_verify_catches_key_added_by_custodian_by_hand(team: Team, home: Path, cli: Cli) -> None:
    dave = cli("key", "new", "--name", "Dave", "--json").json()
    key = {"fingerprint": dave["fingerprint"], "public_key": dave["public_key"], "name": "Dave"}
    _forge(team, signer_of(home, team.bob), ev.KEY_ADDED, {"key": key, "role": "admin"})  # type: ignore[attr-defined]
    code, report = _verify(team)
    assert code == 1 and "log.unauthorized-signer" in _fails(report)


def test_verify_catches_transfer_by_non_holder_by_hand(team: Team, home: Path) -> None:
    _forge(
        team,
        signer_of(home, team.bob),
        ev.CUSTODY_TRANSFERRED,  # type: ignore[attr-defined]
        {"transfer_id": "t1", "item": _item(team, PHOTO), "to": team.carol},
    )  # type: ignore[attr-defined]
    code, report = _verify(team)
    assert code == 1 and "log.custody-violation" in _fails(report)


def test_timeline_markdown_escapes_hostile_text(team: Team) -> None:
    """A tag is free text: as a markdown cell it must stay text (no HTML comment hiding later rows)."""
    photo = _item(team, PHOTO)
    assert team.run("alice", "annotate", photo[7:19], "--tag", "<!-- x|y `z`").code == 0
    assert team.run("alice", "access", photo[7:19], "--purpose", "after").code == 0
    md = team.cli("--vault", team.vault, "timeline", photo[7:19], "--format", "markdown")
    assert md.code == 0, md.stderr
    rows = [line for line in md.stdout.splitlines() if line.startswith("| ")]
    assert "<!--" not in md.stdout and "&lt;!--" in md.stdout
    assert all(line.count(" | ") == 4 for line in rows[2:]), rows
    assert "original viewed" in rows[-1]
    assert any("&lt;!-- x\\|y \\`z\\`" in line for line in rows), rows
