"""Custody and key rules found missing in review: each test failed before its fix."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Cli


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
