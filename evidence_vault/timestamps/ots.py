"""OpenTimestamps adapter: stamp with several calendars, upgrade from allow-listed calendars, verify offline.

Built on the ``opentimestamps`` core library (the one the ``ots`` client uses), so every proof written here
is an ordinary ``.ots`` file that ``ots info`` / ``ots verify`` accept. Verification needs no network: the
Bitcoin block headers come from a :class:`~evidence_vault.timestamps.headers.HeaderStore`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from opentimestamps.core.notary import (
    BitcoinBlockHeaderAttestation,
    LitecoinBlockHeaderAttestation,
    PendingAttestation,
    TimeAttestation,
    UnknownAttestation,
)
from opentimestamps.core.op import OpAppend, OpSHA256
from opentimestamps.core.serialize import (
    BytesDeserializationContext,
    BytesSerializationContext,
)
from opentimestamps.core.timestamp import DetachedTimestampFile, Timestamp

from evidence_vault.errors import NetworkError, TimestampError, UsageError
from evidence_vault.timestamps import http
from evidence_vault.timestamps.headers import HeaderStore

log = logging.getLogger(__name__)

DEFAULT_CALENDARS = (
    "https://alice.btc.calendar.opentimestamps.org",
    "https://bob.btc.calendar.opentimestamps.org",
    "https://finney.calendar.eternitywall.com",
    "https://btc.calendar.catallaxy.com",
)

MAX_ANSWER = 10_000  # same limit as the ots client
_HEADERS = {"Accept": "application/vnd.opentimestamps.v1", "User-Agent": "evidence-vault"}


@dataclass(frozen=True)
class StampResult:
    """A fresh (pending) proof and which calendars took part."""

    ots: bytes
    calendars_ok: list[str] = field(default_factory=list)
    calendars_failed: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OtsCheck:
    """Outcome of :func:`verify`.

    ``complete``: a Bitcoin attestation checked against a stored header (``height``/``block_time`` are
    the earliest such block; ``heights_needed`` may still list other attestations whose headers are
    missing). ``pending``: nothing checkable yet - either only calendar promises (``pending_calendars``)
    or the headers in ``heights_needed`` are missing. ``invalid``: the proof is unreadable, for another
    digest, contradicts a stored header, or has no attestation we can ever check.
    """

    status: Literal["complete", "pending", "invalid"]
    height: int | None = None
    block_time: int | None = None
    problem: str | None = None
    pending_calendars: list[str] = field(default_factory=list)
    heights_needed: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "height": self.height,
            "block_time": self.block_time,
            "problem": self.problem,
            "pending_calendars": list(self.pending_calendars),
            "heights_needed": list(self.heights_needed),
        }


# ---------------------------------------------------------------------------------------------- helpers


def _parse(ots: bytes) -> Any:
    """Deserialize a detached proof; TimestampError (one line) if it is not one."""
    try:
        return DetachedTimestampFile.deserialize(BytesDeserializationContext(bytes(ots)))
    except Exception as exc:  # the library raises many kinds (and asserts) on garbage
        raise TimestampError(f"not a valid OpenTimestamps proof: {_short(exc)}") from None


def _serialize(obj: Any) -> bytes:
    ctx = BytesSerializationContext()
    obj.serialize(ctx)
    data: bytes = ctx.getbytes()
    return data


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text[:200]


def _walk(stamp: Any) -> Iterator[Any]:
    """Every sub-timestamp, iteratively (proof trees can be deep)."""
    todo = [stamp]
    while todo:
        node = todo.pop()
        yield node
        todo.extend(node.ops.values())


def _attestations(stamp: Any) -> Iterator[tuple[bytes, Any]]:
    for node in _walk(stamp):
        for attestation in node.attestations:
            yield node.msg, attestation


def _has_bitcoin(stamp: Any) -> bool:
    return any(isinstance(a, BitcoinBlockHeaderAttestation) for _, a in _attestations(stamp))


def _norm_url(url: str) -> str:
    return url.rstrip("/")


def _parse_answer(body: bytes, msg: bytes) -> Any:
    """A calendar answer: a timestamp relative to ``msg``, read to the last byte, with an attestation."""
    if len(body) > MAX_ANSWER:
        raise TimestampError("answer exceeds size limit")
    ctx = BytesDeserializationContext(body)
    try:
        stamp = Timestamp.deserialize(ctx, msg)
        ctx.assert_eof()
    except Exception as exc:
        raise TimestampError(f"answer is not a timestamp: {_short(exc)}") from None
    if stamp.msg != msg:
        raise TimestampError("answer is for a different commitment")
    if not any(True for _ in _attestations(stamp)):
        raise TimestampError("answer has no attestation")
    return stamp


def _request(url: str, data: bytes | None, timeout: float) -> tuple[int, bytes]:
    """(status, body); 404 and other HTTP errors are returned, not raised; NetworkError if unreachable."""
    req = http.request(url, data=data, headers=_HEADERS, method="POST" if data is not None else "GET")
    try:
        answer = http.fetch(req, timeout=timeout, limit=MAX_ANSWER)
    except OSError as exc:
        raise NetworkError(f"{url}: unreachable ({getattr(exc, 'reason', exc)})") from None
    return answer.status, answer.body if answer.status == 200 else answer.body[:200]


# ---------------------------------------------------------------------------------------------- stamp


def stamp(
    digest: bytes, calendars: Sequence[str], *, min_calendars: int = 2, timeout: float = 10
) -> StampResult:
    """Submit a SHA-256 digest (behind a random nonce, like ``ots stamp``) to every calendar at once.

    NetworkError if fewer than ``min_calendars`` answered with a usable timestamp.
    """
    if len(digest) != 32:
        raise UsageError("stamp() needs a 32-byte SHA-256 digest")
    if min_calendars < 1 or len(calendars) < min_calendars:
        raise UsageError(f"need at least {max(min_calendars, 1)} calendars, {len(calendars)} configured")
    detached = DetachedTimestampFile(OpSHA256(), Timestamp(bytes(digest)))
    # The nonce keeps the calendars (and anyone who sees the proof's upper part) from learning the digest.
    nonced = detached.timestamp.ops.add(OpAppend(os.urandom(16)))
    tip = nonced.ops.add(OpSHA256())

    answers: dict[str, Any] = {}
    failures: dict[str, str] = {}
    lock = threading.Lock()

    def submit(url: str) -> None:
        endpoint = _norm_url(url) + "/digest"
        try:
            status, body = _request(endpoint, tip.msg, timeout)
            if status != 200:
                raise TimestampError(f"HTTP {status}")
            answer = _parse_answer(body, tip.msg)
        except Exception as exc:  # any failure of one calendar only counts against that calendar
            message = exc.message if isinstance(exc, TimestampError) else _short(exc)
            message = message.removeprefix(f"{endpoint}: ")  # named once, by the caller, as ``url``
            with lock:
                failures[url] = message
            return
        with lock:
            answers[url] = answer

    threads = [threading.Thread(target=submit, args=(url,), daemon=True) for url in dict.fromkeys(calendars)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 5)
    for url in dict.fromkeys(calendars):
        if url not in answers and url not in failures:
            failures[url] = "no answer in time"

    ok = [url for url in dict.fromkeys(calendars) if url in answers]
    for url in ok:
        tip.merge(answers[url])
    if len(ok) < min_calendars:
        detail = "; ".join(f"{u}: {m}" for u, m in failures.items())
        raise NetworkError(f"only {len(ok)} of {min_calendars} required calendars answered ({detail})")
    return StampResult(ots=_serialize(detached), calendars_ok=ok, calendars_failed=dict(failures))


# ---------------------------------------------------------------------------------------------- upgrade


def upgrade(
    ots: bytes,
    *,
    allowed_calendars: Sequence[str],
    timeout: float = 10,
    headers: HeaderStore | None = None,
    endpoints: Mapping[str, str] | None = None,
    refused: list[str] | None = None,
    unreachable: list[str] | None = None,
) -> tuple[bytes, bool]:
    """Ask allow-listed calendars for the completed timestamps of pending attestations; merge them.

    Only a pending attestation whose URI is exactly on ``allowed_calendars`` (trailing slash ignored) is
    followed; no other host is ever contacted, and redirects are not followed. ``endpoints`` maps an
    allowed URI to the base URL actually used (a mirror, a gateway, or a test stand-in). An answer is
    merged only if it is a well-formed timestamp on that very commitment; with ``headers``, a Bitcoin
    attestation in it must also match the stored header of its block (else the answer is rejected as a
    graft). Calendars already upgraded are not asked again. Unreachable or still-pending calendars and
    rejected answers are logged, not raised; each rejected answer is also appended to ``refused`` (one
    line naming the calendar), and each calendar that could not be asked (unreachable, no whole answer
    within ``timeout``, an HTTP error other than 404) to ``unreachable``. Returns ``(proof, changed)``;
    TimestampError if ``ots`` is not a proof.
    """
    detached = _parse(ots)
    allowed = {_norm_url(u) for u in allowed_calendars}
    routes = {_norm_url(k): _norm_url(v) for k, v in (endpoints or {}).items() if _norm_url(k) in allowed}
    changed = False
    pending = [
        (node, attestation.uri)
        for node in _walk(detached.timestamp)
        for attestation in list(node.attestations)
        if isinstance(attestation, PendingAttestation)
    ]
    for node, uri in pending:
        key = _norm_url(uri)
        if key not in allowed:
            log.info("not contacting %s: not on the calendar allow-list", uri)
            continue
        if _has_bitcoin(node):
            continue  # this calendar's promise is already fulfilled
        url = f"{routes.get(key, key)}/timestamp/{node.msg.hex()}"
        try:
            status, body = _request(url, None, timeout)
        except NetworkError as exc:
            why = f"{uri}: {exc.message.removeprefix(f'{url}: ')}"
            log.info("%s", why)  # returned, not printed: the caller says it
            if unreachable is not None:
                unreachable.append(why)
            continue
        if status == 404:
            log.info("%s: still pending", uri)
            continue
        if status != 200:
            log.info("%s: HTTP %d", uri, status)
            if unreachable is not None:
                unreachable.append(f"{uri}: answered HTTP {status}")
            continue
        try:
            answer = _parse_answer(body, node.msg)
            _check_answer_against_headers(answer, headers)
        except TimestampError as exc:
            log.info("%s: rejected calendar answer: %s", uri, exc.message)
            if refused is not None:
                refused.append(f"{uri}: {exc.message}")
            continue
        before = _serialize(detached)
        node.merge(answer)
        changed = changed or _serialize(detached) != before
    return _serialize(detached), changed


def _check_answer_against_headers(answer: Any, headers: HeaderStore | None) -> None:
    if headers is None:
        return
    for msg, attestation in _attestations(answer):
        if isinstance(attestation, BitcoinBlockHeaderAttestation):
            header = headers.get(attestation.height)
            if header is not None and msg != header.merkle_root:
                raise TimestampError(
                    f"its Bitcoin attestation does not match block {attestation.height} (grafted timestamp?)"
                )


def drop_false_attestations(ots: bytes, headers: HeaderStore) -> tuple[bytes, list[int]]:
    """Remove the Bitcoin attestations that contradict a stored header (a graft merged while that
    header was not known yet), with the branches that led only to them.

    Returns ``(proof, heights removed)``; the proof is unchanged if nothing was removed. A pending
    attestation whose calendar answer is removed is asked again by the next :func:`upgrade`.
    TimestampError if ``ots`` is not a proof, or if nothing would be left of it.
    """
    detached = _parse(ots)
    removed: list[int] = []
    nodes = list(_walk(detached.timestamp))
    for node in nodes:
        for attestation in list(node.attestations):
            if isinstance(attestation, BitcoinBlockHeaderAttestation):
                header = headers.get(attestation.height)
                if header is not None and node.msg != header.merkle_root:
                    node.attestations.remove(attestation)
                    removed.append(attestation.height)
    if not removed:
        return bytes(ots), []
    for node in reversed(nodes):  # children before their parents (_walk is pre-order)
        for op, child in list(node.ops.items()):
            if not child.attestations and not child.ops:
                del node.ops[op]
    root = detached.timestamp
    if not root.attestations and not root.ops:
        raise TimestampError("the proof holds nothing but false Bitcoin attestations")
    return _serialize(detached), sorted(set(removed))


# ---------------------------------------------------------------------------------------------- verify


def verify(ots: bytes, digest: bytes, headers: HeaderStore) -> OtsCheck:
    """Check a proof for ``digest`` fully offline against ``headers``; never raises on bad input."""
    try:
        return _verify(ots, digest, headers)
    except Exception as exc:  # a verifier must report, not crash, whatever the bytes are
        return OtsCheck(status="invalid", problem=f"cannot check proof: {_short(exc)}")


def _verify(ots: bytes, digest: bytes, headers: HeaderStore) -> OtsCheck:
    try:
        detached = _parse(ots)
    except TimestampError as exc:
        return OtsCheck(status="invalid", problem=exc.message)
    alg = detached.file_hash_op.TAG_NAME
    if len(digest) != len(detached.file_digest):
        return OtsCheck(
            status="invalid", problem=f"proof stamps a {alg} digest; a {len(digest) * 8}-bit digest was given"
        )
    if bytes(digest) != detached.file_digest:
        return OtsCheck(status="invalid", problem=f"proof is for another {alg} digest")

    pending: set[str] = set()
    bitcoin: list[tuple[int, bytes]] = []
    for msg, attestation in _attestations(detached.timestamp):
        if isinstance(attestation, BitcoinBlockHeaderAttestation):
            bitcoin.append((attestation.height, msg))
        elif isinstance(attestation, PendingAttestation):
            pending.add(attestation.uri)

    verified: list[int] = []
    missing: set[int] = set()
    for height, msg in sorted(bitcoin):
        header = headers.get(height)
        if header is None:
            missing.add(height)
        elif msg != header.merkle_root:
            return OtsCheck(
                status="invalid",
                height=height,
                problem=f"Bitcoin attestation does not match the merkle root of block {height}",
                pending_calendars=sorted(pending),
            )
        else:
            verified.append(height)

    if verified:
        best = headers.get(verified[0])
        assert best is not None
        return OtsCheck(
            status="complete",
            height=best.height,
            block_time=best.time,
            pending_calendars=sorted(pending),
            heights_needed=sorted(missing),
        )
    if missing:
        needed = sorted(missing)
        return OtsCheck(
            status="pending",
            problem="header missing for height " + ", ".join(str(h) for h in needed),
            pending_calendars=sorted(pending),
            heights_needed=needed,
        )
    if pending:
        return OtsCheck(status="pending", problem="not yet in Bitcoin", pending_calendars=sorted(pending))
    return OtsCheck(
        status="invalid", problem="no Bitcoin attestation or pending calendar (unknown notary only)"
    )


# ---------------------------------------------------------------------------------------------- info


def attested_heights(ots: bytes) -> list[int]:
    """Bitcoin block heights the proof claims, ascending (TimestampError if unreadable)."""
    detached = _parse(ots)
    return sorted(
        {
            a.height
            for _, a in _attestations(detached.timestamp)
            if isinstance(a, BitcoinBlockHeaderAttestation)
        }
    )


def _describe(msg: bytes, attestation: TimeAttestation) -> dict[str, Any]:
    if isinstance(attestation, BitcoinBlockHeaderAttestation):
        return {"type": "bitcoin", "height": attestation.height, "merkle_root": msg[::-1].hex()}
    if isinstance(attestation, PendingAttestation):
        return {"type": "pending", "uri": attestation.uri, "commitment": msg.hex()}
    if isinstance(attestation, LitecoinBlockHeaderAttestation):
        return {"type": "litecoin", "height": attestation.height}
    if isinstance(attestation, UnknownAttestation):
        return {"type": "unknown", "tag": attestation.TAG.hex(), "payload": attestation.payload.hex()}
    return {"type": type(attestation).__name__, "repr": repr(attestation)[:200]}


def info(ots: bytes) -> dict[str, Any]:
    """JSON-ready summary: hash algorithm, digest, attestations (TimestampError if unreadable)."""
    detached = _parse(ots)
    attestations = [_describe(msg, a) for msg, a in _attestations(detached.timestamp)]
    attestations.sort(key=lambda d: (d["type"], str(d.get("height", "")), str(d.get("uri", "")), repr(d)))
    return {
        "file_hash_alg": detached.file_hash_op.TAG_NAME,
        "digest": detached.file_digest.hex(),
        "attestations": attestations,
    }
