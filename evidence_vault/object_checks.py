"""The object pass of ``verify``: every original, metadata and openings object re-hashed on every core,
every commitment opened, orphans found.

A small original's check needs nothing but its own ingest event, so it can start while the log pass is
still running (:meth:`ObjectPass.item_recorded`): the worker processes hash it between batches of
signature checks, and the cores never wait for the log pass to end.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from . import commitments
from .errors import EvidenceVaultError
from .hashing import Digest, chunk_root, hash_file, read_upto
from .objects import SMALL
from .parallel import LOST, REFUSED, Workers, ordered_map
from .prehash import Found
from .regular_files import read_bytes
from .report import Report, line_subject
from .scratch import ItemRecord

if TYPE_CHECKING:
    from .vault import Vault
    from .verify import LogState


class Job(NamedTuple):
    """One object to re-hash: its digest, kind, recorded size, item, and what checks its contents."""

    hex: str
    kind: str  # item | metadata | openings | bundle (an imported bag's tag files)
    size: int | None
    item: str | None
    meta: str | None = None  # an item's metadata object id (for its chunk tree)
    uses: Any = None  # metadata: the ingest's commitments; openings: [(commitments, seq), ...]


Check = Callable[[Job, bool], tuple[Job, Any]]
Problem = tuple[str, str, str, "int | None", "str | None"]  # (code, subject, message, seq, item)

BIG = 64 << 20  # from this size on, an original is re-hashed through its chunk tree, on every core


def jobs_of(item: str, rec: ItemRecord) -> list[Job]:
    """An item's original and its metadata object."""
    out = [Job(item.removeprefix("sha256:"), "item", rec.size, item, rec.metadata)]
    if rec.metadata:
        out.append(Job(rec.metadata.removeprefix("sha256:"), "metadata", None, item, uses=rec.committed))
    return out


def to_worker(job: Job) -> bool:
    """Small objects go to worker processes; big originals (and bag tag files) stream in threads here."""
    if job.kind == "bundle":
        return False
    return job.kind != "item" or (job.size is not None and job.size <= SMALL)


def object_checker(vault: Vault, n_threads: int, on_progress: Callable[[int], None] | None) -> Check:
    """What re-hashes one object (in a thread, or in a worker process for small objects, see
    :mod:`evidence_vault.parallel`); for the small JSON objects it also checks what they open."""
    store = vault.objects

    def check(job: Job, in_worker: bool) -> tuple[Job, Any]:
        problems: list[Problem] = []
        try:
            path = store.fspath(job.hex)  # FileNotFoundError for what is no object id
            # Non-blocking: a FIFO put in place of an object would block the open (and verify) forever.
            # Nor may an object be a link: its content would live outside the vault, free to change.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    return job, "unreadable: not a regular file"
                # Streamed (flat memory) when big, whatever size the log recorded for it.
                big = st.st_size > SMALL or (
                    job.kind in ("item", "bundle") and (job.size is None or job.size > SMALL)
                )
                raw = b"" if big else read_upto(fd, st.st_size, SMALL)
            finally:
                os.close(fd)
            if big:
                digest = (
                    _by_chunk_tree(vault, Path(path), job, n_threads) if job.kind == "item" else None
                ) or hash_file(path)
            else:
                digest = Digest(hashlib.sha256(raw).hexdigest(), len(raw))
                if digest.sha256 == job.hex and job.kind == "metadata" and job.item is not None:
                    problems = _metadata_problems(job.item, job.uses or {}, raw)
                elif digest.sha256 == job.hex and job.kind == "openings":
                    problems = _openings_problems(job.uses or [], raw)
        except FileNotFoundError:
            return job, "missing"
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return job, "unreadable: a symbolic link, not a file of the vault"
            return job, f"unreadable: {exc.strerror}"
        if on_progress is not None and not in_worker:
            on_progress(digest.size)
        return job, (digest, st.st_mode, problems)

    return check


def _by_chunk_tree(vault: Vault, path: Path, job: Job, workers: int) -> Digest | None:
    """Re-hash a big original on every core through the chunk tree recorded in its metadata object.

    Sound because the metadata object is itself checked against the hash its signed ingest event
    names before its root is used; every byte is still read and hashed. None: use the whole-file hash.
    """
    hex_digest, kind, size, _item, meta, _uses = job
    if kind != "item" or size is None or size < BIG or not meta or workers < 2:
        return None
    try:
        raw = read_bytes(vault.objects.fspath(meta.removeprefix("sha256:")), SMALL)
        if hashlib.sha256(raw).hexdigest() != meta.removeprefix("sha256:"):
            return None
        chunks = json.loads(raw).get("chunks")
        root, got = chunk_root(path, int(chunks["chunk_size"]), workers=workers)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    if got != size or root.hex() != chunks.get("root"):
        return None  # the whole-file hash then reports it (and names the damaged ranges)
    return Digest(hex_digest, got)


class ObjectPass:
    """Re-hash every referenced object: small originals as the log pass records them (when there are
    worker processes), then the rest, biggest first. Its findings are kept apart and added to the
    report by :meth:`run`, after the log's own.

    ``shared`` is its pool of worker processes (``processes`` of them, forked on first use), which the
    log pass may use too; closed with this pass. With ``min_seq`` (an incremental run), items ingested
    before it are only size-checked. ``recorded_from``: the first seq the log pass reads (an incremental
    run with ``--rehash`` re-hashes every object, also those of items the log pass does not record).
    ``found``, set before the log pass: originals already re-hashed in this run and found to match their
    names (:mod:`evidence_vault.prehash`), by hex digest: not read again.
    """

    WINDOW = 8  # batches in flight during the log pass: bounded memory, the workers never idle
    EARLY_BATCH = 64  # objects per batch during the log pass (fewer hand-offs to the workers' threads)

    def __init__(
        self,
        vault: Vault,
        n_threads: int,
        on_progress: Callable[[int], None] | None,
        *,
        processes: int | None = None,
        min_seq: int = 0,
        recorded_from: int = 0,
    ) -> None:
        self.vault, self.n_threads, self.on_progress, self.min_seq = vault, n_threads, on_progress, min_seq
        self.recorded_from = max(min_seq, recorded_from)
        self.found: dict[str, Found] = {}
        self.check = object_checker(vault, n_threads, on_progress)
        self.shared = Workers(self.check, processes)
        self.out = Report(target=str(vault.root))
        self.total = 0  # bytes re-hashed
        self.expected = 0  # objects the log references
        self.early = False  # small originals checked as the log pass records them
        self.batch: list[Job] = []
        self.pending: deque[tuple[Future[list[tuple[Job, Any]]], list[Job]]] = deque()

    def __enter__(self) -> ObjectPass:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shared.close()

    def start_early(self) -> None:
        """Check small originals while the log pass runs (forks the workers now, if not yet)."""
        self.early = self.shared.pool() is not None

    def item_recorded(self, item: str, rec: ItemRecord) -> None:
        """The log pass recorded an item (its first ingest): queue its small objects."""
        if not self.early or rec.size > SMALL or rec.seq < self.min_seq:
            return
        self.batch.extend(job for job in jobs_of(item, rec) if not self._prehashed(job))
        if len(self.batch) >= self.EARLY_BATCH:
            self._submit()
        while len(self.pending) > self.WINDOW:
            self._collect(*self.pending.popleft())

    def run(self, state: LogState, report: Report) -> int:
        """The rest of the pass, after the log pass; adds every object finding to ``report``.
        Returns the bytes re-hashed."""
        if self.batch:
            self._submit()
        while self.pending:
            self._collect(*self.pending.popleft())
        openings_at: dict[str, list[tuple[dict[str, str], int]]] = {}
        for obj, committed, seq in state.openings:
            openings_at.setdefault(obj.removeprefix("sha256:"), []).append((committed, seq))
        if self.min_seq:
            _size_check(self.vault, state, self.out, self.min_seq)

        # Objects of a verified log prefix, re-hashed in an incremental run with --rehash: unchanged
        # bytes still open what they opened when that prefix was verified.
        prefix = self.recorded_from > self.min_seq
        prefix_openings = [o for o in state.prefix_openings if o not in openings_at] if prefix else []

        def jobs() -> Iterator[Job]:
            above = SMALL if self.early else -1  # the small ones were done during the log pass
            for item, rec in state.items.records_by_size(self.min_seq, above=-1 if prefix else above):
                if rec.size <= above and rec.seq >= self.recorded_from:
                    continue  # done during the log pass
                yield from (job for job in jobs_of(item, rec) if not self._prehashed(job))
            for hex_obj, uses in openings_at.items():
                yield Job(hex_obj, "openings", None, None, uses=uses)
            for hex_obj in prefix_openings:
                yield Job(hex_obj, "openings", None, None, uses=[])
            for bundle in sorted(state.bundles if prefix else state.bundles - state.prefix_bundles):
                yield Job(bundle.removeprefix("sha256:"), "bundle", None, None)

        checked = ordered_map(
            self.check, jobs(), to_worker=to_worker, threads=self.n_threads, workers=self.shared
        )
        for (job, outcome), in_worker in checked:
            self._take(job, outcome, in_worker)
        if not self.min_seq:  # no orphan scan in an incremental run (said in the report)
            small = (
                {b.removeprefix("sha256:") for b in state.bundles} | set(openings_at) | set(prefix_openings)
            )
            self._orphans(state, small)
        report.findings.extend(self.out.findings)
        return self.total

    def _prehashed(self, job: Job) -> bool:
        """Take the outcome of an original re-hashed before the log pass, if it was (see ``found``)."""
        if job.kind != "item" or not self.found:
            return False
        found = self.found.pop(job.hex, None)
        if found is None:
            return False
        self._take(job, (Digest(job.hex, found.size), found.mode, []), True)
        return True

    def _submit(self) -> None:
        batch, self.batch = self.batch, []
        try:
            self.pending.append((self.shared.submit_batch(batch), batch))
            return
        except REFUSED:  # no workers left (one died): check the batch here
            self.shared.lost()
        for job in batch:
            self._take(*self.check(job, False), False)

    def _collect(self, future: Future[list[tuple[Job, Any]]], batch: list[Job]) -> None:
        try:
            done = [(result, True) for result in future.result()]
        except LOST:  # a worker died (OOM killer, a signal): check this batch here
            self.shared.lost()
            done = [(self.check(job, False), False) for job in batch]
        for (job, outcome), in_worker in done:
            self._take(job, outcome, in_worker)

    def _take(self, job: Job, outcome: Any, in_worker: bool) -> None:
        """The findings of one checked object."""
        hex_digest, kind, size, item, meta, _uses = job
        report = self.out
        self.expected += 1
        what = {
            "item": "original",
            "metadata": "metadata object",
            "openings": "openings object",
            "bundle": "bag tag files object",
        }[kind]
        subject = f"{what} {hex_digest[:12]}… of item {item}" if item else f"{what} {hex_digest[:12]}…"
        if isinstance(outcome, str):
            report.fail(
                f"object.{'missing' if outcome == 'missing' else 'unreadable'}",
                subject,
                f"{what} is {outcome}",
                item=item,
            )
            return
        digest, mode, problems = outcome
        if in_worker and self.on_progress is not None:
            self.on_progress(digest.size)
        self.total += digest.size
        for code, where, message, seq, about in problems:
            report.fail(code, where, message, seq=seq, item=about)
        if digest.sha256 != hex_digest:
            extra = (
                f" (size {digest.size}, recorded {size})" if size is not None and size != digest.size else ""
            )
            if kind == "item" and item is not None:
                extra += self._damage(meta, hex_digest)
            report.fail(
                "object.hash-mismatch",
                subject,
                f"{what} content does not match its hash{extra}",
                item=item,
            )
        elif size is not None and digest.size != size:
            report.fail("object.size-mismatch", subject, f"size {digest.size}, recorded {size}", item=item)
        if mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
            report.warn(
                "object.writable", subject, f"{what} is writable (expected read-only 0444)", item=item
            )

    def _damage(self, meta: str | None, hex_digest: str) -> str:
        """The damaged byte ranges of an original, from the chunk leaves its metadata object recorded at
        ingest (if any)."""
        from .hashing import describe_damage

        chunks = None
        if meta:
            with contextlib.suppress(EvidenceVaultError, OSError, ValueError, AttributeError):
                chunks = json.loads(
                    read_bytes(self.vault.objects.fspath(meta.removeprefix("sha256:")), SMALL)
                )
                chunks = chunks.get("chunks")
        return describe_damage(self.vault.objects.path(hex_digest), chunks)

    def _orphans(self, state: LogState, small: set[str]) -> None:
        """Stored objects that no event references."""
        store = self.vault.objects
        expected = self.expected
        missing = sum(1 for f in self.out.failures if f.code == "object.missing")
        stored = sum(1 for _ in store.list())
        if stored + missing == expected:
            return
        # Some stored object is referenced by no event: find which (only then, as it costs a look-up each).
        for hex_digest in store.list():
            if hex_digest not in small and not state.items.references(hex_digest):
                self.out.warn(
                    "object.orphan",
                    f"object {hex_digest[:12]}…",
                    "object not referenced by any log event (left by an interrupted add?)",
                )


_WRITABLE = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH


def _stat(vault: Vault, object_ref: str) -> os.stat_result | None:
    """The stored object's own status (a link's, not its target's); None if there is nothing there
    (or the reference is no object id)."""
    try:
        return os.lstat(vault.objects.fspath(object_ref.removeprefix("sha256:")))
    except (FileNotFoundError, NotADirectoryError):  # also: not an object id
        return None


def _size_check(vault: Vault, state: LogState, report: Report, min_seq: int) -> None:
    """Objects of items verified earlier: originals still there and of their recorded size, metadata,
    openings and bag objects still there; none of them writable."""

    def present(object_ref: str, what: str, subject: str, item: str | None = None) -> os.stat_result | None:
        st = _stat(vault, object_ref)
        if st is None:
            report.fail("object.missing", subject, f"{what} is missing", item=item)
        elif not stat.S_ISREG(st.st_mode):
            kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
            report.fail("object.unreadable", subject, f"{what} is unreadable: {kind}", item=item)
            return None
        elif st.st_mode & _WRITABLE:
            report.warn(
                "object.writable", subject, f"{what} is writable (expected read-only 0444)", item=item
            )
        return st

    for hex_obj in state.prefix_openings:
        present(hex_obj, "openings object", f"openings object {hex_obj[:12]}…")
    for bundle in sorted(state.prefix_bundles):
        hex_obj = bundle.removeprefix("sha256:")
        present(bundle, "bag tag files object", f"bag tag files object {hex_obj[:12]}…")
    for item, rec in state.items.records():
        if rec.seq >= min_seq:
            break
        if rec.metadata:
            meta = rec.metadata.removeprefix("sha256:")
            present(meta, "metadata object", f"metadata object {meta[:12]}… of item {item}", item)
        st = present(item, "original", f"original {item[7:19]}… of item {item}", item)
        if st is not None and st.st_size != rec.size:
            report.fail(
                "object.size-mismatch",
                f"original {item[7:19]}… of item {item}",
                f"size {st.st_size}, recorded {rec.size}",
                item=item,
            )


def _parse_object(raw: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _metadata_problems(item: str, committed: dict[str, str], raw: bytes) -> list[Problem]:
    """An item's metadata object: it names the item and opens every signed commitment of its ingest."""
    subject = f"metadata of item {item}"
    doc = _parse_object(raw)
    if doc is None:
        return [("metadata.unreadable", subject, "metadata object is not a JSON object", None, item)]
    out: list[Problem] = []
    if doc.get("item") != item:
        out.append(("metadata.wrong-item", subject, "metadata object names another item", None, item))
    fields: dict[str, Any] = doc["fields"] if isinstance(doc.get("fields"), dict) else {}
    for name, commitment in committed.items():
        opening = fields.get(name)
        if opening is None:
            out.append(
                ("metadata.opening-missing", subject, f"no value for committed field {name!r}", None, item)
            )
        elif not commitments.opens(commitment, opening):
            out.append(
                (
                    "metadata.commitment-mismatch",
                    subject,
                    f"value of {name!r} does not match its signed commitment",
                    None,
                    item,
                )
            )
    return out


def _openings_problems(uses: list[tuple[dict[str, str], int]], raw: bytes) -> list[Problem]:
    """An openings object (notes, reasons, ...) opens the commitments of every event that names it."""
    doc = _parse_object(raw)
    out: list[Problem] = []
    for committed, seq in uses:
        where = line_subject(seq)
        if doc is None:
            out.append(("metadata.unreadable", where, "openings object is not a JSON object", seq, None))
            continue
        fields: dict[str, Any] = doc["fields"] if isinstance(doc.get("fields"), dict) else {}
        for name, commitment in committed.items():
            opening = fields.get(name)
            if opening is None or not commitments.opens(commitment, opening):
                out.append(
                    (
                        "metadata.commitment-mismatch",
                        where,
                        f"value of {name!r} does not match its signed commitment",
                        seq,
                        None,
                    )
                )
    return out
