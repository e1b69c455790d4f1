"""Verify on every core: the libsodium fast path keeps OpenSSL's verdict, and objects checked during the
log pass (in the workers, between signature batches) give exactly the findings of a one-process run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from evidence_vault import object_checks, signing
from evidence_vault.report import Report
from evidence_vault.vault import Vault
from evidence_vault.verify import verify_vault

from .conftest import Cli

# The identity point (order 1) as a public key, and a signature that satisfies the cofactorless
# equation for any message with it: R = the base point, S = 1.
_SMALL_ORDER_KEY = b"\x01" + bytes(31)
_ANY_MESSAGE_SIG = bytes.fromhex("58" + "66" * 31) + (1).to_bytes(32, "little")


def _openssl(pub: bytes, sig: bytes, data: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(pub).verify(sig, data)
    except Exception:
        return False
    return True


def test_libsodium_is_loaded() -> None:
    """PyNaCl is a dependency: the fast path must be there (CI must not quietly run without it)."""
    assert signing.sodium_verify() is not None


@pytest.mark.parametrize("with_sodium", [True, False])
def test_ed25519_ok_gives_openssls_verdict(with_sodium: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not with_sodium:
        monkeypatch.setattr(signing, "sodium_verify", lambda: None)
    key = Ed25519PrivateKey.generate()
    pub = key.public_key().public_bytes_raw()
    sig = key.sign(b"event")
    cases = [
        (pub, sig, b"event"),
        (pub, sig, b"another event"),
        (pub, sig[:63] + bytes([sig[63] ^ 1]), b"event"),
        (pub, sig[:32] + (2**256 - 1).to_bytes(32, "little"), b"event"),  # S not below the group order
        (_SMALL_ORDER_KEY, _ANY_MESSAGE_SIG, b"event"),
        (_SMALL_ORDER_KEY, _ANY_MESSAGE_SIG, b"any other text"),
        (pub[:31], sig, b"event"),  # not a key at all
    ]
    got = [signing.ed25519_ok(*case) for case in cases]
    assert got == [_openssl(*case) for case in cases]
    assert got[:2] == [True, False]
    # libsodium refuses the small-order key that OpenSSL accepts: OpenSSL decides, so the verdict of
    # verify did not change with the fast path (the key itself is the problem, see docs/trust-model.md).
    if with_sodium:
        sodium = signing.sodium_verify()
        assert sodium is not None and not sodium(_SMALL_ORDER_KEY, _ANY_MESSAGE_SIG, b"event")
    assert got[4:6] == [True, True]


def _findings(report: Report) -> list[tuple[str, str, str, str]]:
    return [(f.level, f.code, f.subject, f.message) for f in report.findings]


def test_early_object_checks_match_a_one_process_run(
    big_vault: Path, identity: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    originals = sorted(p for p in (big_vault / "objects" / "sha256").glob("*/*") if p.stat().st_size == 68)
    damaged, gone, writable = originals[3], originals[200], originals[500]
    damaged.chmod(0o644)
    damaged.write_bytes(b"x" * 68)
    damaged.chmod(0o444)
    gone.unlink()
    writable.chmod(0o644)

    early: list[int] = []
    real = object_checks.ObjectPass.item_recorded

    def spy(self: object, item: str, rec: object) -> None:
        early.append(len(self.pending))  # type: ignore[attr-defined]
        real(self, item, rec)  # type: ignore[arg-type]

    monkeypatch.setattr(object_checks.ObjectPass, "item_recorded", spy)
    parallel = verify_vault(Vault(big_vault), trusted=[identity], record_head=False)
    queued, early[:] = list(early), []
    one = verify_vault(Vault(big_vault), trusted=[identity], record_head=False, workers=1)

    assert len(queued) == 620 and max(queued) > 0, "objects were queued on the workers during the log pass"
    assert not any(early), "one process: nothing queued"
    assert sorted(_findings(parallel)) == sorted(_findings(one))
    codes = sorted(f.code for f in parallel.findings if f.level != "INFO")
    assert codes == ["object.hash-mismatch", "object.missing", "object.writable"]
    assert parallel.stats == one.stats
    assert parallel.stats["bytes_hashed"] == 619 * 68 + sum(
        p.stat().st_size for p in (big_vault / "objects" / "sha256").glob("*/*") if p.stat().st_size != 68
    )


class _AnyoneSigns:
    """Signs as the small-order key without any private key: the signature that verifies for every
    message (what anyone could do once such a key is authorized)."""

    def __init__(self) -> None:
        self.public = signing.PublicKey(_SMALL_ORDER_KEY)
        self.fingerprint = self.public.fingerprint

    def sign(self, message: bytes, namespace: str = signing.NAMESPACE) -> bytes:
        s = signing._string
        return (
            b"SSHSIG"
            + (1).to_bytes(4, "big")
            + s(self.public.blob)
            + s(namespace.encode())
            + s(b"")
            + s(b"sha512")
            + s(s(b"ssh-ed25519") + s(_ANY_MESSAGE_SIG))
        )


def test_a_small_order_key_is_refused_where_it_enters(
    cli: Cli, vault: Path, identity: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Such a key lets anyone sign: `key add` refuses it, and `verify` fails a log that brought one in."""
    from evidence_vault import custody_ops
    from evidence_vault.keystore import KeyStore

    weak = _AnyoneSigns()
    keyfile = tmp_path / "weak.pub"
    keyfile.write_text(weak.public.openssh("nobody") + "\n")
    res = cli("--vault", vault, "key", "add", keyfile, "--role", "admin")
    assert res.code == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert str(keyfile) in res.stderr and "anyone could sign as it" in res.stderr

    # A log written without that check: an admin adds the key, then a forger signs as it.
    store = KeyStore()
    admin = store.signer(store.find(None), lambda *a, **k: b"correct horse battery staple")
    with monkeypatch.context() as m:
        m.setattr(signing, "_refuse_weak", lambda raw: None)
        custody_ops.key_add(Vault(vault), admin, weak.public.openssh("nobody"), role="admin")
        attacker = Ed25519PrivateKey.generate()
        line = signing.Signer(attacker).public.openssh("attacker")
        custody_ops.key_add(Vault(vault), weak, line, role="admin")  # type: ignore[arg-type]
        forged = verify_vault(Vault(vault), trusted=[identity], record_head=False)
        assert forged.outcome == "PASS", "without the check, the forged event verifies"
    report = verify_vault(Vault(vault), trusted=[identity], record_head=False)
    codes = sorted(f.code for f in report.failures)
    assert codes == ["log.bad-key-event", "log.unauthorized-signer"], codes


def test_a_worker_dying_during_the_early_object_pass_loses_nothing(
    big_vault: Path, identity: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker killed while it re-hashes objects queued during the log pass (OOM killer, a signal):
    its batch is checked here, and the run still finds every damaged object."""
    originals = sorted(p for p in (big_vault / "objects" / "sha256").glob("*/*") if p.stat().st_size == 68)
    damaged = originals[100]
    damaged.chmod(0o644)
    damaged.write_bytes(b"y" * 68)
    damaged.chmod(0o444)
    # The last event's signature, altered: checked after the pool is gone, it must still fail.
    log = big_vault / "log.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    at = lines[-1].index(b'","time":') - 20
    lines[-1] = lines[-1][:at] + (b"A" if lines[-1][at : at + 1] != b"A" else b"B") + lines[-1][at + 1 :]
    log.chmod(0o644)
    log.write_bytes(b"".join(lines))
    flag = tmp_path / "died"
    real_checker = object_checks.object_checker

    def dying_checker(*args: object, **kwargs: object) -> object_checks.Check:
        check = real_checker(*args, **kwargs)  # type: ignore[arg-type]

        def maybe_die(job: object_checks.Job, in_worker: bool) -> tuple[object_checks.Job, object]:
            if in_worker and job.kind == "item" and not flag.exists():
                flag.touch()
                os._exit(9)
            return check(job, in_worker)

        return maybe_die

    monkeypatch.setattr(object_checks, "object_checker", dying_checker)
    report = verify_vault(Vault(big_vault), trusted=[identity], record_head=False)
    assert flag.exists()
    codes = [f.code for f in report.failures]
    # (log.rewritten: this machine's pin remembers the last line as it was when added)
    assert codes == ["log.bad-signature", "log.rewritten", "object.hash-mismatch"], codes
    assert report.stats["items"] == 620
    stored = sum(p.stat().st_size for p in (big_vault / "objects" / "sha256").glob("*/*"))
    assert report.stats["bytes_hashed"] == stored  # every object hashed once: none lost, none twice
