"""RFC 3161 adapter: a real local TSA (openssl ts -reply), interop with openssl ts -verify, real tokens."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evidence_vault.errors import NetworkError, TimestampError, UsageError
from evidence_vault.timestamps.rfc3161 import (
    TokenCheck,
    build_request,
    parse_token,
    request_token,
    split_pem_or_der_certs,
    verify_token,
)
from tests.paths import CORPUS
from tests.servers.tsa import LocalTSA

RFC3161 = CORPUS / "timestamps" / "rfc3161"
HELLO = b"hello"

needs_corpus = pytest.mark.skipif(not RFC3161.is_dir(), reason="shared corpus not available")


def _expected() -> dict[str, dict[str, object]]:
    path = CORPUS / "expected.json"
    if not path.is_file():
        return {}
    entries: dict[str, dict[str, object]] = json.loads(path.read_text())
    return {
        key: value
        for key, value in entries.items()
        if key.startswith("timestamps/rfc3161/") and key.endswith(".tsr")
    }


EXPECTED = _expected()
VERIFY_AT_GENTIME = sorted(
    k for k, v in EXPECTED.items() if v["openssl_ts_reply"]["openssl_verify_at_gen_time"] == "OK"
)  # type: ignore[index]
FAIL_AT_GENTIME = sorted(k for k in EXPECTED if k not in VERIFY_AT_GENTIME)


def corpus_chain(tsr_key: str) -> tuple[list[bytes], list[bytes]]:
    """(roots, intermediates) from the ts_chain.pem beside a corpus token: self-issued certs are the roots."""
    chain = (CORPUS / tsr_key).parent / "ts_chain.pem"
    roots, others = [], []
    for der in split_pem_or_der_certs(chain.read_bytes()):
        cert = x509.load_der_x509_certificate(der)
        (roots if cert.issuer == cert.subject else others).append(der)
    return roots, others


def stamped_data(tsr_key: str) -> bytes:
    folder = (CORPUS / tsr_key).parent
    return (folder / "payload").read_bytes() if folder.name == "sigstore.mock" else HELLO


@pytest.fixture(scope="module")
def tsa() -> Iterator[LocalTSA]:
    with LocalTSA() as server:
        yield server


@pytest.fixture(scope="module")
def local_token(tsa: LocalTSA) -> tuple[bytes, bytes]:
    """(digest, DER TimeStampResp) from the local TSA for the data b'evidence'."""
    digest = hashlib.sha256(b"evidence").digest()
    return digest, request_token(tsa.url, digest)


def openssl_ts(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", "ts", *args], capture_output=True, text=True, check=False)


# --- requests ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("nonce", [True, False])
def test_build_request_is_a_query_openssl_understands(tmp_path: Path, nonce: bool) -> None:
    digest = hashlib.sha256(b"abc").digest()
    query = tmp_path / "q.tsq"
    query.write_bytes(build_request(digest, nonce=nonce))
    out = openssl_ts("-query", "-in", str(query), "-text")
    assert out.returncode == 0, out.stderr
    assert "Hash Algorithm: sha256" in out.stdout
    assert "Certificate required: yes" in out.stdout
    # Hex dump lines look like "    0000 - e3 b0 c4 ...-... 24   ascii": 47 characters of hex after " - ".
    dump = "".join(line.split(" - ", 1)[1][:47] for line in out.stdout.splitlines() if " - " in line)
    assert dump.replace(" ", "").replace("-", "") == digest.hex()
    assert ("Nonce: unspecified" in out.stdout) is not nonce


def test_build_request_nonces_differ_and_digest_length_is_checked() -> None:
    digest = bytes(32)
    assert build_request(digest) != build_request(digest)
    assert build_request(digest, nonce=False) == build_request(digest, nonce=False)
    with pytest.raises(UsageError):
        build_request(b"\x00" * 20)


# --- the local TSA, end to end ----------------------------------------------------------------------------


def test_local_tsa_token_parses_and_verifies(tsa: LocalTSA, local_token: tuple[bytes, bytes]) -> None:
    digest, tsr = local_token
    token = parse_token(tsr)
    assert token.hash_algorithm == "sha256"
    assert token.message_imprint == digest
    assert token.tsa_name is not None and "Throwaway Test TSA" in token.tsa_name
    assert token.policy == "1.3.6.1.4.1.55555.1.1"
    assert token.gen_time.tzinfo is not None
    assert abs(token.gen_time - datetime.now(UTC)) < timedelta(minutes=5)
    assert token.serial > 0

    check = verify_token(tsr, digest=digest, roots=[tsa.ca_pem])
    assert check == TokenCheck(True, None, token)
    assert verify_token(tsr, data=b"evidence", roots=[tsa.ca_pem]).ok
    # Supplying the chain externally as well changes nothing.
    assert verify_token(tsr, digest=digest, roots=[tsa.ca_pem], intermediates=[tsa.chain_pem]).ok


def test_openssl_ts_verify_accepts_our_token(
    tsa: LocalTSA, local_token: tuple[bytes, bytes], tmp_path: Path
) -> None:
    digest, tsr = local_token
    (tmp_path / "t.tsr").write_bytes(tsr)
    args = [
        "-verify",
        "-in",
        str(tmp_path / "t.tsr"),
        "-CAfile",
        str(tsa.ca_path),
        "-untrusted",
        str(tsa.chain_path),
    ]
    ok = openssl_ts(*args, "-digest", digest.hex())
    assert ok.returncode == 0 and "Verification: OK" in ok.stdout, ok.stderr
    bad = openssl_ts(*args, "-digest", hashlib.sha256(b"other").hexdigest())
    assert bad.returncode != 0 and "FAILED" in bad.stdout


def test_token_for_other_data_fails(tsa: LocalTSA, local_token: tuple[bytes, bytes]) -> None:
    _, tsr = local_token
    for check in (
        verify_token(tsr, data=b"other", roots=[tsa.ca_pem]),
        verify_token(tsr, digest=hashlib.sha256(b"other").digest(), roots=[tsa.ca_pem]),
    ):
        assert not check.ok
        assert check.problem == "message imprint is not the digest of the data"
        assert check.token is not None and check.token.message_imprint == local_token[0]


def test_token_fails_against_unrelated_root_and_against_intermediate_alone(
    tsa: LocalTSA, local_token: tuple[bytes, bytes]
) -> None:
    digest, tsr = local_token
    with LocalTSA() as other:
        check = verify_token(tsr, digest=digest, roots=[other.ca_pem])
    assert not check.ok
    assert check.problem is not None
    assert check.problem.startswith("certificate chain does not lead to the trust anchor at genTime ")
    # An intermediate is not a trust anchor, even when passed as a root.
    check = verify_token(tsr, digest=digest, roots=[tsa.intermediate_pem])
    assert not check.ok and check.problem is not None and "trust anchor" in check.problem


def test_token_signed_after_signer_expired_fails_at_gentime(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"late").digest()
    with LocalTSA(expired_signer=True) as late:
        tsr = request_token(late.url, digest)
        check = verify_token(tsr, digest=digest, roots=[late.ca_pem])
        (tmp_path / "t.tsr").write_bytes(tsr)
        theirs = openssl_ts(
            "-verify",
            "-in",
            str(tmp_path / "t.tsr"),
            "-digest",
            digest.hex(),
            "-CAfile",
            str(late.ca_path),
            "-untrusted",
            str(late.chain_path),
        )
    assert not check.ok
    assert check.problem is not None and "certificate has expired" in check.problem
    assert theirs.returncode != 0 and "certificate has expired" in theirs.stderr


def test_flipped_signature_byte_fails(tsa: LocalTSA, local_token: tuple[bytes, bytes]) -> None:
    digest, tsr = local_token
    tampered = tsr[:-1] + bytes([tsr[-1] ^ 0x01])  # last byte of the ECDSA signature's s value
    check = verify_token(tampered, digest=digest, roots=[tsa.ca_pem])
    assert not check.ok
    assert check.problem == "signature does not verify"


def test_rejection_is_reported(tsa: LocalTSA, tmp_path: Path) -> None:
    # The local TSA accepts SHA-2 only, so a SHA-1 query gets a real rejection from openssl.
    query = subprocess.run(
        ["openssl", "ts", "-query", "-digest", "00" * 20, "-sha1", "-cert"], capture_output=True, check=True
    ).stdout
    rejection = tsa.reply(query)
    with pytest.raises(TimestampError, match="did not grant"):
        parse_token(rejection)
    check = verify_token(rejection, roots=[tsa.ca_pem])
    assert not check.ok and check.token is None and "did not grant" in (check.problem or "")


# --- request_token failures -------------------------------------------------------------------------------


def test_closed_port_gives_network_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(NetworkError):
        request_token(f"http://127.0.0.1:{port}/", bytes(32), timeout=5)


def test_server_error_is_a_network_error_and_garbage_is_a_timestamp_error() -> None:
    with LocalTSA(mode="http500") as t:
        with pytest.raises(NetworkError, match="HTTP 500"):
            request_token(t.url, bytes(32))
        t.mode = "garbage"
        with pytest.raises(TimestampError) as info:
            request_token(t.url, bytes(32))
        assert not isinstance(info.value, NetworkError)
        assert "\n" not in str(info.value)
        assert t.requests == 2


def test_replayed_answers_are_refused() -> None:
    first, second = hashlib.sha256(b"one").digest(), hashlib.sha256(b"two").digest()
    with LocalTSA(mode="replay") as t:
        tsr = request_token(t.url, first)
        assert parse_token(tsr).message_imprint == first
        with pytest.raises(TimestampError, match="nonce"):
            request_token(t.url, first)  # same imprint, stale nonce
        with pytest.raises(TimestampError, match="different message imprint"):
            request_token(t.url, second)


def test_only_http_urls_are_used(tmp_path: Path) -> None:
    with pytest.raises(TimestampError, match="http or https"):
        request_token((tmp_path / "x").as_uri(), bytes(32))


# --- the real corpus --------------------------------------------------------------------------------------


@needs_corpus
@pytest.mark.parametrize("key", VERIFY_AT_GENTIME)
def test_corpus_token_verifies_at_gentime(key: str) -> None:
    roots, intermediates = corpus_chain(key)
    tsr = (CORPUS / key).read_bytes()
    facts = EXPECTED[key]["openssl_ts_reply"]
    assert isinstance(facts, dict)
    check = verify_token(tsr, data=stamped_data(key), roots=roots, intermediates=intermediates)
    assert check.ok, check.problem
    token = check.token
    assert token is not None
    assert token.message_imprint.hex() == facts["message_imprint_hex"]
    assert token.hash_algorithm == facts["hash_alg"]
    assert token.policy == facts["policy_oid"]
    assert token.gen_time == datetime.strptime(facts["gen_time"], "%b %d %H:%M:%S %Y GMT").replace(tzinfo=UTC)
    serial = facts["serial"]
    assert token.serial == (-int(serial[3:], 16) if serial.startswith("0x-") else int(serial, 16))
    # The same token for other data must fail.
    assert verify_token(tsr, data=b"not the data", roots=roots, intermediates=intermediates).problem == (
        "message imprint is not the digest of the data"
    )


@needs_corpus
@pytest.mark.parametrize("key", FAIL_AT_GENTIME)
def test_corpus_token_that_openssl_rejects_fails(key: str) -> None:
    roots, intermediates = corpus_chain(key)
    check = verify_token((CORPUS / key).read_bytes(), data=HELLO, roots=roots, intermediates=intermediates)
    assert not check.ok
    assert check.token is not None  # it parses; it just does not verify


@needs_corpus
def test_corpus_failures_name_the_reason() -> None:
    key = "timestamps/rfc3161/sigstage/response-invalid-signature.tsr"
    assert verify_token((CORPUS / key).read_bytes(), data=HELLO, roots=corpus_chain(key)[0]).problem == (
        "signature does not verify"
    )
    key = "timestamps/rfc3161/test_tsa/other_response.tsr"
    roots, intermediates = corpus_chain(key)
    problem = verify_token(
        (CORPUS / key).read_bytes(), data=HELLO, roots=roots, intermediates=intermediates
    ).problem
    assert problem == (
        "certificate chain does not lead to the trust anchor at genTime 2024-10-31T13:31:44Z"
        " (unable to get local issuer certificate)"
    )


@needs_corpus
def test_expired_tsa_certificates_still_verify_at_gentime() -> None:
    for key in (
        "timestamps/rfc3161/sigstore.mock/response-expired.tsr",
        "timestamps/rfc3161/identrust/issue-104.tsr",
    ):
        assert key in VERIFY_AT_GENTIME
        assert "expired" in EXPECTED[key]["openssl_ts_reply"]["openssl_verify_now"]  # type: ignore[index]
    key = "timestamps/rfc3161/sigstore.mock/response-expired.tsr"
    roots, intermediates = corpus_chain(key)
    # Every certificate in this chain expired on 2024-01-01, long before "now": only genTime can make it pass.
    for der in roots + intermediates:
        assert x509.load_der_x509_certificate(der).not_valid_after_utc < datetime.now(UTC)
    assert verify_token(
        (CORPUS / key).read_bytes(), data=stamped_data(key), roots=roots, intermediates=intermediates
    ).ok


@needs_corpus
def test_token_without_embedded_certificate_needs_the_signer_supplied() -> None:
    key = "timestamps/rfc3161/sigstage/response-no-embedded-cert.tsr"
    tsr = (CORPUS / key).read_bytes()
    roots, intermediates = corpus_chain(key)
    assert verify_token(tsr, data=HELLO, roots=roots, intermediates=intermediates).ok
    check = verify_token(tsr, data=HELLO, roots=roots)
    assert not check.ok and "carries no certificate" in (check.problem or "")


@needs_corpus
def test_split_certs_accepts_der_and_pem_bundles() -> None:
    identrust = split_pem_or_der_certs((RFC3161 / "identrust" / "ts_chain.pem").read_bytes())
    assert len(identrust) == 1
    assert "IdenTrust" in x509.load_der_x509_certificate(identrust[0]).subject.rfc4514_string()
    assert len(split_pem_or_der_certs((RFC3161 / "test_tsa" / "ts_chain.pem").read_bytes())) == 3
    # several DER certificates back to back (chain files of earlier versions)
    test_tsa = split_pem_or_der_certs((RFC3161 / "test_tsa" / "ts_chain.pem").read_bytes())
    assert split_pem_or_der_certs(b"".join(test_tsa)) == test_tsa
    for junk in (
        b"",
        b"not a certificate",
        b"".join(test_tsa) + b"\x00",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ):
        with pytest.raises(TimestampError):
            split_pem_or_der_certs(junk)


# --- hostile input ----------------------------------------------------------------------------------------


@needs_corpus
@pytest.mark.parametrize(
    "junk",
    [b"", b"garbage", b"\x30\x80\x00\x00", b"\x30\x84\xff\xff\xff\xff", bytes(range(256)) * 4],
)
def test_garbage_gives_ok_false(junk: bytes) -> None:
    check = verify_token(junk, data=HELLO, roots=corpus_chain("timestamps/rfc3161/test_tsa/response.tsr")[0])
    assert not check.ok and check.token is None
    assert check.problem and "\n" not in check.problem
    with pytest.raises(TimestampError):
        parse_token(junk)


@needs_corpus
def test_request_is_not_a_response() -> None:
    check = verify_token((RFC3161 / "test_tsa" / "request.der").read_bytes(), roots=[])
    assert not check.ok and check.token is None


@needs_corpus
def test_bad_trust_anchor_input_is_reported() -> None:
    tsr = (RFC3161 / "test_tsa" / "response.tsr").read_bytes()
    assert verify_token(tsr, data=HELLO, roots=[]).problem == "no trust anchor given"
    check = verify_token(tsr, data=HELLO, roots=[b"junk"])
    assert not check.ok and (check.problem or "").startswith("not a certificate")


@needs_corpus
def test_a_damaged_tsa_name_gives_no_python_warning() -> None:
    # Found by the test below in CI: this flip makes the country code of the TSA's name 5 bytes long, and
    # cryptography warned about it (a stray UserWarning line on a user's terminal).
    key = "timestamps/rfc3161/test_tsa/response.tsr"
    tampered = bytearray((CORPUS / key).read_bytes())
    tampered[240] ^= 12
    roots, intermediates = corpus_chain(key)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        token = parse_token(bytes(tampered))
        check = verify_token(bytes(tampered), data=HELLO, roots=roots, intermediates=intermediates)
    assert [str(w.message) for w in caught] == []
    assert token.tsa_name is not None and token.tsa_name != parse_token((CORPUS / key).read_bytes()).tsa_name
    assert not check.ok and check.problem == "signature does not verify"


@needs_corpus
@pytest.mark.filterwarnings("error")
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_flipping_bytes_never_raises_and_never_forges_facts(data: st.DataObject) -> None:
    key = "timestamps/rfc3161/test_tsa/response.tsr"
    original = (CORPUS / key).read_bytes()
    roots, intermediates = corpus_chain(key)
    tampered = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4), label="flips")):
        at = data.draw(st.integers(0, len(original) - 1), label="at")
        tampered[at] ^= data.draw(st.integers(1, 255), label="xor")
    check = verify_token(bytes(tampered), data=HELLO, roots=roots, intermediates=intermediates)
    assert isinstance(check, TokenCheck)
    if check.ok:
        # Only unsigned bytes can have changed: the facts the token asserts must be the original ones.
        assert check.token == parse_token(original)
    else:
        assert check.problem and "\n" not in check.problem


@settings(max_examples=200, deadline=None)
@given(at=st.integers(0, 10_000), xor=st.integers(1, 255))
def test_flipping_a_byte_of_an_openssl_token_never_raises(
    tsa: LocalTSA, local_token: tuple[bytes, bytes], at: int, xor: int
) -> None:
    # openssl writes its certificate SET unsorted: this also exercises the re-sorting path on hostile input.
    digest, tsr = local_token
    tampered = bytearray(tsr)
    tampered[at % len(tsr)] ^= xor
    check = verify_token(bytes(tampered), digest=digest, roots=[tsa.ca_pem])
    if check.ok:
        assert check.token == parse_token(tsr)
    else:
        assert check.problem and "\n" not in check.problem
