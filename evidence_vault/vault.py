"""Vault workflows: create, find, ingest, list and look up. Nothing here prints or exits."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from . import commitments
from . import events as ev
from .append_guard import KeyChain, refusal, seen_problem, tail_problem
from .atomic import write_atomic
from .authority import Authority
from .canonical import canonical
from .custody_log import CustodyLog, Head, TornLineError
from .errors import (
    EvidenceVaultError,
    IngestError,
    IntegrityError,
    NotAuthorizedError,
    UsageError,
    VaultFormatError,
)
from .events import Event
from .hashing import LEAF_CHUNK, Digest, hash_file
from .index import Index, IndexedItem, items_of
from .keystore import KeyStore, TrustStore, utc_now
from .locate import VAULT_FILE as VAULT_FILE
from .locate import find_vault as find_vault
from .locking import exclusive_lock
from .merkle import root_from_leaves
from .metadata_fields import PRIVATE_FIELDS, PUBLIC_FIELDS
from .objects import FileObjectStore, ObjectStore
from .signing import Signer, key_file_name, sodium_verify

FORMAT = "evidence-vault"
FORMAT_VERSION = 1

#: What ``add`` records of the file itself, and of the user's options, as committed fields.
RECORDED_FIELDS = ("original_name", "original_path")
OPTION_FIELDS = ("source", "captured_by", "note")
#: Every field an ingest event can carry as a salted commitment (what an export can withhold).
COMMITTED_FIELDS = frozenset(RECORDED_FIELDS + OPTION_FIELDS) | PRIVATE_FIELDS

SignerSource = Callable[[], Signer]
#: The media kinds ``ls --type`` filters on (the start of an item's media type).
MEDIA_PREFIXES = ("image/", "video/", "audio/")


def since_bound(since: str) -> str:
    """The event time ``ls --since`` compares with: a date (``2026-01-31``, midnight UTC) or an ISO 8601
    time (UTC unless it names an offset), written as the log writes times so that they sort as text."""
    try:
        when = datetime.fromisoformat(since)
    except ValueError:
        raise UsageError(f"--since {since!r}: not a date (YYYY-MM-DD) or an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


SYMLINK_SKIPPED = "is a symbolic link (use --follow-symlinks)"


@dataclass(frozen=True)
class VaultConfig:
    vault_id: str
    name: str
    created: str
    hash_algorithms: tuple[str, ...] = ("sha256",)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.extra,
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "vault_id": self.vault_id,
            "name": self.name,
            "created": self.created,
            "hash_algorithms": list(self.hash_algorithms),
        }

    @classmethod
    def load(cls, path: Path) -> VaultConfig:
        try:
            d = json.loads(path.read_text("utf-8"))
        except OSError as exc:
            raise VaultFormatError(f"cannot read: {exc.strerror}", path=path) from None
        except ValueError as exc:
            raise VaultFormatError(f"not valid JSON: {exc}", path=path) from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise VaultFormatError("not an evidence-vault vault.json", path=path)
        if d.get("version") != FORMAT_VERSION:
            raise VaultFormatError(f"unsupported vault format version {d.get('version')!r}", path=path)
        try:
            known = {"format", "version", "vault_id", "name", "created", "hash_algorithms"}
            return cls(
                vault_id=str(uuid.UUID(d["vault_id"])),
                name=str(d["name"]),
                created=str(d["created"]),
                hash_algorithms=tuple(d.get("hash_algorithms", ["sha256"])),
                extra={k: v for k, v in d.items() if k not in known},
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise VaultFormatError(f"vault.json is incomplete: {exc}", path=path) from None


@dataclass(frozen=True)
class AddResult:
    """What happened to one input path."""

    path: str
    status: str  # added | duplicate | failed | skipped
    id: str | None = None
    size: int | None = None
    media_type: str | None = None
    seq: int | None = None
    message: str | None = None
    metadata_errors: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "status": self.status,
            "id": self.id,
            "size": self.size,
            "media_type": self.media_type,
            "seq": self.seq,
            "message": self.message,
            "metadata_errors": list(self.metadata_errors),
        }


@dataclass(frozen=True)
class AddOptions:
    recursive: bool = False
    follow_symlinks: bool = False
    source: str | None = None
    captured_by: str | None = None
    note: str | None = None
    tags: tuple[str, ...] = ()
    wait: bool = True
    derived_from: str | None = None


@dataclass
class _Prepared:
    path: str
    digest: Digest
    data: dict[str, Any]
    name: str
    metadata_errors: tuple[str, ...]
    restored: bool = False  # a stored copy of the wrong size was replaced by this file's content


@dataclass(frozen=True)
class _Stored:
    """A file whose content the object store already held: if the log has the item, there is nothing to do,
    so its metadata is not extracted (a re-run of ``add`` over the same card costs a read and a hash)."""

    path: str
    shown: str
    digest: Digest
    restored: bool = False
    recorded_as: str | None = None  # the path recorded as original_path, if not this file's own


def display_name(path: str | os.PathLike[str]) -> str:
    """A file name as valid Unicode text (undecodable bytes shown as \\xNN escapes)."""
    raw = os.fsencode(path)
    return raw.decode("utf-8", errors="backslashreplace")


class Ingested(NamedTuple):
    """An item the log records: the seq of its ``item.ingested`` line and its media type."""

    seq: int
    media_type: str | None


def _records_ingest(line: bytes, item_id: str, seq: int) -> bool:
    """Is ``line`` the ``item.ingested`` event of ``item_id`` at ``seq``? (Its signature is verify's job.)"""
    try:
        event = ev.parse_event(line)  # as the index reads lines
    except IntegrityError:
        return False
    return event.type == ev.ITEM_INGESTED and event.seq == seq and event.data.get("item") == item_id


RESTORED = "; its stored copy had the wrong size (damaged) and was restored from this file"


def _duplicate(shown: str, digest: Digest, media_type: str | None, restored: bool = False) -> AddResult:
    message = "already in the vault: nothing recorded" + (RESTORED if restored else "")
    return AddResult(shown, "duplicate", digest.id, digest.size, media_type, message=message)


def instead_of_revoked(auth: Authority, actor: str, store: KeyStore | None = None) -> str:
    """For a refusal of ``actor``'s signature: if the vault revoked ``actor``, a clause naming the key to
    use instead (the one identity on this machine the vault authorizes), or pointing to ``--key``;
    otherwise nothing."""
    grant = auth.keys.get(actor)
    if grant is None or grant.revoked_seq is None:
        return ""
    try:
        mine = [i.fingerprint for i in (store or KeyStore()).identities()]
    except EvidenceVaultError:  # an unreadable identity index: no key to name
        mine = []
    usable = [fp for fp in mine if (g := auth.keys.get(fp)) is not None and g.revoked_seq is None]
    if len(usable) == 1:
        return (
            f"; use the one key on this machine that this vault authorizes: "
            f"`evidence-vault --key {usable[0]} ...`"
        )
    return "; give a key this vault authorizes with `evidence-vault --key FINGERPRINT ...` (see `key list`)"


class Vault:
    """An open vault directory."""

    def __init__(self, root: Path, *, durable: bool = True) -> None:
        self.root = root
        self.config = VaultConfig.load(root / VAULT_FILE)
        self.objects: ObjectStore = FileObjectStore(root / "objects", durable=durable)
        self.log = CustodyLog(root / "log.jsonl", root / ".lock", guard=self.require_sound_tail)
        self._index: Index | None = None
        self._names: dict[str, str] = {}

    # -- creation ----------------------------------------------------------------------------------
    @classmethod
    def init(
        cls,
        path: Path,
        *,
        name: str | None,
        signer: Signer,
        signer_name: str,
        trust: TrustStore | None = None,
    ) -> Vault:
        """Create a vault whose genesis event names ``signer``, and pin that key on this machine."""
        if (path / VAULT_FILE).exists():
            raise UsageError("a vault already exists here", path=path)
        if path.exists() and any(path.iterdir()):
            raise UsageError("directory is not empty; give a new or empty directory", path=path)
        path.mkdir(parents=True, exist_ok=True)
        for sub in ("objects", "checkpoints", "keys", "cache"):
            (path / sub).mkdir(exist_ok=True)
        config = VaultConfig(vault_id=str(uuid.uuid4()), name=name or path.resolve().name, created=utc_now())
        (path / "log.jsonl").touch()
        write_atomic(path / VAULT_FILE, json.dumps(config.to_dict(), indent=2).encode() + b"\n")
        vault = cls(path)
        key = {"fingerprint": signer.fingerprint, "public_key": signer.public.openssh(), "name": signer_name}
        data = {
            "vault_id": config.vault_id,
            "name": config.name,
            "key": key,
            "hash_algorithms": list(config.hash_algorithms),
        }
        (event,) = vault.log.append(signer, lambda head: [(ev.VAULT_CREATED, data)])
        vault.write_public_key(signer.fingerprint, signer.public.openssh(signer_name))
        store = trust or TrustStore()
        store.pin(config.vault_id, signer.fingerprint, path.resolve())
        store.record_head(config.vault_id, event.seq, ev.line_hash(event.line()))
        return vault

    def public_key_path(self, fingerprint: str) -> Path:
        """``keys/<fingerprint>.pub``: for checks by hand."""
        return self.root / "keys" / key_file_name(fingerprint)

    def write_public_key(self, fingerprint: str, line: str) -> None:
        write_atomic(self.public_key_path(fingerprint), (line + "\n").encode())

    # -- index -------------------------------------------------------------------------------------
    @property
    def index(self) -> Index:
        """The listing cache, caught up with the log (a one-line error if it cannot be written)."""
        return self._refreshed_index(rebuild=False)

    def rebuild_index(self) -> Index:
        """The listing cache, read again from the whole log (``doctor --repair``: it is in the vault,
        so whoever can edit the log can edit it too)."""
        return self._refreshed_index(rebuild=True)

    def _refreshed_index(self, *, rebuild: bool) -> Index:
        path = self.root / "cache" / "index.sqlite"
        try:
            if self._index is None:
                self._index = Index(path, self.log, self._name_of)
            self._index.refresh(rebuild=rebuild)
        except sqlite3.Error as exc:
            raise VaultFormatError(
                f"cannot update the index cache ({exc}); it is derived from the log, so nothing recorded is "
                "affected: free disk space, or delete the file to have it rebuilt",
                path=path,
            ) from None
        return self._index

    def in_log(self, item_id: str, index: Index | None = None) -> Ingested | None:
        """Where the log records the item's ingest, and its media type; None if it does not.

        The index says where the ``item.ingested`` line is, and that line is read to confirm it: the index
        is in the vault, so whoever can edit the vault could make it claim content the log lacks, and
        ``add`` would then leave a new file out as "already in the vault". A cache that disagrees with
        the log is rebuilt from it. ``index``: the caller's, already caught up.
        """
        index = index or self.index
        record = index.ingest_record(item_id)
        if record is None:
            return None
        seq, offset, media_type = record
        if offset is not None and _records_ingest(self.log.line_at(offset), item_id, seq):
            return Ingested(seq, media_type)
        record = self.rebuild_index().ingest_record(item_id)
        return None if record is None else Ingested(record[0], record[2])

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None

    def _name_of(self, metadata_id: str) -> str | None:
        if metadata_id in self._names:
            return self._names[metadata_id]
        try:
            doc = self.metadata_object(metadata_id)
        except EvidenceVaultError:
            return None
        value = doc.get("fields", {}).get("original_name", {}).get("value")
        return value if isinstance(value, str) else None

    def metadata_object(self, metadata_id: str) -> dict[str, Any]:
        hex_digest = metadata_id.removeprefix("sha256:")
        try:
            with self.objects.open(hex_digest) as fh:
                doc = json.loads(fh.read())
        except FileNotFoundError:
            raise IntegrityError("metadata object is missing", path=metadata_id) from None
        except ValueError:
            raise IntegrityError("metadata object is not JSON", path=metadata_id) from None
        if not isinstance(doc, dict):
            raise IntegrityError("metadata object is not a JSON object", path=metadata_id)
        return doc

    def authority(self) -> Authority:
        return self.index.authority()

    # -- ingest ------------------------------------------------------------------------------------
    def add(
        self,
        paths: Sequence[str | os.PathLike[str]],
        signer: SignerSource,
        options: AddOptions = AddOptions(),
        *,
        on_progress: Callable[[int], None] | None = None,
        on_result: Callable[[AddResult], None] | None = None,
        on_wait: Callable[[], None] | None = None,
        batch_seconds: float = 1.0,
        workers: int | None = None,
        ready_first: bool = False,
    ) -> list[AddResult]:
        """Ingest files: copy and hash in one pass, extract metadata, append one signed event each.

        Files already in the vault record nothing. Unreadable files are reported and skipped while
        the others are still ingested. Events are appended in groups (at most ``batch_seconds``
        apart) under the writer lock. Objects are written without per-file fsync; before a group's log
        append, ``objects.sync()`` makes all of them durable at once (see docs/formats.md, "Durability"), then
        the append fsyncs the log.

        ``ready_first``: catch the index up and load libsodium (read-only work the append needs)
        before waiting for ``signer``, when it is unlocking in another thread meanwhile; left False,
        a passphrase prompt comes before that work.
        """
        from .ingest_pool import prepare_all  # multiprocessing: imported when files are added
        from .metadata import extract_metadata  # noqa: F401 (loaded now: the key may unlock meanwhile)

        results: list[AddResult] = []
        self.settled(self.log.require_clean_end, wait=options.wait, on_wait=on_wait)
        if ready_first:
            self.index.authority()
            sodium_verify()  # the tail check under the lock verifies a signature
        actor = signer()  # unlock before any file is read, so a wrong passphrase costs nothing
        # What would refuse the append is known now: refuse before any file is stored (no orphans).
        self.require_appendable(actor, wait=options.wait, on_wait=on_wait)

        def emit(res: AddResult) -> None:
            results.append(res)
            if on_result is not None:
                on_result(res)

        candidates = list(self._expand(paths, options, emit))
        pending: list[_Prepared | AddResult] = []
        last_flush = time.monotonic()
        outcomes = prepare_all(
            candidates,
            lambda path, progress: self._prepare(path, options, progress),
            self.objects,
            size_of=lambda o: 0 if isinstance(o, AddResult) else o.digest.size,
            on_progress=on_progress,
            threads=workers or min(4, os.cpu_count() or 1),
        )
        known: Index | None = None  # caught up once, at the first content the store already held
        for outcome in outcomes:
            if isinstance(outcome, _Stored):
                if known is None:
                    known = self.index
                outcome = self._settle(outcome, options, known)
            if isinstance(outcome, AddResult) and outcome.status != "duplicate":
                emit(outcome)
                continue
            pending.append(outcome)  # duplicates too: reported in order among the files added
            if len(pending) >= 512 or time.monotonic() - last_flush > batch_seconds:
                for res in self._commit_in_order(pending, actor, options, on_wait):
                    emit(res)
                pending = []
                last_flush = time.monotonic()
        if pending:
            for res in self._commit_in_order(pending, actor, options, on_wait):
                emit(res)
        return results

    def _expand(
        self, paths: Sequence[str | os.PathLike[str]], options: AddOptions, emit: Callable[[AddResult], None]
    ) -> Iterator[str]:
        vault_root = self.root.resolve()
        for given in paths:
            p = os.fspath(given)
            shown = display_name(p)
            try:
                st = os.lstat(p)
            except OSError as exc:
                emit(AddResult(shown, "failed", message=f"cannot read: {exc.strerror}"))
                continue
            if stat.S_ISLNK(st.st_mode) and not options.follow_symlinks:
                emit(AddResult(shown, "skipped", message=SYMLINK_SKIPPED))
                continue
            if os.path.isdir(p):
                if not options.recursive:
                    emit(AddResult(shown, "skipped", message="is a directory (use --recursive)"))
                    continue
                yield from self._walk(p, options, emit, vault_root)
            else:
                yield p

    def _walk(
        self, top: str, options: AddOptions, emit: Callable[[AddResult], None], vault_root: Path
    ) -> Iterator[str]:
        def onerror(exc: OSError) -> None:
            emit(
                AddResult(display_name(exc.filename or top), "failed", message=f"cannot read: {exc.strerror}")
            )

        def skipped_link(full: str) -> bool:
            """A symbolic link met while walking: reported and left alone unless --follow-symlinks."""
            if options.follow_symlinks or not os.path.islink(full):
                return False
            emit(AddResult(display_name(full), "skipped", message=SYMLINK_SKIPPED))
            return True

        for dirpath, dirnames, filenames in os.walk(
            top, onerror=onerror, followlinks=options.follow_symlinks
        ):
            if Path(dirpath).resolve() == vault_root:
                dirnames[:] = []
                continue
            dirnames.sort()
            kept = []
            for d in dirnames:
                full = os.path.join(dirpath, d)
                if Path(full).resolve() == vault_root:
                    continue
                if skipped_link(full):
                    continue
                kept.append(d)
            dirnames[:] = kept
            for f in sorted(filenames):
                full = os.path.join(dirpath, f)
                if skipped_link(full):
                    continue
                yield full

    def _prepare(
        self,
        path: str,
        options: AddOptions,
        on_progress: Callable[[int], None] | None,
        *,
        replace: bool = False,
        recorded_as: str | None = None,
    ) -> _Prepared | _Stored | AddResult:
        """Copy+hash one file into the object store and build its event data (no log write); content the
        store already held comes back as :class:`_Stored`, for :meth:`add` to look up in the log.

        ``recorded_as``: the path to record and show for the file, when ``path`` is only where it was
        unpacked (a file of an imported zip is recorded as ``/path/case.zip/case/data/IMG.jpg``)."""
        shown = display_name(recorded_as if recorded_as is not None else path)
        try:
            # Sockets, FIFOs and devices are skipped before they are opened: a socket cannot be opened
            # (ENXIO), and opening a device can act on it (a tape rewinds).
            st = os.stat(path) if options.follow_symlinks else os.lstat(path)
            if not stat.S_ISREG(st.st_mode):
                return AddResult(shown, "skipped", message="not a regular file")
            # O_NONBLOCK: should it have become a FIFO since, opening it must not wait for a writer.
            flags = os.O_RDONLY | os.O_NONBLOCK | (0 if options.follow_symlinks else os.O_NOFOLLOW)
            fd = os.open(path, flags)
        except OSError as exc:
            return AddResult(shown, "failed", message=f"cannot read: {exc.strerror}")
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return AddResult(shown, "skipped", message="not a regular file")
            restored: list[bool] = []
            try:
                # Durability is grouped: _commit syncs every object of the batch before its log append.
                digest, new = self.objects.put_file(
                    fd,
                    st.st_size,
                    shown,
                    on_progress,
                    sync=False,
                    on_replace=lambda: restored.append(True),
                    replace=replace,
                )
            except IngestError as exc:
                return AddResult(shown, "failed", message=exc.message)
            except OSError as exc:
                return AddResult(shown, "failed", message=f"cannot read: {exc.strerror}")
        finally:
            os.close(fd)
        stored = _Stored(path, shown, digest, bool(restored), recorded_as)
        return self._describe(stored, options) if new else stored

    def _settle(self, stored: _Stored, options: AddOptions, index: Index) -> _Prepared | AddResult:
        """Content the object store already held: a duplicate if the log records it (not re-hashed: that
        is ``verify``'s job), else an orphan of an interrupted add, whose stored copy no event names yet.
        That copy is re-hashed before an event names it, and replaced by this file's if it differs (a
        torn or tampered leftover of the right size)."""
        item = self.in_log(stored.digest.id, index)
        if item is not None:  # in the log, which only grows: what _commit would find under the lock
            return _duplicate(stored.shown, stored.digest, item.media_type, stored.restored)
        hex_digest = stored.digest.sha256
        try:
            intact = self.objects.verify(hex_digest) == stored.digest
        except OSError:
            intact = False
        if intact:
            return self._describe(stored, options)
        # No event names it: replaced atomically (the name never missing) by a fresh copy of the file.
        fresh = self._prepare(stored.path, options, None, replace=True, recorded_as=stored.recorded_as)
        if isinstance(fresh, _Stored):  # not with replace=True; for the type checker
            return AddResult(stored.shown, "failed", message="its stored copy is damaged")
        return fresh

    def _describe(self, stored: _Stored, options: AddOptions) -> _Prepared | AddResult:
        """Extract the metadata of a stored original and build its event data."""
        from .metadata import extract_metadata

        path, shown, digest = stored.path, stored.shown, stored.digest
        try:
            meta = extract_metadata(self.objects.path(digest.sha256), os.path.basename(path))
        except OSError as exc:
            return AddResult(shown, "failed", message=f"cannot read the stored copy: {exc.strerror}")
        normalized = dict(meta.normalized)
        media_type = str(normalized.pop("media_type", "application/octet-stream"))
        public = {k: v for k, v in normalized.items() if k in PUBLIC_FIELDS}
        private: dict[str, Any] = {k: v for k, v in normalized.items() if k not in PUBLIC_FIELDS}
        name = display_name(os.path.basename(path))
        private["original_name"] = name
        private["original_path"] = display_name(stored.recorded_as or os.path.abspath(path))
        for key in OPTION_FIELDS:
            value = getattr(options, key)
            if value:
                private[key] = value
        commits, openings = commitments.make(private)
        doc = {
            "v": 1,
            "type": "metadata",
            "item": digest.id,
            "salt": os.urandom(16).hex(),
            "fields": openings,
            "raw": meta.raw,
            "extractors": list(meta.extractors),
            "errors": list(meta.errors),
        }
        if digest.leaves is not None:
            doc["chunks"] = {
                "chunk_size": LEAF_CHUNK,
                "root": root_from_leaves(digest.leaves).hex(),
                "leaves": [leaf.hex() for leaf in digest.leaves],
            }
        try:
            meta_digest, _ = self.objects.put_bytes(canonical(doc), sync=False)
        except OSError as exc:
            return AddResult(shown, "failed", message=f"cannot write metadata object: {exc.strerror}")
        data: dict[str, Any] = {
            "item": digest.id,
            "size": digest.size,
            "media_type": media_type,
            "metadata": meta_digest.id,
            "public": public,
            "committed": commits,
            "tags": sorted(set(options.tags)),
            "extraction_errors": list(meta.errors),
        }
        if options.derived_from:
            data["derived_from"] = options.derived_from
        return _Prepared(shown, digest, data, name, tuple(meta.errors), stored.restored)

    def _commit_in_order(
        self,
        pending: Sequence[_Prepared | AddResult],
        signer: Signer,
        options: AddOptions,
        on_wait: Callable[[], None] | None,
    ) -> list[AddResult]:
        """Commit the prepared files of ``pending`` (if any); results in the order of ``pending``."""
        prepared = [p for p in pending if isinstance(p, _Prepared)]
        done = iter(self._commit(prepared, signer, options, on_wait) if prepared else ())
        return [next(done) if isinstance(p, _Prepared) else p for p in pending]

    def _commit(
        self,
        batch: Sequence[_Prepared],
        signer: Signer,
        options: AddOptions,
        on_wait: Callable[[], None] | None,
    ) -> list[AddResult]:
        """Append the ingest events of a batch, skipping content the log already holds."""
        dup: dict[int, bool] = {}
        built: list[int] = []  # the log's size when build returned events to append (they may be on disk)
        for prep in batch:  # the index names items from this, without re-reading their metadata objects
            self._names[str(prep.data["metadata"])] = prep.name

        def build(head: Head | None) -> list[tuple[str, dict[str, Any]]]:
            self.require_authorized(signer, head)
            index = self.index
            if options.derived_from and self.in_log(options.derived_from, index) is None:
                raise NotAuthorizedError(
                    f"original {options.derived_from} is not in the vault: nothing recorded"
                )
            seen: set[str] = set()
            out = []
            for i, prep in enumerate(batch):
                item_id = prep.data["item"]
                dup[i] = item_id in seen or self.in_log(item_id, index) is not None
                seen.add(item_id)
                if not dup[i]:
                    out.append((ev.ITEM_INGESTED, prep.data))
            if out:
                built.append(head.size if head else 0)
            return out

        try:
            self.objects.sync()  # every object of the batch durable before the events that reference them
            appended = iter(self.log.append(signer, build, wait=options.wait, on_wait=on_wait))
        except BaseException:
            # The metadata objects of this batch are unique to it (random salts): remove those no line
            # names. Lines may have been appended before the error (Ctrl-C after the write): keep theirs.
            kept = self._named_after(built[0], batch) if built else set()
            for prep in batch:
                if prep.data["metadata"] not in kept:
                    self.objects.discard(str(prep.data["metadata"]).removeprefix("sha256:"))
            raise
        results = []
        last: Event | None = None
        for i, prep in enumerate(batch):
            media_type = str(prep.data["media_type"])
            if dup[i]:
                # The metadata object is unique to this attempt (random salts): nothing else uses it.
                self.objects.discard(str(prep.data["metadata"]).removeprefix("sha256:"))
                results.append(_duplicate(prep.path, prep.digest, media_type, prep.restored))
                continue
            last = next(appended)
            results.append(
                AddResult(
                    prep.path,
                    "added",
                    prep.digest.id,
                    prep.digest.size,
                    media_type,
                    seq=last.seq,
                    metadata_errors=prep.metadata_errors,
                )
            )
        if last is not None:
            self._record_head(last)
        return results

    def _named_after(self, start: int, batch: Sequence[_Prepared]) -> set[str]:
        """The metadata ids of ``batch`` that log lines from byte ``start`` name (complete or torn: a torn
        one is set aside by ``doctor``, which keeps a copy; its object is then an orphan, not a loss)."""
        wanted = {str(prep.data["metadata"]) for prep in batch}
        named: set[str] = set()
        try:
            for raw in self.log.iter_raw(start):
                named.update(m for m in wanted if m.encode() in raw.data)
        except (OSError, EvidenceVaultError):
            return wanted  # cannot tell: keep them all (an orphan is a warning, a lost object a failure)
        return named

    def require_sound_tail(self, head: Head) -> None:
        """Refuse (:class:`~evidence_vault.append_guard.UnsoundTailError`) to chain a signed event onto
        a last line no authorized key wrote there, or onto a log older than this machine saw."""
        pin = TrustStore().get(self.config.vault_id) or {}
        keys = KeyChain(self.log.line_at, pin)
        problem = seen_problem(head, pin.get("head")) or keys.genesis_problem()
        if problem:
            raise refusal(head, problem, self.log.path, repairable=False)
        index = self.index  # caught up once, for both what it says of keys
        problem = tail_problem(head, index.authority(), keys, index.key_lines())
        if problem:
            raise refusal(head, problem, self.log.path, repairable=True)

    def require_appendable(
        self,
        signer: Signer,
        etype: str = ev.ITEM_INGESTED,
        *,
        wait: bool = True,
        on_wait: Callable[[], None] | None = None,
    ) -> None:
        """Raise now what appending an ``etype`` event signed by ``signer`` would raise (a torn last line,
        one no authorized key wrote there, a key not allowed to sign), before work that stores objects.
        The append checks it all again under the writer lock."""

        def check() -> None:
            head, torn = self.log.tail_state()
            if torn:
                raise TornLineError(self.log.path)
            if head is not None:
                self.require_sound_tail(head)
            self.require_authorized(signer, head, etype)

        self.settled(check, wait=wait, on_wait=on_wait)

    def settled(
        self, check: Callable[[], None], *, wait: bool = True, on_wait: Callable[[], None] | None = None
    ) -> None:
        """Run an early refusal ``check`` without the writer lock; believe a refusal only if ``check``
        refuses again under the lock. Unlocked, another writer's append may be half seen: a torn last
        line that is still being written, or a head older than the one that writer has just recorded
        for this machine. Refusals are rare, so the lock is taken only then."""
        try:
            check()
        except EvidenceVaultError:
            with exclusive_lock(self.log.lock_path, wait=wait, on_wait=on_wait):
                check()

    def require_authorized(self, signer: Signer, head: Head | None, etype: str = ev.ITEM_INGESTED) -> None:
        """Refuse (``NotAuthorizedError``) unless ``signer`` may sign ``etype`` as the next event."""
        probe = Event(
            seq=(head.seq + 1) if head else 0, prev=None, time="", type=etype, actor=signer.fingerprint
        )
        auth = self.index.authority()
        try:
            auth.check(probe)
        except NotAuthorizedError as exc:
            raise self._refused(exc, signer.fingerprint, auth) from None

    def append(
        self,
        signer: Signer,
        entries: Sequence[tuple[str, dict[str, Any]]],
        *,
        wait: bool = True,
        on_wait: Callable[[], None] | None = None,
        build: Callable[[Head | None], Sequence[tuple[str, dict[str, Any]]]] | None = None,
    ) -> list[Event]:
        """Append events after checking that ``signer`` may sign each of them.

        ``build``, if given, replaces ``entries``: it runs under the writer lock with the current head
        and must do its own authorization check (see :meth:`require_authorized`).
        """

        def check_all(head: Head | None) -> Sequence[tuple[str, dict[str, Any]]]:
            self.check_events(signer, head, entries)
            return entries

        out = self.log.append(signer, build or check_all, wait=wait, on_wait=on_wait)
        if out:
            self._record_head(out[-1])
        return out

    def check_events(
        self, signer: Signer, head: Head | None, entries: Sequence[tuple[str, dict[str, Any]]]
    ) -> None:
        """Refuse (``NotAuthorizedError``) unless every entry may be signed by ``signer`` in order."""
        seq = head.seq + 1 if head else 0
        auth = self.index.authority()
        mentioned = [i for _, data in entries for i in items_of(Event(0, None, "", "", "", data))]
        custody = self.index.custody(mentioned)
        for etype, data in entries:
            probe = Event(seq=seq, prev=None, time="", type=etype, actor=signer.fingerprint, data=data)
            try:
                auth.check(probe)
                custody.check(probe, auth)
            except NotAuthorizedError as exc:
                raise self._refused(exc, signer.fingerprint, auth) from None
            auth.apply(probe)
            custody.apply(probe)
            seq += 1

    def _refused(self, exc: NotAuthorizedError, actor: str, auth: Authority) -> NotAuthorizedError:
        """The one-line error of a refused append; if the acting key was revoked, it says which key to
        use instead (:func:`instead_of_revoked`)."""
        return NotAuthorizedError(
            f"{exc.message}: nothing recorded{instead_of_revoked(auth, actor)}", path=self.root
        )

    def put_openings(self, fields: dict[str, Any]) -> tuple[dict[str, str], str | None]:
        """Commit to free-text fields; store their openings as an object. Returns (commitments, object id)."""
        fields = {k: v for k, v in fields.items() if v not in (None, "")}
        if not fields:
            return {}, None
        committed, openings = commitments.make(fields)
        doc = {"v": 1, "type": "openings", "salt": os.urandom(16).hex(), "fields": openings}
        digest, _ = self.objects.put_bytes(canonical(doc))
        return committed, digest.id

    def _record_head(self, last: Event) -> None:
        TrustStore().record_head(self.config.vault_id, last.seq, ev.line_hash(last.line()))

    # -- reading -----------------------------------------------------------------------------------
    def items(
        self,
        *,
        tag: str | None = None,
        custodian: str | None = None,
        since: str | None = None,
        media_prefix: str | None = None,
    ) -> list[IndexedItem]:
        if since is not None:
            since = since_bound(since)
        if media_prefix is not None and media_prefix not in MEDIA_PREFIXES:
            kinds = " | ".join(p.rstrip("/") for p in MEDIA_PREFIXES)
            raise UsageError(f"--type {media_prefix.rstrip('/')!r}: use one of {kinds}")
        return list(self.index.items(tag=tag, custodian=custodian, since=since, media_prefix=media_prefix))

    def resolve(self, ref: str) -> IndexedItem:
        """An item from an id prefix (>= 8 hex digits, ``sha256:`` optional) or a path to a file."""
        text = ref.removeprefix("sha256:").lower()
        if len(text) >= 8 and all(c in "0123456789abcdef" for c in text) and not os.path.exists(ref):
            matches = self.index.match_prefix(text)
            if not matches:
                raise UsageError(f"no item with id {ref} in this vault")
            if len(matches) > 1:
                raise UsageError(f"id prefix {ref} is ambiguous: give more digits")
            item = self.index.item(matches[0])
            assert item is not None
            return item
        if os.path.isfile(ref):
            try:
                digest = hash_file(ref)
            except OSError as exc:
                raise UsageError(f"cannot read: {exc.strerror}", path=ref) from None
            item = self.index.item(digest.id)
            if item is None:
                raise UsageError(f"not in this vault (sha256 {digest.sha256})", path=ref)
            return item
        raise UsageError(f"{ref!r} is neither an item id (8+ hex digits) nor a readable file")

    def events_for(self, item_id: str, *, limit: int | None = None) -> list[Event]:
        """The item's events in log order (with ``limit``: the first and last ``limit // 2``)."""
        return list(self.iter_events_for(item_id, limit=limit))

    def iter_events_for(self, item_id: str, *, limit: int | None = None) -> Iterator[Event]:
        """:meth:`events_for`, one event at a time (an item can have a hundred thousand events).

        Read through the index's byte offsets and parsed for display only: ``verify`` checks them.
        """
        offsets = self.index.event_offsets(item_id)
        if limit is not None and len(offsets) > limit:
            offsets = offsets[: limit // 2] + offsets[-(limit - limit // 2) :]
        with open(self.log.path, "rb") as fh:
            for offset in offsets:
                fh.seek(offset)
                try:
                    event = Event.from_dict(json.loads(fh.readline()))
                except (ValueError, EvidenceVaultError):  # not where a line starts (or a damaged line)
                    raise self.index.damaged(f"no log event at byte {offset}") from None
                yield event

    def all_events(self) -> Iterator[Event]:
        return self.log.events()

    def describe(self, item: IndexedItem, *, max_events: int = 1000) -> dict[str, Any]:
        """Everything known about an item, for ``show`` (at most ``max_events`` of its events: the first
        and the most recent; ``log --item`` prints them all)."""
        total = self.index.event_count(item.id)
        events = self.events_for(item.id, limit=max_events)
        ingest = next(
            (e for e in events if e.type == ev.ITEM_INGESTED and e.data.get("item") == item.id), None
        )
        metadata: dict[str, Any] = {"media_type": item.media_type}
        errors: list[str] = []
        fields_withheld: list[str] = []
        if ingest is not None:
            metadata.update(ingest.data.get("public", {}))
            errors = list(ingest.data.get("extraction_errors", []))
            try:
                doc = self.metadata_object(item.metadata or "")
                fields = doc.get("fields")  # the object is in the vault: any JSON until `verify` checks it
                openings = fields if isinstance(fields, dict) else {}
                for key, commitment in ingest.data.get("committed", {}).items():
                    opening = openings.get(key)
                    if isinstance(opening, dict) and commitments.opens(commitment, opening):
                        metadata[key] = opening["value"]
                    else:
                        fields_withheld.append(key)
            except IntegrityError:
                fields_withheld.extend(ingest.data.get("committed", {}).keys())
        return {
            **item.to_dict(),
            "object": str(self.objects.path(item.id.removeprefix("sha256:"))),
            "metadata": metadata,
            "withheld_fields": sorted(fields_withheld),
            "extraction_errors": errors,
            "derived_copies": self.index.derived_copies(item.id),
            "events_total": total,
            "events": [e.to_dict() for e in events],
        }
