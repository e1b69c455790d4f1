"""Verification of a vault: returns a :class:`Report` listing every finding; never prints.

Checks, in one streaming pass over the log: line completeness, JSON, canonical form, seq, the hash
chain, that each signer was authorized at that point, each signature; every object re-hashed (see
:mod:`evidence_vault.object_checks`: small originals while the log pass runs, the rest after it), every
metadata commitment opened, orphans, and the trust pins of this machine.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import sqlite3
import stat
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import events as ev
from . import merkle
from .authority import Authority
from .checkpoint import Checkpoint
from .custody import Custody
from .custody_log import RawLine
from .errors import EvidenceVaultError, VaultFormatError
from .events import Event, line_hash, parse_line
from .keystore import TrustStore, utc_now
from .object_checks import ObjectPass
from .parallel import LOST, REFUSED, Workers
from .prehash import MIN_LOG, Prehash
from .regular_files import read_text
from .report import Finding, Report, line_subject
from .scratch import HolderTable, ItemRecord, ItemTable, LineHashes
from .signing import (
    PublicKey,
    ed25519_ok,
    fingerprint_prefix,
    prepare_verification,
    prepare_verification_base64,
    sodium_verify,
    verify_signature,
)
from .sqlvalues import int64
from .vault import Vault

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


@dataclass
class CheckpointRecord:
    seq: int
    actor: str
    data: dict[str, Any]


def _verify_batch(batch: list[tuple[int, bytes, bytes, bytes]]) -> list[int]:
    """Worker: the Ed25519 equations of a batch; returns the indices that fail."""
    return [i for i, pub, sig, data in batch if not ed25519_ok(pub, sig, data)]


class SignatureChecks:
    """The Ed25519 equations of a log pass, the one costly step: inline for short logs, in worker
    processes on every core for long ones (everything else about a signature is checked inline).
    The workers may be shared with the object pass, whose batches go in between these."""

    BATCH = 256  # small enough that a log of a few thousand events still keeps every core busy

    def __init__(self, workers: Workers | None = None) -> None:
        self.workers = workers
        if workers is not None:
            sodium_verify()  # loaded before the workers fork
            workers.pool()  # forked now, before anything starts a thread
        self.batch: list[tuple[int, bytes, bytes, bytes]] = []
        self.pending: deque[tuple[Future[list[int]], list[tuple[int, bytes, bytes, bytes]]]] = deque()
        self.failed: list[int] = []
        self.in_flight = 2 * (os.cpu_count() or 1)  # batches queued at most before waiting for one

    @property
    def pool(self) -> ProcessPoolExecutor | None:
        """The workers' pool; None without workers, or once it was lost (by any pass sharing it)."""
        return self.workers.pool() if self.workers is not None else None

    def add(self, index: int, pub: bytes, sig: bytes, data: bytes, report: Report) -> None:
        if self.workers is None:
            if not ed25519_ok(pub, sig, data):
                self._fail(index, report)
            return
        self.batch.append((index, pub, sig, data))
        if len(self.batch) >= self.BATCH:
            self._submit()
            while len(self.pending) > self.in_flight:
                self._collect(*self.pending.popleft())

    def finish(self, report: Report) -> None:
        """Wait for every check; add a ``log.bad-signature`` finding for each that failed."""
        if self.batch:
            self._submit()
        while self.pending:
            self._collect(*self.pending.popleft())
        report.findings.extend(_bad_signature(index) for index in sorted(self.failed))
        self.failed = []

    def _submit(self) -> None:
        batch, self.batch = self.batch, []
        pool = self.pool
        if pool is not None:
            try:
                self.pending.append((pool.submit(_verify_batch, batch), batch))
                return
            except REFUSED:
                self._inline()
        self.failed.extend(_verify_batch(batch))

    def _collect(self, future: Future[list[int]], batch: list[tuple[int, bytes, bytes, bytes]]) -> None:
        try:
            failed = future.result()
        except LOST:  # a worker died (OOM killer, a signal): check this batch here
            self._inline()
            failed = _verify_batch(batch)
        self.failed.extend(failed)

    def _inline(self) -> None:
        """Go on without worker processes (the pool is broken)."""
        if self.workers is not None:
            self.workers.lost()

    @staticmethod
    def _fail(index: int, report: Report) -> None:
        report.findings.append(_bad_signature(index))


def _bad_signature(index: int) -> Finding:
    return Finding(
        "FAIL",
        "log.bad-signature",
        line_subject(index),
        "signature check failed: signature does not verify",
        index,
    )


@dataclass
class LogState:
    """What a log pass learned: authority, items, checkpoints, Merkle roots at requested sizes."""

    authority: Authority = field(default_factory=Authority)
    items: ItemTable = field(default_factory=ItemTable)
    custody: Custody = field(init=False)
    line_hashes: LineHashes = field(default_factory=LineHashes)
    signatures: SignatureChecks = field(default_factory=SignatureChecks)
    checkpoints: dict[int, CheckpointRecord] = field(default_factory=dict)
    openings: list[tuple[str, dict[str, str], int]] = field(default_factory=list)  # (object, committed, seq)
    bundles: set[str] = field(default_factory=set)  # objects holding an imported bag's tag files
    prefix_openings: list[str] = field(default_factory=list)  # openings objects of a verified prefix
    prefix_bundles: set[str] = field(default_factory=set)  # bag tag files objects of a verified prefix
    roots_at: dict[int, bytes] = field(default_factory=dict)
    events: int = 0
    last_time: str = ""
    end_offset: int = 0  # byte offset just after the last complete line checked
    acc: merkle.MerkleAccumulator | None = None  # the Merkle accumulator after that line
    prefix: Any = None  # (running SHA-256, length) of a verified prefix, in an incremental run
    on_item: Callable[[str, ItemRecord], None] | None = None  # told of each item as it is recorded

    def __post_init__(self) -> None:
        # Per-item state lives in a temporary on-disk table: memory stays flat in the log length.
        self.custody = Custody(holders=HolderTable(self.items.db))


def verify_log(
    lines: Iterable[RawLine],
    report: Report,
    *,
    vault_id: str | None,
    on_event: Callable[[Event, bytes], None] | None = None,
    root_sizes: Iterable[int] = (),
    keep_hashes: Iterable[int] = (),
    workers: Workers | None = None,
    resume: tuple[LogState, merkle.MerkleAccumulator] | None = None,
    on_item: Callable[[str, ItemRecord], None] | None = None,
) -> LogState:
    """Check every line of a custody log; add findings to ``report``; return what it learned.

    Also recomputes the RFC 9162 Merkle root at every checkpoint and at each size in ``root_sizes``.
    With ``resume`` (the state and accumulator after a verified prefix), ``lines`` are the lines after it.
    With ``workers``, signatures are checked there; ``on_item`` is told of each item as it is recorded.
    """
    if resume is None:
        state = LogState(line_hashes=LineHashes(set(keep_hashes)), signatures=SignatureChecks(workers))
        acc = merkle.MerkleAccumulator()
    else:
        state, acc = resume
        state.signatures = SignatureChecks(workers)
    state.on_item = on_item
    prev: str | None = state.line_hashes.last
    wanted = set(root_sizes)
    for index, raw in enumerate(lines, start=len(state.line_hashes)):
        if index in wanted:
            state.roots_at[index] = acc.root()
        if not raw.complete:
            report.fail(
                "log.torn-line",
                f"log.jsonl line {index + 1}",
                "incomplete last line (interrupted write?): `evidence-vault doctor --repair` sets it "
                "aside (or adds the newline a whole event lacks); if nothing was interrupted, the log "
                "was cut",
                seq=index,
            )
            break
        this_hash = line_hash(raw.data)
        state.line_hashes.append(this_hash)
        state.end_offset = raw.offset + len(raw.data) + 1
        # Only checkpoint lines need the root before them (canonical lines spell the type exactly so).
        root_before = acc.root() if b'"type":"checkpoint"' in raw.data else None
        acc.append(merkle.leaf_hash(raw.data))
        state.events += 1
        try:
            event, is_canonical = parse_line(raw.data)
        except EvidenceVaultError as exc:
            report.fail("log.malformed", line_subject(index), exc.message, seq=index)
            prev = this_hash
            continue
        check_event(event, is_canonical, index, prev, root_before, state, report, vault_id, raw.data)
        prev = this_hash
        if on_event is not None:
            on_event(event, raw.data)
    if acc.size in wanted:
        state.roots_at[acc.size] = acc.root()
    state.acc = acc
    state.signatures.finish(report)
    return state


def check_event(
    event: Event,
    is_canonical: bool,
    index: int,
    prev: str | None,
    root_before: bytes | None,
    state: LogState,
    report: Report,
    vault_id: str | None,
    line: bytes | None = None,
) -> None:
    """Every check of one log line in its place: form, seq, chain, time, signer, custody, contents.

    ``prev`` is the hash the line must chain to; ``root_before`` the Merkle root of the lines before it
    (needed for checkpoint lines only). Shared by vault verification and bundle verification.
    """
    if not is_canonical:
        report.fail(
            "log.non-canonical", line_subject(index), "line is not in RFC 8785 canonical form", seq=index
        )
    if event.v != ev.FORMAT_VERSION:
        report.fail("log.version", line_subject(index), f"unknown event format version {event.v}", seq=index)
    if event.seq != index:
        report.fail(
            "log.seq-mismatch",
            line_subject(index),
            f"seq is {event.seq}, expected {index} (line removed, duplicated or reordered)",
            seq=index,
        )
    if event.prev != prev:
        report.fail(
            "log.chain-broken",
            line_subject(index),
            "prev does not match the hash of the previous line (a line before it was edited, "
            "removed or reordered)",
            seq=index,
        )
    if event.type not in ev.EVENT_TYPES:
        report.warn("log.unknown-type", line_subject(index), f"unknown event type {event.type!r}", seq=index)
    if not _TIME.match(event.time):
        report.fail(
            "log.bad-time", line_subject(index), f"time {event.time!r} is not ISO 8601 UTC with ms", seq=index
        )
    elif event.time < state.last_time:
        report.warn(
            "log.time-order",
            line_subject(index),
            f"time {event.time} is earlier than the previous event's {state.last_time}",
            seq=index,
        )
    if event.time > state.last_time:
        state.last_time = event.time
    _check_signer(event, index, state, report, vault_id, line if is_canonical else None)
    try:
        state.custody.check(event, state.authority)
    except EvidenceVaultError as exc:
        report.fail("log.custody-violation", line_subject(index), exc.message, seq=index)
    try:
        state.authority.apply(event)
    except EvidenceVaultError as exc:
        report.fail("log.bad-key-event", line_subject(index), exc.message, seq=index)
    state.custody.apply(event)
    if event.type != ev.ITEM_INGESTED and isinstance(event.data.get("openings"), str):
        committed = event.data.get("committed")
        state.openings.append(
            (event.data["openings"], dict(committed) if isinstance(committed, dict) else {}, index)
        )
    if event.type == ev.ITEM_INGESTED:
        _record_item(event, index, state, report)
    elif event.type == ev.CHECKPOINT:
        _check_checkpoint_event(event, index, line_subject(index), root_before, state, report, vault_id)


def checkpoint_text(data: dict[str, Any]) -> bytes:
    """The signed checkpoint text a ``checkpoint`` event stands for."""
    return Checkpoint(
        origin=str(data["origin"]), size=int(data["size"]), root=bytes.fromhex(str(data["root"]))
    ).to_text()


def _check_checkpoint_event(
    event: Event,
    index: int,
    subject: str,
    root_before: bytes | None,
    state: LogState,
    report: Report,
    vault_id: str | None,
) -> None:
    data = event.data
    try:
        text = checkpoint_text(data)
    except (KeyError, ValueError, TypeError, EvidenceVaultError) as exc:
        report.fail("checkpoint.malformed", subject, f"checkpoint event is malformed: {exc}", seq=index)
        return
    if data["size"] != index:
        report.fail(
            "checkpoint.bad-size",
            subject,
            f"checkpoint claims tree size {data['size']} but stands at seq {index}",
            seq=index,
        )
    elif bytes.fromhex(str(data["root"])) != root_before:
        report.fail(
            "checkpoint.root-mismatch",
            subject,
            "checkpoint root does not match the Merkle root of the log before it",
            seq=index,
        )
    if vault_id is not None and data["origin"] != f"evidence-vault/{vault_id}":
        report.fail(
            "checkpoint.wrong-origin",
            subject,
            f"checkpoint origin {data['origin']!r} is not this vault's",
            seq=index,
        )
    try:
        key = state.authority.public_key(event.actor)
        verify_signature(base64.b64decode(str(data.get("signature", "")), validate=True), text, key)
    except (EvidenceVaultError, KeyError, ValueError) as exc:
        report.fail("checkpoint.bad-signature", subject, f"checkpoint signature: {exc}", seq=index)
    state.checkpoints[index] = CheckpointRecord(index, event.actor, data)


def _check_signer(
    event: Event,
    index: int,
    state: LogState,
    report: Report,
    vault_id: str | None,
    line: bytes | None = None,
) -> None:
    auth = state.authority
    try:
        auth.check(event)
    except EvidenceVaultError as exc:
        report.fail("log.unauthorized-signer", line_subject(index), exc.message, seq=index)
        return
    try:
        key = (
            PublicKey.from_openssh(event.data["key"]["public_key"])
            if event.seq == 0
            else auth.public_key(event.actor)
        )
        message = signing_bytes_of(line, event) if line is not None else event.signing_bytes()
        prepared = prepare_verification_base64(event.sig, message, key)
        raw_sig, signed = prepared or prepare_verification(event.signature, message, key)
        state.signatures.add(index, key.raw, raw_sig, signed, report)
    except (EvidenceVaultError, KeyError, TypeError) as exc:
        report.fail("log.bad-signature", line_subject(index), f"signature check failed: {exc}", seq=index)
    if event.type == ev.VAULT_CREATED and vault_id is not None and event.data.get("vault_id") != vault_id:
        report.fail(
            "log.wrong-vault",
            line_subject(index),
            "genesis names another vault id than vault.json",
            seq=index,
        )


def signing_bytes_of(line: bytes, event: Event) -> bytes:
    """The signed bytes of a canonical line: the line without its top-level ``"sig"`` member.

    Keys are sorted, so ``,"sig":"…"`` sits right before ``,"time":``; cutting it out gives exactly the
    canonical JSON of the event without ``sig``, with no second serialization.
    """
    member = b',"sig":"' + event.sig.encode("ascii", "replace") + b'","time":'
    at = line.rfind(member)
    if at < 0:
        return event.signing_bytes()
    return line[:at] + b',"time":' + line[at + len(member) :]


_ITEM_ID = re.compile(r"sha256:[0-9a-f]{64}")


def _record_item(event: Event, index: int, state: LogState, report: Report) -> None:
    data = event.data
    item, size = data.get("item"), data.get("size")
    if not isinstance(item, str) or not _ITEM_ID.fullmatch(item) or not int64(size) or size < 0:
        report.fail(
            "log.bad-item", line_subject(index), "item.ingested lacks a valid item id or size", seq=index
        )
        return
    if item in state.items:
        report.warn(
            "log.duplicate-ingest",
            line_subject(index),
            f"item already ingested at seq {state.items[item].seq}",
            seq=index,
            item=item,
        )
        return
    prov = data.get("provenance")
    if isinstance(prov, dict) and isinstance(prov.get("bundle_object"), str):
        state.bundles.add(prov["bundle_object"])
    meta = data.get("metadata")
    committed = data.get("committed") if isinstance(data.get("committed"), dict) else {}
    record = ItemRecord(index, size, meta if isinstance(meta, str) else None, dict(committed or {}))
    state.items[item] = record
    if state.on_item is not None:
        state.on_item(item, record)


def check_trust(
    report: Report, state: LogState, *, trusted: Sequence[str], pins: TrustStore | None, vault_id: str | None
) -> None:
    """Is the genesis key one the user pinned? Was the log cut back below what this machine saw?"""
    genesis = state.authority.genesis
    report.genesis_key = genesis
    pin = pins.get(vault_id) if pins is not None and vault_id else None
    wanted = [fingerprint_prefix(t) for t in trusted]
    if genesis is not None:
        _check_genesis(report, genesis, wanted, pin)
    head = pin.get("head") if pin else None
    if isinstance(head, dict) and isinstance(head.get("seq"), int):
        seen_seq, seen_hash = head["seq"], head.get("hash")
        if seen_seq >= len(state.line_hashes):
            now = f"ends at seq {len(state.line_hashes) - 1}" if state.line_hashes else "has no events"
            report.fail(
                "log.truncated",
                "log.jsonl",
                f"this machine saw the log up to seq {seen_seq}; it now {now} (events were removed)",
            )
        elif state.line_hashes[seen_seq] != seen_hash:
            report.fail(
                "log.rewritten",
                line_subject(seen_seq),
                f"line differs from the one this machine saw at seq {seen_seq} (history rewritten)",
                seq=seen_seq,
            )


def _check_genesis(report: Report, genesis: str, wanted: list[str], pin: dict[str, Any] | None) -> None:
    if wanted:
        if genesis in wanted:
            report.genesis_pinned = True
        else:
            report.fail(
                "trust.genesis-mismatch",
                "log.jsonl line 1 (seq 0)",
                f"genesis key {genesis} is not the trusted key {', '.join(wanted)}",
                seq=0,
            )
    elif pin is not None and pin.get("genesis"):
        if pin["genesis"] == genesis:
            report.genesis_pinned = True
        else:
            report.fail(
                "trust.genesis-mismatch",
                "log.jsonl line 1 (seq 0)",
                f"genesis key {genesis} differs from the key pinned on this machine ({pin['genesis']})",
                seq=0,
            )
    if not report.genesis_pinned and not report.failures_for("trust.genesis-mismatch"):
        report.warn(
            "trust.genesis-not-pinned",
            "log.jsonl line 1 (seq 0)",
            f"genesis key not pinned: compare {genesis} out of band, then pass --trust {genesis}",
            seq=0,
        )


def verify_vault(
    vault: Vault,
    *,
    trusted: Sequence[str] = (),
    pins: TrustStore | None = None,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    record_head: bool = True,
    tsa_roots: Sequence[bytes] = (),
    incremental: bool = False,
    rehash: bool = False,
    on_total: Callable[[int], None] | None = None,
    prehashed: Prehash | None = None,
) -> Report:
    """Verify a vault: log, signatures, authorization, every object, commitments, anchors, pins.

    ``on_progress`` is told the bytes of each object re-hashed; ``on_total``, once the log pass has
    named every item, the bytes of the originals that will be re-hashed in all (for a progress bar:
    verify reads nothing else to know it, and writes nothing into the vault).

    ``incremental``: start from the end state of the last clean verification on this machine (see
    :mod:`evidence_vault.incremental`) when the log prefix it covered is byte-for-byte unchanged, and
    say in the report (``INFO incremental.*``) exactly what was not re-checked. ``rehash``: with
    ``incremental``, re-hash every object all the same (only the verified log lines are not re-checked).

    ``prehashed``: a child started before this call (:meth:`Prehash.start`) that re-hashed small objects
    meanwhile; it is stopped here, once the workers are forked and before the log pass, and what it
    found intact is not hashed again.
    """
    from . import incremental as inc
    from .anchors_verify import check_anchors
    from .checkpoint import list_checkpoints

    report = Report(target=str(vault.root), vault_id=vault.config.vault_id, started=utc_now())
    try:
        log_st: os.stat_result | None = vault.log.path.stat()
    except FileNotFoundError:  # deleted: evidence removed (FAIL log.missing), not a tool failure
        log_st = None
    if log_st is not None and not stat.S_ISREG(log_st.st_mode):  # a FIFO would block the log pass
        raise VaultFormatError("the custody log is not a regular file", path=vault.log.path)
    log_before = _log_stamp(vault)  # before any byte of the log is read
    dirs = list_checkpoints(vault)
    pins = pins if pins is not None else TrustStore()
    pin = pins.get(vault.config.vault_id) or {}
    seen = pin.get("head", {}).get("seq") if isinstance(pin.get("head"), dict) else None
    keep = [seen] if isinstance(seen, int) else []
    parallel = log_st is not None and log_st.st_size > MIN_LOG  # about 500 events and more
    resume, saved = None, None
    if incremental and log_st is None:
        report.add("INFO", "incremental.full", "log.jsonl", "the custody log is missing: full run")
    elif incremental:
        saved = inc.load(vault.config.vault_id)
        resume = _resume(vault, saved, keep, report, dirs, rehash=rehash) if saved else None
        if saved is None:
            report.add(
                "INFO",
                "incremental.full",
                "log.jsonl",
                "no earlier clean verification on this machine: full run",
            )
    start_seq = len(resume[0].line_hashes) if resume else 0
    lines = iter(()) if log_st is None else vault.log.iter_raw(saved.bytes if resume and saved else 0)
    n_threads = workers or os.cpu_count() or 1
    if parallel:
        sodium_verify()  # loaded before the workers fork
    # One pool of workers for both passes: small objects are checked as the log pass records them, in
    # between its batches of signature checks, so no core waits for the log pass to end.
    min_seq = 0 if rehash else start_seq  # items from here on are re-hashed; those before, size-checked
    with ObjectPass(
        vault, n_threads, on_progress, processes=workers, min_seq=min_seq, recorded_from=start_seq
    ) as objects:
        try:
            if parallel:
                objects.start_early()
        finally:  # the child hashed on while the workers forked: stopped now, before any check
            if prehashed is not None:
                found = prehashed.take()
                if prehashed.covers(vault.root):  # else started for another vault: says nothing of this one
                    objects.found = found
        state = verify_log(
            lines,
            report,
            vault_id=vault.config.vault_id,
            root_sizes=dirs,
            keep_hashes=keep,
            workers=objects.shared if parallel else None,
            resume=resume,
            on_item=objects.item_recorded,
        )
        if log_st is None:
            report.fail(
                "log.missing",
                "log.jsonl",
                "the custody log is missing (deleted, with every event in it): nothing recorded can be "
                "checked, and every stored object is reported as an orphan",
            )
        elif not state.line_hashes and not report.failures_for("log.torn-line"):
            report.fail(
                "log.empty",
                "log.jsonl",
                "the log has no events, not even the genesis event `init` writes (events were removed)",
            )
        check_trust(report, state, trusted=trusted, pins=pins, vault_id=vault.config.vault_id)
        check_key_files(vault, state, report)
        if state.line_hashes:
            report.head = {"seq": len(state.line_hashes) - 1, "hash": state.line_hashes[-1]}
        if on_total is not None:
            on_total(state.items.total_size(min_seq))
        # Checked here while the workers still hash (it needs the log pass only); its findings are
        # reported after the objects'.
        anchors = Report(target=report.target)
        check_anchors(
            vault, state, anchors, dirs, tsa_roots=tsa_roots, pinned=pins.tsa_roots(vault.config.vault_id)
        )
        bytes_hashed = objects.run(state, report)
    report.findings.extend(anchors.findings)
    report.items.extend(anchors.items)
    report.stats = {
        "events": state.events,
        "items": len(state.items),
        "keys": len(state.authority.keys),
        "bytes_hashed": bytes_hashed,
        "lines_checked": len(state.line_hashes) - start_seq,
    }
    report.finished = utc_now()
    if record_head and report.outcome != "FAIL" and report.head and report.genesis_pinned:
        pins.record_head(vault.config.vault_id, report.head["seq"], report.head["hash"])
    clean = report.outcome != "FAIL" and not any(f.level == "FAIL" for f in report.findings)
    if clean and not (resume and report.stats["lines_checked"] == 0):  # else the saved state holds as it is
        _save_state(vault, state, report, log_before)
    return report


def check_key_files(vault: Vault, state: LogState, report: Report) -> None:
    """``keys/*.pub`` are what a check by hand with ``ssh-keygen`` reads (docs/formats.md): each must be
    the key its name says, as the log authorized it. ``verify`` itself never reads them."""
    for fp, grant in sorted(state.authority.keys.items()):
        path = vault.public_key_path(fp)
        subject = f"keys/{path.name}"
        try:
            key = PublicKey.from_openssh(read_text(path, "utf-8"))
        except FileNotFoundError:
            report.warn("vault.key-file-missing", subject, f"no public key file for {fp} ({grant.name})")
            continue
        except (OSError, UnicodeDecodeError, EvidenceVaultError) as exc:
            report.fail("vault.key-file-mismatch", subject, f"unreadable public key file: {exc}")
            continue
        if key.fingerprint != fp:
            report.fail(
                "vault.key-file-mismatch",
                subject,
                f"holds key {key.fingerprint}, not {fp} the log authorized: a check by hand with "
                "ssh-keygen would trust the wrong key",
            )


def _resume(
    vault: Vault,
    saved: Any,
    keep: list[int],
    report: Report,
    dirs: Sequence[int] = (),
    *,
    rehash: bool = False,
) -> tuple[LogState, merkle.MerkleAccumulator] | None:
    """The state after the verified prefix, if the log still starts with exactly those bytes."""
    from . import incremental as inc

    unrooted = sorted(d for d in dirs if d < saved.lines and str(d) not in saved.roots_at)
    if unrooted:  # a checkpoint directory that run did not see (copied in since): its root is needed
        report.add(
            "INFO",
            "incremental.full",
            "log.jsonl",
            f"checkpoints/{unrooted[0]:012d} was not there when lines 0-{saved.lines - 1} were verified: "
            "full run",
        )
        return None

    size = vault.log.path.stat().st_size
    # A head pinned on this machine may lie inside the verified prefix (a vaults.json copied from the
    # custodian's machine, say): its line's hash is taken in the same read as the prefix's hash.
    inside = {k for k in keep if k < saved.lines}
    kept: dict[int, str] = {}
    # The usual case: the head this machine recorded is the prefix's last line, whose hash the state
    # holds (it is that line's hash if the prefix hashes as it did then): no line-by-line read.
    if saved.lines - 1 in inside and isinstance(saved.last_hash, str):
        inside.discard(saved.lines - 1)
        kept[saved.lines - 1] = saved.last_hash
    if size < saved.bytes:
        hasher = None
    elif inside:
        hasher = _prefix_with_hashes(vault, saved.bytes, inside, kept)
    else:
        hasher = inc.extend(hashlib.sha256(), vault.log.path, 0, saved.bytes)
    if hasher is None or hasher.hexdigest() != saved.prefix_sha256:
        report.add(
            "INFO",
            "incremental.full",
            "log.jsonl",
            f"the {saved.lines} lines verified on {saved.verified_at} changed: full run",
        )
        return None
    keep = [k for k in keep if k >= saved.lines]  # older pinned heads are inside the verified prefix
    from .scratch import restore

    try:
        items = restore(saved.items_db)
    except sqlite3.Error:  # replaced by a newer state since it was read (a verify running beside this one)
        report.add("INFO", "incremental.full", "log.jsonl", "the saved state changed meanwhile: full run")
        return None
    state = LogState(items=items, line_hashes=LineHashes(set(keep)))
    state.line_hashes.kept.update(kept)
    state.authority = saved.authority_state()
    state.custody.pending = saved.pending_transfers()
    state.line_hashes.count = saved.lines
    state.line_hashes.last = saved.last_hash
    state.last_time = saved.last_time
    state.events = saved.lines
    state.roots_at = {int(k): bytes.fromhex(v) for k, v in saved.roots_at.items()}
    state.checkpoints = {int(k): CheckpointRecord(**v) for k, v in saved.checkpoints.items()}
    state.bundles = set(saved.bundles)
    state.prefix_bundles = set(saved.bundles)
    state.prefix_openings = list(saved.openings)
    report.findings.extend(Finding(**w) for w in saved.warnings)  # what those lines showed still holds
    state.end_offset = saved.bytes
    state.prefix = (hasher, saved.bytes)
    skipped = (
        f"lines 0-{saved.lines - 1} not re-checked: their bytes still hash to what the clean verification "
        f"of {saved.verified_at} on this machine recorded"
    )
    report.add(
        "INFO",
        "incremental.skipped",
        "log.jsonl",
        f"{skipped}; every object re-hashed all the same (--rehash)"
        if rehash
        else f"{skipped}; objects of the {len(state.items)} items ingested before were size-checked, not "
        "re-hashed, and their metadata, openings and imported bag objects only checked for presence; no "
        "orphan scan (add --rehash to re-hash every object, or run without --incremental to re-check "
        "everything)",
    )
    return state, _acc_of(saved)


def _prefix_with_hashes(vault: Vault, length: int, wanted: set[int], kept: dict[int, str]) -> Any:
    """SHA-256 of the first ``length`` bytes of the log, read line by line; the hashes of the lines
    at the seqs in ``wanted`` go into ``kept``."""
    hasher = hashlib.sha256()
    for index, raw in enumerate(vault.log.iter_raw(0)):
        if raw.offset >= length or not raw.complete or raw.offset + len(raw.data) + 1 > length:
            break
        hasher.update(raw.data + b"\n")
        if index in wanted:
            kept[index] = line_hash(raw.data)
    return hasher


def _acc_of(saved: Any) -> merkle.MerkleAccumulator:
    acc: merkle.MerkleAccumulator = saved.accumulator()
    return acc


def _log_stamp(vault: Vault) -> tuple[int, int, int] | None:
    """The log file's identity and change time: any write to it, or its replacement, changes it (the
    change time cannot be set back by hand, unlike the modification time)."""
    try:
        st = vault.log.path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_ctime_ns


def _save_state(
    vault: Vault, state: LogState, report: Report, log_before: tuple[int, int, int] | None = None
) -> None:
    """Keep this clean run's end state for the next ``--incremental`` run (best effort).

    The prefix hash is taken from the file after the log pass: if the log was written to during the
    run (``log_before`` differs), the bytes hashed now need not be the bytes that were verified, and
    nothing is saved (the next incremental run builds on the last state saved, or is a full run).
    """
    from . import incremental as inc

    n, end, acc = len(state.line_hashes), state.end_offset, state.acc
    if acc is None or acc.size != n or end == 0:
        return
    try:
        if state.prefix is not None:  # only the new bytes are read again
            hasher, start = state.prefix
            digest = inc.extend(hasher.copy(), vault.log.path, start, end).hexdigest()
        else:
            digest = inc.prefix_sha256(vault.log.path, end)
        if log_before is None or _log_stamp(vault) != log_before:
            return
        size_hashes = acc.state()
        doc = {
            "lines": n,
            "bytes": end,
            "prefix_sha256": digest,
            "last_hash": state.line_hashes.last,
            "last_time": state.last_time,
            "acc_size": size_hashes[0],
            "acc_hashes": [h.hex() for h in size_hashes[1]],
            "authority": state.authority.to_dict(),
            "pending": [p.to_dict() for p in state.custody.pending.values()],
            "roots_at": {str(k): v.hex() for k, v in state.roots_at.items()},
            "checkpoints": {
                str(k): {"seq": c.seq, "actor": c.actor, "data": c.data} for k, c in state.checkpoints.items()
            },
            "bundles": sorted(state.bundles),
            "openings": sorted(
                {o.removeprefix("sha256:") for o, _, _ in state.openings} | set(state.prefix_openings)
            ),
            "warnings": [
                f.to_dict()
                for f in report.findings
                if f.level == "WARN" and f.code.startswith("log.") and f.seq is not None and f.seq < n
            ],
            "verified_at": report.finished,
        }
        inc.save(vault.config.vault_id, doc, state.items.db.save_to)
    except (OSError, ValueError, sqlite3.Error):  # disk full, say: the last state saved stays whole
        return
