"""Private key handling: file modes, encryption by default, and no secret in any output or in the vault."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from evidence_vault import signing
from evidence_vault.cli import app as cli_app
from evidence_vault.errors import KeyStoreError
from evidence_vault.keystore import KeyStore
from tests.conftest import PASSPHRASE, SAMPLE_FILES, Cli
from tests.servers.ots_calendar import CalendarServer


def _key_file(home: Path, fp: str) -> Path:
    return KeyStore(home).private_key_path(fp)


def _secrets(home: Path, fp: str) -> list[bytes]:
    """Every form of the secret that must never leak: passphrase, raw key, its base64 and hex."""
    signer = KeyStore(home).signer(KeyStore(home).find(fp), lambda _: PASSPHRASE.encode())
    raw = signer.private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    unencrypted = signing.private_openssh(signer, None)
    body = b"".join(unencrypted.splitlines()[1:-1])
    return [PASSPHRASE.encode(), raw, base64.b64encode(raw), raw.hex().encode(), body[20:80]]


def test_modes_and_encryption_by_default(cli: Cli, identity: str, home: Path) -> None:
    key = _key_file(home, identity)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    data = key.read_bytes()
    assert data.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----\n")
    assert signing.is_encrypted_openssh(data)
    with pytest.raises(KeyStoreError):
        signing.load_private_openssh(data, None)
    with pytest.raises(KeyStoreError):
        signing.load_private_openssh(data, b"wrong passphrase")
    assert signing.load_private_openssh(data, PASSPHRASE.encode()).fingerprint == identity
    # Without the passphrase the CLI refuses to sign, in one line.
    res = cli("init", home.parent / "v-nopass", env={"EVIDENCE_VAULT_PASSPHRASE": None})
    assert res.code == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "passphrase" in res.stderr


def test_no_secret_in_any_output_or_in_the_vault(cli: Cli, identity: str, home: Path, tmp_path: Path) -> None:
    secrets = _secrets(home, identity)
    vault = tmp_path / "vault"
    outputs = []
    outputs.append(cli("init", vault, "--json"))
    outputs.append(cli("--vault", vault, "add", *SAMPLE_FILES[:2]))
    outputs.append(cli("--vault", vault, "add", "--json", *SAMPLE_FILES[2:]))
    outputs.append(cli("--vault", vault, "checkpoint", "--json"))
    with CalendarServer() as cal:
        outputs.append(
            cli("--vault", vault, "stamp", "--calendar", cal.url, "--min-calendars", "1", "--json")
        )
    outputs.append(cli("--vault", vault, "verify", "--json"))
    outputs.append(cli("--vault", vault, "verify"))
    outputs.append(cli("--vault", vault, "log", "--json"))
    outputs.append(cli("key", "list", "--json"))
    outputs.append(cli("key", "list"))
    outputs.append(cli("--vault", vault, "add", SAMPLE_FILES[0], env={"EVIDENCE_VAULT_PASSPHRASE": "wrong"}))
    assert outputs[-1].code == 2
    for res in outputs:
        for s in secrets:
            assert s.decode("latin-1") not in res.stdout and s.decode("latin-1") not in res.stderr
    # Nothing under the vault holds private key material.
    for path in vault.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"PRIVATE KEY" not in data, path
            for s in secrets:
                assert s not in data, path


def test_internal_error_line_shows_no_secret(
    cli: Cli, identity: str, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception is one line, without locals (pretty_exceptions_show_locals is off)."""
    secrets = _secrets(home, identity)
    vault = tmp_path / "vault"
    assert cli("init", vault).code == 0
    assert cli_app.pretty_exceptions_show_locals is False

    def boom(self: object, message: bytes, namespace: str = signing.NAMESPACE) -> bytes:
        raise RuntimeError("simulated failure inside signing")

    monkeypatch.setattr(signing.Signer, "sign", boom)
    res = cli("--vault", vault, "add", SAMPLE_FILES[0])
    assert res.code == 2
    lines = [line for line in res.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and "internal error: RuntimeError: simulated failure" in lines[0]
    assert "Traceback" not in res.stderr
    for s in secrets:
        assert s.decode("latin-1") not in res.stdout + res.stderr


def test_internal_error_in_a_real_process_shows_no_secret(
    run: Cli, identity: str, home: Path, tmp_path: Path
) -> None:
    """The same through the installed entry point: a key file that is not a key makes the loader fail;
    the one-line error names the file, not its contents."""
    secrets = _secrets(home, identity)
    vault = tmp_path / "vault"
    assert run("init", vault).code == 0
    key = _key_file(home, identity)
    original = key.read_bytes()
    key.chmod(0o600)
    key.write_bytes(original[:-200] + b"garbage\n-----END OPENSSH PRIVATE KEY-----\n")
    try:
        res = run("--vault", vault, "add", SAMPLE_FILES[0])
    finally:
        key.write_bytes(original)
    assert res.code == 2 and "Traceback" not in res.stderr
    assert len([line for line in res.stderr.splitlines() if line.strip()]) == 1
    for s in [*secrets, original[40:100]]:
        assert s.decode("latin-1") not in res.stdout + res.stderr
    assert os.environ["EVIDENCE_VAULT_PASSPHRASE"] not in res.stderr
