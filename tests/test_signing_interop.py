"""Signatures of a real vault's events, checked by implementations that are not ours.

Needs ``ssh-keygen`` (Debian package ``openssh-client``) and the PyPI package ``sshsig``.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
import sshsig
from sshsig.ssh_public_key import PublicKey as SshsigPublicKey

from evidence_vault import signing
from evidence_vault.errors import IntegrityError
from evidence_vault.events import parse_line
from tests.conftest import Cli

PRINCIPAL = "custodian@evidence-vault"


def events_of(vault: Path) -> list[tuple[bytes, str, str]]:
    """(signing bytes, armored signature, actor) for every line of the vault's log."""
    out = []
    for line in (vault / "log.jsonl").read_bytes().splitlines():
        event, canonical = parse_line(line)
        assert canonical
        out.append((event.signing_bytes(), signing.armor(base64.b64decode(event.sig)), event.actor))
    return out


def public_key_line(cli: Cli, identity: str) -> str:
    res = cli("key", "show", identity, "--json")
    assert res.code == 0, res.stderr
    line: str = res.json()["public_key"]
    return line


def ssh_keygen_verify(
    tmp_path: Path, pub: str, message: bytes, armored: str, namespace: str = "evidence-vault"
) -> subprocess.CompletedProcess[bytes]:
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f'{PRINCIPAL} namespaces="evidence-vault" {pub}\n')
    sig = tmp_path / "event.sig"
    sig.write_text(armored)
    return subprocess.run(
        ["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", PRINCIPAL, "-n", namespace, "-s", str(sig)],
        input=message,
        capture_output=True,
        timeout=30,
    )


def test_ssh_keygen_verifies_every_event(cli: Cli, filled_vault: Path, identity: str, tmp_path: Path) -> None:
    pub = public_key_line(cli, identity)
    events = events_of(filled_vault)
    assert len(events) == 5
    for message, armored, actor in events:
        assert actor == identity
        proc = ssh_keygen_verify(tmp_path, pub, message, armored)
        assert proc.returncode == 0, proc.stderr
        assert b"Good" in proc.stdout and PRINCIPAL.encode() in proc.stdout


def test_ssh_keygen_rejects_modified_message(
    cli: Cli, filled_vault: Path, identity: str, tmp_path: Path
) -> None:
    pub = public_key_line(cli, identity)
    message, armored, _ = events_of(filled_vault)[1]
    value = json.loads(message)
    value["data"]["size"] += 1
    tampered = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    assert tampered != message
    proc = ssh_keygen_verify(tmp_path, pub, tampered, armored)
    assert proc.returncode != 0
    assert b"Good" not in proc.stdout
    # Another namespace is refused too (the signature is bound to "evidence-vault").
    proc = ssh_keygen_verify(tmp_path, pub, message, armored, namespace="git")
    assert proc.returncode != 0


def test_sshsig_package_verifies_every_event(cli: Cli, filled_vault: Path, identity: str) -> None:
    key = SshsigPublicKey.from_openssh_str(public_key_line(cli, identity))
    for message, armored, _ in events_of(filled_vault):
        signer = sshsig.verify(message, armored, [key], namespace="evidence-vault")
        assert signer == key
        assert sshsig.check_signature(message, armored, namespace="evidence-vault") == key


def test_sshsig_package_rejects_modified_message(cli: Cli, filled_vault: Path, identity: str) -> None:
    key = SshsigPublicKey.from_openssh_str(public_key_line(cli, identity))
    message, armored, _ = events_of(filled_vault)[2]
    for bad in (message + b" ", message.replace(b'"seq":2', b'"seq":3')):
        assert bad != message
        with pytest.raises(sshsig.InvalidSignature):
            sshsig.verify(bad, armored, [key], namespace="evidence-vault")
    other = SshsigPublicKey.from_openssh_str(signing.generate().public.openssh())
    with pytest.raises(sshsig.InvalidSignature):
        sshsig.verify(message, armored, [other], namespace="evidence-vault")


def test_our_verifier_accepts_ssh_keygen_signatures(
    tmp_path: Path,
) -> None:
    """The other direction: a signature made by ssh-keygen itself checks with evidence_vault.signing."""
    key_file = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key_file)], check=True, timeout=30
    )
    message = b'{"hello":"world"}'
    (tmp_path / "msg").write_bytes(message)
    subprocess.run(
        ["ssh-keygen", "-Y", "sign", "-f", str(key_file), "-n", "evidence-vault", str(tmp_path / "msg")],
        check=True,
        capture_output=True,
        timeout=30,
    )
    blob = signing.unarmor((tmp_path / "msg.sig").read_text())
    pub = signing.PublicKey.from_openssh(key_file.with_suffix(".pub").read_text())
    signing.verify_signature(blob, message, pub)
    fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(key_file.with_suffix(".pub"))],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.split()[1]
    assert pub.fingerprint == fingerprint
    with pytest.raises(IntegrityError, match="does not verify"):
        signing.verify_signature(blob, message + b"x", pub)


def test_fingerprint_spellings_users_paste_name_the_same_key() -> None:
    """`ssh-keygen -l` prints SHA256: and 43 base64 characters; a base64 tool adds `=` padding; users
    drop the prefix or paste blanks. Each names the same key; anything else is no fingerprint."""
    fp = signing.PublicKey(bytes(range(32))).fingerprint
    body = fp.removeprefix("SHA256:")
    for given in (fp, body, fp + "=", body + "=", f"  {fp}\n"):
        assert signing.normalize_fingerprint(given) == fp, given
    for bad in ("", "SHA256:", body[:-1], body + "A", "SHA256:!" + body[1:], "MD5:" + body, fp + " x"):
        assert signing.normalize_fingerprint(bad) is None, bad
    assert signing.fingerprint_prefix(body[:8]) == fp[:15]  # a start of one, for look-ups by prefix
