"""RFC 3161 time-stamp tokens: request them from a TSA, read them, and verify them offline at their genTime.

Verification is done by ``rfc3161-client`` (PKCS#7 signature, chain to the given roots checked at the token's
genTime, critical timeStamping EKU, signer certificate chosen by the SignerInfo); this module adds request
building from a bare digest, request/response matching, certificate loading and one-line problem reports.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import urllib.parse
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import rfc3161_client
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from rfc3161_client import PKIStatus, TimeStampResponse, VerificationError, VerifierBuilder

from evidence_vault.errors import NetworkError, TimestampError, UsageError
from evidence_vault.timestamps import http

__all__ = [
    "TokenCheck",
    "TsaToken",
    "build_request",
    "certs_to_pem",
    "parse_token",
    "request_token",
    "split_pem_or_der_certs",
    "verify_token",
]

_HASH_NAMES = {
    "1.3.14.3.2.26": "sha1",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}
# DER of AlgorithmIdentifier { id-sha256, NULL }.
_SHA256_ALGID = bytes.fromhex("300d06096086480165030402010500")
_MAX_RESPONSE = 1 << 20  # a TimeStampResp is a few KiB; refuse to buffer more than 1 MiB
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\s.*?-----END CERTIFICATE-----", re.DOTALL)


@dataclass(frozen=True)
class TsaToken:
    """The facts a time-stamp token asserts (parsed, not yet verified)."""

    gen_time: datetime
    serial: int
    tsa_name: str | None
    policy: str
    hash_algorithm: str
    message_imprint: bytes


@dataclass(frozen=True)
class TokenCheck:
    """Outcome of :func:`verify_token`; ``problem`` is one line when ``ok`` is false."""

    ok: bool
    problem: str | None
    token: TsaToken | None


def _is_panic(exc: BaseException) -> bool:
    # rfc3161-client's Rust parser unwraps in places; on hostile input that surfaces as a pyo3 PanicException,
    # which derives from BaseException, not Exception.
    return type(exc).__name__ == "PanicException"


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(value)) + value


def _der_uint(n: int) -> bytes:
    body = n.to_bytes(n.bit_length() // 8 + 1, "big")  # leading 0x00 keeps it positive
    while len(body) > 1 and body[0] == 0 and body[1] < 0x80:
        body = body[1:]
    return _tlv(0x02, body)


def _request_der(digest: bytes, nonce: int | None) -> bytes:
    if len(digest) != 32:
        raise UsageError(f"a time-stamp request needs a 32-byte SHA-256 digest, got {len(digest)} bytes")
    imprint = _tlv(0x30, _SHA256_ALGID + _tlv(0x04, digest))
    body = _der_uint(1) + imprint
    if nonce is not None:
        body += _der_uint(nonce)
    body += b"\x01\x01\xff"  # certReq TRUE: ask the TSA to include its certificate
    return _tlv(0x30, body)


def build_request(digest: bytes, *, nonce: bool = True) -> bytes:
    """DER TimeStampReq for a SHA-256 ``digest`` with certReq set and (by default) a random 64-bit nonce."""
    return _request_der(digest, secrets.randbits(63) | (1 << 62) if nonce else None)


def _tlv_at(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at ``pos``; ValueError if it does not fit."""
    if pos + 2 > end or buf[pos] & 0x1F == 0x1F:
        raise ValueError("bad DER")
    tag, first = buf[pos], buf[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or pos + n > end:
            raise ValueError("bad DER length")
        length = int.from_bytes(buf[pos : pos + n], "big")
        pos += n
    if pos + length > end:
        raise ValueError("DER element overruns its parent")
    return tag, pos, pos + length


def _children(buf: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, element start, content start, content end) of each element in ``buf[start:end]``."""
    out = []
    pos = start
    while pos < end:
        tag, c0, c1 = _tlv_at(buf, pos, end)
        out.append((tag, pos, c0, c1))
        pos = c1
    return out


def _sort_certificate_set(tsr: bytes) -> bytes | None:
    """The response with its SignedData ``certificates`` SET OF in DER order, or None if not applicable.

    OpenSSL (``openssl ts -reply``, and TSAs built on it) writes the signer certificate first, which breaks
    DER's sorted SET OF; rfc3161-client's strict parser then refuses the whole token. The certificates are
    outside the signed content, so reordering them changes neither meaning nor signature.
    """
    try:
        _, r0, r1 = _tlv_at(tsr, 0, len(tsr))
        token = _children(tsr, r0, r1)[1]  # status, timeStampToken
        content = _children(tsr, token[2], token[3])[1]  # contentType, [0] content
        _, s0, s1 = _tlv_at(tsr, content[2], content[3])  # SignedData
        certs = next((c for c in _children(tsr, s0, s1) if c[0] == 0xA0), None)
        if certs is None:
            return None
        members = [tsr[e0:e1] for _, e0, _, e1 in _children(tsr, certs[2], certs[3])]
    except (ValueError, IndexError):
        return None
    return tsr[: certs[2]] + b"".join(sorted(members)) + tsr[certs[3] :]


def _decode_response(tsr: bytes) -> TimeStampResponse:
    try:
        return rfc3161_client.decode_timestamp_response(tsr)
    except ValueError as exc:
        if "InvalidSetOrdering" not in str(exc) or "certificates" not in str(exc):
            raise
        fixed = _sort_certificate_set(tsr)
        if fixed is None:
            raise
        return rfc3161_client.decode_timestamp_response(fixed)


def _decode(tsr: bytes) -> tuple[TimeStampResponse, TsaToken]:
    """Parse a TimeStampResp; raise TimestampError (one line) for anything that is not a granted token."""
    if not isinstance(tsr, bytes | bytearray | memoryview):
        raise TimestampError("a time-stamp response must be bytes")
    try:
        resp = _decode_response(bytes(tsr))
        status = resp.status
        if status not in (PKIStatus.GRANTED, PKIStatus.GRANTED_WITH_MODS):
            texts = "; ".join(resp.status_string)
            label = PKIStatus(status).name.lower() if status in set(PKIStatus) else str(status)
            detail = f": {texts}" if texts else ""
            raise TimestampError(_one_line(f"TSA did not grant a token (status {label}{detail})"))
        info = resp.tst_info
        imprint = info.message_imprint
        alg_oid = imprint.hash_algorithm.dotted_string
        policy = info.policy
        if policy is None:
            raise TimestampError("time-stamp token has no policy")
        gen_time = info.gen_time
        if gen_time.tzinfo is None:
            gen_time = gen_time.replace(tzinfo=UTC)
        token = TsaToken(
            gen_time=gen_time.astimezone(UTC),
            serial=int(info.serial_number),
            tsa_name=_tsa_name(info),
            policy=policy.dotted_string,
            hash_algorithm=_HASH_NAMES.get(alg_oid, alg_oid),
            message_imprint=bytes(imprint.message),
        )
    except TimestampError:
        raise
    except Exception as exc:
        raise TimestampError(
            _one_line(f"not an RFC 3161 time-stamp response: {_parse_problem(exc)}")
        ) from None
    except BaseException as exc:
        if not _is_panic(exc):
            raise
        raise TimestampError("not an RFC 3161 time-stamp response (malformed token)") from None
    return resp, token


def _parse_problem(exc: Exception) -> str:
    """rfc3161-client's parse errors are Rust debug dumps (``ASN.1 parse error: ParseError { kind:
    UnexpectedTag { actual: Tag { ...``): say what kind of error, not the dump."""
    text = str(exc)
    if "ParseError" not in text:
        return text
    kind = re.search(r"kind: (\w+)", text)
    return "ASN.1 parse error" + (f" ({kind.group(1)})" if kind else "")


def _tsa_name(info: rfc3161_client.TimeStampTokenInfo) -> str | None:
    try:
        with warnings.catch_warnings():
            # cryptography warns (UserWarning) on a name attribute of the wrong length, for example a
            # damaged country code; the name is only shown, and the warning would be a stray stderr line.
            warnings.simplefilter("ignore", UserWarning)
            name = info.name
            if isinstance(name, x509.DirectoryName):
                return name.value.rfc4514_string()
    except ValueError:
        return None
    value = getattr(name, "value", None)
    return value if isinstance(value, str) else None


def parse_token(tsr: bytes) -> TsaToken:
    """The facts of a DER TimeStampResp; raises TimestampError (one line) on garbage or a refusal."""
    return _decode(tsr)[1]


def split_pem_or_der_certs(blob: bytes) -> list[bytes]:
    """DER certificates from a PEM bundle or from one DER certificate; raises TimestampError otherwise."""
    blob = bytes(blob)
    try:
        if b"-----BEGIN CERTIFICATE-----" in blob:
            found = _PEM_CERT.findall(blob)
            ders = [x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER) for pem in found]
        else:  # one DER certificate, or several back to back (as older chain.pem files hold them)
            ders = [
                x509.load_der_x509_certificate(der).public_bytes(Encoding.DER) for der in _der_sequence(blob)
            ]
    except ValueError as exc:
        raise TimestampError(_one_line(f"not a certificate (PEM or DER): {exc}")) from None
    if not ders:
        raise TimestampError("no certificate found in PEM data")
    return ders


def _der_sequence(blob: bytes) -> list[bytes]:
    """The top-level DER elements of ``blob`` (ValueError if it is not a sequence of them)."""
    if not blob:
        raise ValueError("empty")
    return [blob[e0:e1] for _, e0, _, e1 in _children(blob, 0, len(blob))]


def certs_to_pem(ders: Sequence[bytes]) -> bytes:
    """A PEM bundle of DER certificates (what ``split_pem_or_der_certs`` and ``openssl`` read)."""
    return b"".join(x509.load_der_x509_certificate(d).public_bytes(Encoding.PEM) for d in ders)


def _load(blobs: Sequence[bytes]) -> list[x509.Certificate]:
    if isinstance(blobs, bytes | bytearray):  # one bundle passed where a list was meant
        blobs = [bytes(blobs)]
    certs: list[x509.Certificate] = []
    for blob in blobs:
        for der in split_pem_or_der_certs(blob):
            cert = x509.load_der_x509_certificate(der)
            if cert not in certs:
                certs.append(cert)
    return certs


def _self_issued(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _explain(exc: Exception, token: TsaToken) -> str:
    """Turn an rfc3161-client verification error into one line."""
    text = str(exc)
    if "signature failure" in text:
        return "signature does not verify"
    m = re.search(r'Verify error: ?([^"]+)', text)
    if m or "certificate verify error" in text:
        why = f" ({m.group(1).strip()})" if m else ""
        return f"certificate chain does not lead to the trust anchor at genTime {_stamp(token.gen_time)}{why}"
    if "Mismatch between messages" in text:
        return "message imprint is not the digest of the data"
    return _one_line(f"token does not verify: {text}")


def verify_token(
    tsr: bytes,
    *,
    digest: bytes | None = None,
    data: bytes | None = None,
    roots: Sequence[bytes],
    intermediates: Sequence[bytes] = (),
) -> TokenCheck:
    """Check a token offline: imprint, signature, and a chain to one of ``roots`` valid at its genTime.

    ``digest`` is the digest under the token's own hash algorithm; ``data`` is hashed with that algorithm.
    With neither, only the token itself is checked. Self-issued certificates count as trust anchors only
    when given in ``roots``. Never raises on hostile input: problems come back as ``ok=False``.
    """
    try:
        resp, token = _decode(tsr)
    except TimestampError as exc:
        return TokenCheck(False, exc.message, None)
    try:
        return _verify(resp, token, digest, data, roots, intermediates)
    except Exception as exc:
        return TokenCheck(False, _one_line(f"token does not verify: {exc}"), token)
    except BaseException as exc:
        if not _is_panic(exc):
            raise
        return TokenCheck(False, "token does not verify (malformed token)", token)


def _verify(
    resp: TimeStampResponse,
    token: TsaToken,
    digest: bytes | None,
    data: bytes | None,
    roots: Sequence[bytes],
    intermediates: Sequence[bytes],
) -> TokenCheck:
    def fail(problem: str) -> TokenCheck:
        return TokenCheck(False, problem, token)

    if resp.status != PKIStatus.GRANTED:
        return fail("TSA granted the token only with modifications")
    if data is not None:
        if token.hash_algorithm not in ("sha256", "sha384", "sha512"):
            return fail(f"unsupported hash algorithm {token.hash_algorithm} in token")
        if hashlib.new(token.hash_algorithm, bytes(data)).digest() != token.message_imprint:
            return fail("message imprint is not the digest of the data")
    if digest is not None and bytes(digest) != token.message_imprint:
        return fail("message imprint is not the digest of the data")

    try:
        anchors = _load(roots)
        others = [c for c in _load(intermediates) if not _self_issued(c) and c not in anchors]
    except TimestampError as exc:
        return fail(exc.message)
    if not anchors:
        return fail("no trust anchor given")

    builder = VerifierBuilder(roots=anchors, intermediates=others)
    if not resp.signed_data.certificates:
        # The TSA left its certificate out: find it among the certificates we were given.
        signers = list(resp.signed_data.signer_infos)
        if len(signers) != 1:
            return fail(f"token has {len(signers)} signer infos, expected exactly one")
        sid = signers[0]
        leaf = next(
            (c for c in others + anchors if c.issuer == sid.issuer and c.serial_number == sid.serial_number),
            None,
        )
        if leaf is None:
            return fail("token carries no certificate and none of the given certificates is its signer")
        builder = builder.tsa_certificate(leaf)
    try:
        builder.build().verify(resp, token.message_imprint)
    except VerificationError as exc:
        return fail(_explain(exc, token))
    return TokenCheck(True, None, token)


def request_token(url: str, digest: bytes, *, timeout: float = 20.0) -> bytes:
    """POST a time-stamp query for a SHA-256 ``digest`` to ``url``; return the DER TimeStampResp.

    Raises NetworkError when the TSA cannot be reached or answers with a server error (retry later), and
    TimestampError when it refuses, garbles, or answers a different request (imprint or nonce mismatch).
    The token's signature is not checked here; use :func:`verify_token` with the TSA's roots.
    """
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise TimestampError(f"TSA URL must be http or https: {url}")
    nonce = secrets.randbits(63) | (1 << 62)
    query = _request_der(digest, nonce)
    request = http.request(
        url,
        data=query,
        method="POST",
        headers={"Content-Type": "application/timestamp-query", "Accept": "application/timestamp-reply"},
    )
    try:
        # The whole exchange within ``timeout``: a TSA that answers byte by byte must not hold stamp.
        answer = http.fetch(request, timeout=timeout, limit=_MAX_RESPONSE)
    except OSError as exc:  # urllib's URLError (with its reason), or what fetch made of a non-HTTP reply
        reason = getattr(exc, "reason", exc)
        raise NetworkError(_one_line(f"TSA {url} unreachable: {reason}")) from None
    if answer.status != 200:
        msg = f"TSA {url} answered HTTP {answer.status} {answer.reason}"
        if answer.status >= 500 or answer.status == 429:
            raise NetworkError(_one_line(msg)) from None
        raise TimestampError(_one_line(msg)) from None
    body = answer.body
    if len(body) > _MAX_RESPONSE:
        raise TimestampError(f"TSA {url} sent more than {_MAX_RESPONSE} bytes")
    try:
        resp, token = _decode(body)
    except TimestampError as exc:
        raise TimestampError(_one_line(f"TSA {url}: {exc.message}")) from None
    if token.hash_algorithm != "sha256" or token.message_imprint != bytes(digest):
        raise TimestampError(f"TSA {url} answered for a different message imprint")
    try:
        got_nonce = resp.tst_info.nonce
    except Exception:
        got_nonce = None
    if got_nonce != nonce:
        raise TimestampError(f"TSA {url} answered with a different nonce (replayed or foreign token)")
    return body
