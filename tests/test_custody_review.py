"""Custody and key rules found missing in review: each test failed before its fix."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SAMPLE_FILES, Cli


def _new_key(cli: Cli, name: str) -> str:
    res = cli("key", "new", "--name", name, "--json")
    assert res.code == 0, res.stderr
    return str(res.json()["fingerprint"])


def _log(vault: Path) -> bytes:
    return (vault / "log.jsonl").read_bytes()


def test_last_admin_cannot_revoke_itself(cli: Cli, tmp_path: Path) -> None:
    """Revoking the only admin key left a vault in which nobody could ever add or revoke a key."""
    alice = _new_key(cli, "Alice")
    vault = tmp_path / "v"
    assert cli("--key", alice, "init", vault).code == 0
    before = _log(vault)
    res = cli("--vault", vault, "--key", alice, "key", "revoke", alice, "--reason", "oops")
    assert res.code == 2, (res.stdout, res.stderr)
    assert "last admin" in res.stderr and "nothing recorded" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert _log(vault) == before
    # With a second admin, either may be revoked (by itself or the other), but not both.
    bob = _new_key(cli, "Bob")
    pub = cli("key", "export-public", bob).stdout.strip()
    assert cli("--vault", vault, "--key", alice, "key", "add", pub, "--role", "admin").code == 0
    assert cli("--vault", vault, "--key", bob, "key", "revoke", alice, "--reason", "left").code == 0
    res = cli("--vault", vault, "--key", bob, "key", "revoke", bob, "--reason", "oops")
    assert res.code == 2 and "last admin" in res.stderr
    # A custodian key may still be revoked, and rotating the last admin still works.
    carol = _new_key(cli, "Carol")
    pub = cli("key", "export-public", carol).stdout.strip()
    assert cli("--vault", vault, "--key", bob, "key", "add", pub).code == 0
    assert cli("--vault", vault, "--key", bob, "key", "revoke", carol, "--reason", "left").code == 0
    assert cli("--vault", vault, "--key", bob, "key", "rotate").code == 0


def _vault_with(cli: Cli, tmp_path: Path, *custodians: str) -> tuple[Path, str, list[str]]:
    """A vault of Alice (genesis admin) with two small items, and these custodian keys authorized."""
    alice = _new_key(cli, "Alice")
    vault = tmp_path / "v"
    assert cli("--key", alice, "init", vault).code == 0
    files = []
    for i in range(2):
        f = tmp_path / f"photo{i}.bin"
        f.write_bytes(b"photo %d" % i)
        files.append(f)
    assert cli("--vault", vault, "--key", alice, "add", *files).code == 0
    fps = []
    for name in custodians:
        fp = _new_key(cli, name)
        pub = cli("key", "export-public", fp).stdout.strip()
        assert cli("--vault", vault, "--key", alice, "key", "add", pub).code == 0
        fps.append(fp)
    items = [cli("--vault", vault, "show", f, "--json").json()["id"] for f in files]
    return vault, alice, [*fps, *items]


def _verify_passes(cli: Cli, vault: Path, alice: str) -> None:
    res = cli("--vault", vault, "verify", "--json", "--trust", alice)
    fails = [f for f in res.json()["findings"] if f["level"] == "FAIL"]
    assert res.code == 0 and not fails, fails


def test_rotated_key_keeps_custody_and_pending_transfers(cli: Cli, tmp_path: Path) -> None:
    """After `key rotate`, the new key could neither accept a transfer made to the old one nor hand on
    the items the old one held: only an admin could ever move them again."""
    vault, alice, (bob, photo, _) = _vault_with(cli, tmp_path, "Bob")

    res = cli("--vault", vault, "--key", alice, "transfer", photo, "--to", bob, "--json")
    assert res.code == 0, res.stderr
    res = cli("--vault", vault, "--key", bob, "key", "rotate", "--json")
    assert res.code == 0, res.stderr
    new_bob = res.json()["new"]
    res = cli("--vault", vault, "--key", new_bob, "accept", "--all", "--json")
    assert res.code == 0, res.stderr
    assert [e["data"]["item"] for e in res.json()] == [photo]
    held = cli("--vault", vault, "ls", "--custodian", new_bob, "--json").json()
    assert [i["id"] for i in held] == [photo]
    # Bob rotates again; the newest key still holds what the first one accepted... and hands it back.
    newest = cli("--vault", vault, "--key", new_bob, "key", "rotate", "--json").json()["new"]
    res = cli("--vault", vault, "--key", newest, "transfer", photo, "--to", alice)
    assert res.code == 0, res.stderr
    assert cli("--vault", vault, "--key", alice, "accept", "--all").code == 0
    _verify_passes(cli, vault, alice)


def test_transfer_to_a_revoked_key_can_be_superseded(cli: Cli, tmp_path: Path) -> None:
    """A transfer pending to a key revoked since (a seized laptop) blocked the item for good: nobody
    could accept it, and no one, not even an admin, could transfer the item again."""
    vault, alice, (bob, carol, photo, _) = _vault_with(cli, tmp_path, "Bob", "Carol")
    assert cli("--vault", vault, "--key", alice, "transfer", photo, "--to", bob).code == 0
    # Still pending to an active key: a second transfer is refused.
    res = cli("--vault", vault, "--key", alice, "transfer", photo, "--to", carol)
    assert res.code == 2 and "pending transfer" in res.stderr
    assert cli("--vault", vault, "--key", alice, "key", "revoke", bob, "--reason", "seized").code == 0
    res = cli("--vault", vault, "--key", alice, "transfer", photo, "--to", carol, "--json")
    assert res.code == 0, res.stderr
    res = cli("--vault", vault, "--key", carol, "accept", "--all", "--json")
    assert res.code == 0, res.stderr
    assert [e["data"]["item"] for e in res.json()] == [photo]
    _verify_passes(cli, vault, alice)


def test_verify_refuses_accept_by_a_key_an_admin_said_rotates(cli: Cli, tmp_path: Path, home: Path) -> None:
    """Only a rotation the old key signed itself passes its transfers on: an admin adding a key that
    claims to rotate Bob's does not let that key accept what was sent to Bob."""
    import base64
    import json

    from evidence_vault import events as ev
    from evidence_vault.events import Event, line_hash
    from tests.conftest import signer_of

    vault, alice, (bob, photo, _) = _vault_with(cli, tmp_path, "Bob")
    tid = cli("--vault", vault, "--key", alice, "transfer", photo, "--to", bob, "--json").json()[
        "transfer_id"
    ]
    mallory = cli("key", "new", "--name", "Mallory", "--json").json()
    log = vault / "log.jsonl"

    def forge(signer_fp: str, etype: str, data: dict[str, object]) -> None:
        lines = log.read_bytes().splitlines()
        e = Event(
            seq=json.loads(lines[-1])["seq"] + 1,
            prev=line_hash(lines[-1]),
            time="2030-01-01T00:00:00.000Z",
            type=etype,
            actor=signer_fp,
            data=data,
        )
        signer = signer_of(home, signer_fp)
        e = Event(**{**e.__dict__, "sig": base64.b64encode(signer.sign(e.signing_bytes())).decode()})
        with open(log, "ab") as fh:
            fh.write(e.line() + b"\n")

    key = {"fingerprint": mallory["fingerprint"], "public_key": mallory["public_key"], "name": "M"}
    forge(alice, ev.KEY_ADDED, {"key": key, "role": "custodian", "rotates": bob})
    forge(mallory["fingerprint"], ev.CUSTODY_ACCEPTED, {"transfer_id": tid, "item": photo})
    res = cli("--vault", vault, "verify", "--json", "--trust", alice)
    assert res.code == 1
    assert "log.custody-violation" in {f["code"] for f in res.json()["findings"] if f["level"] == "FAIL"}


def test_new_passphrases_are_asked_twice_at_a_prompt(
    vault: Path, identity: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`key rotate` asked once for the new key's passphrase (a typo locked the new key while the old one
    was revoked: authorship lost), as did `key export` for the backup's and `key import` for an
    unencrypted key's."""
    import subprocess
    import sys
    from types import SimpleNamespace

    import typer

    from evidence_vault.cli import keys
    from evidence_vault.cli.context import State

    passphrase = os.environ["EVIDENCE_VAULT_PASSPHRASE"]
    monkeypatch.delenv("EVIDENCE_VAULT_PASSPHRASE")
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(isatty=lambda: True))
    asked: list[tuple[str, bool]] = []

    def prompt(text: str, *, hide_input: bool = False, confirmation_prompt: bool = False) -> str:
        asked.append((text, confirmation_prompt))
        return passphrase

    monkeypatch.setattr(typer, "prompt", prompt)

    def run(command: object, **kwargs: object) -> None:
        obj = State(vault=str(vault))
        ctx = SimpleNamespace(obj=obj, find_root=lambda: ctx)
        command(ctx, **kwargs)  # type: ignore[operator]

    run(keys.export, encrypted=str(tmp_path / "backup.key"), fingerprint=None)
    assert [c for t, c in asked if "backup" in t] == [True]
    ssh = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", ssh], check=True)
    asked.clear()
    run(keys.import_, file=str(ssh), name="field", email=None, json_out=True)
    assert asked == [("New passphrase", True)]
    asked.clear()
    run(keys.rotate, name=None, json_out=True)
    assert [c for t, c in asked if "new key" in t] == [True]


@pytest.mark.parametrize(
    "entries", ['{"identities": [{"a": 1}]}', '{"identities": [1]}', '{"identities": [{"fingerprint": 5}]}']
)
def test_damaged_identity_index_is_one_line_naming_it(
    cli: Cli, vault: Path, home: Path, identity: str, entries: str
) -> None:
    """A damaged entry in identities.json was an internal error (TypeError), not a line naming the file."""
    (home / "identities.json").write_text(entries)
    for args in (
        ("key", "list"),
        ("--vault", vault, "annotate", "ab" * 8, "--note", "x"),
        ("key", "new", "--name", "x"),
    ):
        res = cli(*args)
        assert res.code == 2, (args, res.stderr)
        assert "identities.json" in res.stderr and "internal error" not in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("head", ['{"seq": "a", "hash": "x"}', "5", '{"seq": null}'])
def test_damaged_head_pin_does_not_crash_verify_or_add(
    cli: Cli, vault: Path, home: Path, identity: str, tmp_path: Path, head: str
) -> None:
    """A hand-damaged head pin in vaults.json made verify and add end in an internal error after their
    work was done (verify and the append guard already ignore such a pin)."""
    pins = json.loads((home / "vaults.json").read_text())
    (vault_id,) = pins
    pins[vault_id]["head"] = json.loads(head)
    (home / "vaults.json").write_text(json.dumps(pins))
    res = cli("--vault", vault, "verify")
    assert res.code == 0 and "internal error" not in res.stderr, res.stderr
    photo = tmp_path / "p.bin"
    photo.write_bytes(b"a photo")
    res = cli("--vault", vault, "add", photo)
    assert res.code == 0, res.stderr
    seen = json.loads((home / "vaults.json").read_text())[vault_id]["head"]
    assert seen["seq"] == len((vault / "log.jsonl").read_bytes().splitlines()) - 1


def test_key_add_twice_and_revoke_twice_are_refused(cli: Cli, tmp_path: Path) -> None:
    """Adding a key already in the vault exited 1 (the code of a FAIL) without saying that nothing was
    recorded; revoking a revoked key recorded a second key.revoked and said it was revoked there."""
    vault, alice, (bob, _, _) = _vault_with(cli, tmp_path, "Bob")
    pub = cli("key", "export-public", bob).stdout.strip()
    before = _log(vault)
    res = cli("--vault", vault, "--key", alice, "key", "add", pub)
    assert res.code == 2 and "already in this vault" in res.stderr and "nothing recorded" in res.stderr
    assert _log(vault) == before
    assert cli("--vault", vault, "--key", alice, "key", "revoke", bob, "--reason", "seized").code == 0
    before = _log(vault)
    res = cli("--vault", vault, "--key", alice, "key", "revoke", bob, "--reason", "again")
    assert res.code == 2 and "already revoked at seq" in res.stderr and "nothing recorded" in res.stderr
    res = cli("--vault", vault, "--key", alice, "key", "add", pub)
    assert res.code == 2 and "revoked at seq" in res.stderr
    assert _log(vault) == before


def test_key_add_of_a_binary_file_is_one_line(cli: Cli, vault: Path, tmp_path: Path) -> None:
    """`key add FILE` of a file that is not UTF-8 text was an internal error (UnicodeDecodeError)."""
    bad = tmp_path / "key.pub"
    bad.write_bytes(b"\xff\xfe ssh-ed25519")
    res = cli("--vault", vault, "key", "add", bad)
    assert res.code == 2 and "internal error" not in res.stderr, res.stderr
    assert "key.pub" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_half_finished_rotate_says_how_to_finish(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`key rotate` is two appends; when the second fails, the error says the new key is in and how to
    revoke the old one (running rotate again would only make a third key)."""
    import shlex

    from evidence_vault import events as ev
    from evidence_vault.errors import EvidenceVaultError
    from evidence_vault.vault import Vault

    alice = _new_key(cli, "Alice")
    vault = tmp_path / "v"
    assert cli("--key", alice, "init", vault).code == 0
    real_append = Vault.append

    def append(self: Vault, signer: Any, entries: Any, **kwargs: Any) -> Any:
        if any(t == ev.KEY_REVOKED for t, _ in entries):
            raise EvidenceVaultError("the vault is locked by another writer")
        return real_append(self, signer, entries, **kwargs)

    with monkeypatch.context() as m:  # not monkeypatch.undo(): that would also undo the test's home
        m.setattr(Vault, "append", append)
        res = cli("--vault", vault, "--key", alice, "key", "rotate")
    assert res.code == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    hint = res.stderr.split("finish with `evidence-vault ", 1)[1].split("`", 1)[0]
    assert "is authorized (seq 1) and stored" in res.stderr
    res = cli("--vault", vault, *shlex.split(hint))
    assert res.code == 0, res.stderr
    keys = cli("--vault", vault, "key", "list", "--json").json()["authorized"]
    assert [k["revoked_seq"] is None for k in keys if k["fingerprint"] == alice] == [False]
    assert cli("--vault", vault, "verify", "--json", "--trust", alice).code == 0


def _defaults(cli: Cli) -> list[str]:
    idents = cli("key", "list", "--json").json()["identities"]
    return [i["fingerprint"] for i in idents if i["default"]]


def test_rotate_makes_the_new_key_the_default(cli: Cli, vault: Path, identity: str, tmp_path: Path) -> None:
    """After `key rotate` the revoked old key stayed the default identity: the next `add` or `annotate`
    failed "was revoked" with no hint. The new key takes the old one's place as the default."""
    res = cli("--vault", vault, "key", "rotate", "--json")
    assert res.code == 0, res.stderr
    new = res.json()["new"]
    assert _defaults(cli) == [new]
    photo = tmp_path / "photo.bin"
    photo.write_bytes(b"taken after the rotation")
    res = cli("--vault", vault, "add", photo, "--json")
    assert res.code == 0, res.stderr
    event = json.loads(_log(vault).splitlines()[-1])
    assert event["actor"] == new and event["type"] == "item.ingested"
    # Rotating a key that is not the default leaves the default alone.
    bob = _new_key(cli, "Bob")
    pub = cli("key", "export-public", bob).stdout.strip()
    assert cli("--vault", vault, "key", "add", pub).code == 0
    res = cli("--vault", vault, "--key", bob, "key", "rotate", "--json")
    assert res.code == 0, res.stderr
    assert _defaults(cli) == [new]


def test_refusal_of_a_revoked_key_says_which_key_to_use(cli: Cli, filled_vault: Path, identity: str) -> None:
    """A command refused because the acting key was revoked names the one key on this machine the vault
    still authorizes, or points to --key when there is not exactly one."""
    vault = filled_vault
    item = SAMPLE_FILES[0]
    bob = _new_key(cli, "Bob")
    pub = cli("key", "export-public", bob).stdout.strip()
    assert cli("--vault", vault, "key", "add", pub).code == 0
    assert cli("--vault", vault, "key", "revoke", bob, "--reason", "laptop lost").code == 0
    before = _log(vault)
    res = cli("--vault", vault, "--key", bob, "annotate", item, "--note", "x")
    assert res.code == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "was revoked at seq" in res.stderr and "nothing recorded" in res.stderr
    assert f"`evidence-vault --key {identity} ...`" in res.stderr
    carol = _new_key(cli, "Carol")
    pub = cli("key", "export-public", carol).stdout.strip()
    assert cli("--vault", vault, "key", "add", pub).code == 0
    before = _log(vault)
    res = cli("--vault", vault, "--key", bob, "annotate", item, "--note", "x")
    assert res.code == 2 and "`evidence-vault --key FINGERPRINT ...`" in res.stderr, res.stderr
    assert identity not in res.stderr
    assert _log(vault) == before


def test_derive_of_a_file_already_in_the_vault(cli: Cli, filled_vault: Path, tmp_path: Path) -> None:
    """`derive ORIGINAL FILE` where FILE was already an item signed `item.derived` (again on each run)
    and said "linked to its original", yet `show` had no link (the link is the ingest's derived_from).
    Now: refused unless FILE is already this original's working copy, which records nothing."""
    vault = filled_vault

    def derive(original: Path, copy: Path, *extra: str) -> Any:
        return cli("--vault", vault, "derive", original, copy, "--action", "crop", "--tool", "t", *extra)

    def item(path: Path) -> dict[str, Any]:
        res = cli("--vault", vault, "show", path, "--json")
        assert res.code == 0, res.stderr
        shown: dict[str, Any] = res.json()
        return shown

    original, other = SAMPLE_FILES[0], SAMPLE_FILES[1]
    before = _log(vault)
    res = derive(original, other)
    assert res.code == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert f"{other}: already in the vault as an item of its own" in res.stderr
    assert "nothing recorded" in res.stderr and _log(vault) == before
    assert item(other)["derived_from"] is None

    copy = tmp_path / "cropped.jpg"
    copy.write_bytes(original.read_bytes()[:-64])
    res = derive(original, copy, "--json")
    assert res.code == 0 and res.json()["status"] == "added", res.stderr
    assert item(copy)["derived_from"] == item(original)["id"]
    before = _log(vault)
    res = derive(original, copy, "--json")
    assert res.code == 0, res.stderr
    assert res.json()["status"] == "duplicate" and res.json()["events"] == []
    assert _log(vault) == before
    human = derive(original, copy)
    assert human.code == 0 and "already linked to this original: nothing recorded" in human.stderr
    res = derive(other, copy)
    assert res.code == 2 and f"already in the vault as a working copy of {item(original)['id']}" in res.stderr
    assert _log(vault) == before
    assert item(original)["derived_copies"] == [item(copy)["id"]]


def test_derive_again_after_an_interrupted_one_records_the_link_event(
    cli: Cli, filled_vault: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A derive whose `item.derived` append failed after the copy was ingested: running it again records
    that event (the copy is already linked to this original), once."""
    from evidence_vault import custody_ops
    from evidence_vault.errors import EvidenceVaultError

    copy = tmp_path / "cropped.jpg"
    copy.write_bytes(SAMPLE_FILES[0].read_bytes()[:-64])
    args = ("--vault", filled_vault, "derive", SAMPLE_FILES[0], copy, "--action", "crop", "--tool", "t")

    def refuse(*_: Any) -> Any:
        raise EvidenceVaultError("the vault is locked by another writer")

    with monkeypatch.context() as m:  # not monkeypatch.undo(): that would also undo the test's home
        m.setattr(custody_ops, "_append", refuse)
        assert cli(*args).code == 2
    types = [json.loads(line)["type"] for line in _log(filled_vault).splitlines()]
    assert types[-1] == "item.ingested" and "item.derived" not in types
    res = cli(*args, "--json")
    assert res.code == 0 and res.json()["status"] == "added", res.stderr
    assert [e["type"] for e in res.json()["events"]] == ["item.derived"]
    res = cli(*args, "--json")
    assert res.code == 0 and res.json()["status"] == "duplicate"
    assert [json.loads(line)["type"] for line in _log(filled_vault).splitlines()].count("item.derived") == 1
