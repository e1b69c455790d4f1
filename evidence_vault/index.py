"""A derived, rebuildable cache of the log (SQLite, stdlib) for fast listing, look-up and dedup.

Never trusted by verification. Kept in ``<vault>/cache/index.sqlite``; refreshed by reading only the
log lines after the last one it saw (checked by the ``prev`` hash), rebuilt from scratch otherwise.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import events as ev
from .authority import Authority, key_of
from .custody import Custody, PendingTransfer
from .custody_log import CustodyLog
from .errors import EvidenceVaultError, IntegrityError
from .events import Event, line_hash, parse_event
from .sqlvalues import int64

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
  id TEXT PRIMARY KEY, seq INTEGER NOT NULL, time TEXT NOT NULL, actor TEXT NOT NULL,
  size INTEGER NOT NULL, media_type TEXT, metadata TEXT, name TEXT, derived_from TEXT, holder TEXT);
CREATE TABLE IF NOT EXISTS transfers (transfer_id TEXT NOT NULL, item TEXT NOT NULL, sender TEXT NOT NULL,
  to_fp TEXT NOT NULL, seq INTEGER NOT NULL, accepted_seq INTEGER, PRIMARY KEY (transfer_id, item));
CREATE INDEX IF NOT EXISTS items_by_holder ON items (holder);
CREATE TABLE IF NOT EXISTS item_events (item TEXT NOT NULL, seq INTEGER NOT NULL, offset INTEGER NOT NULL,
  PRIMARY KEY (item, seq));
CREATE TABLE IF NOT EXISTS tags (item TEXT NOT NULL, tag TEXT NOT NULL, PRIMARY KEY (item, tag));
CREATE INDEX IF NOT EXISTS tags_by_tag ON tags (tag);
"""
_VERSION = "3"  # 3: key_lines

NameLookup = Callable[[str], str | None]
"""Given a metadata object id, return the item's original name (or None)."""


@dataclass(frozen=True)
class IndexedItem:
    id: str
    seq: int
    time: str
    actor: str
    size: int
    media_type: str | None
    metadata: str | None
    name: str | None
    derived_from: str | None
    holder: str | None
    tags: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "seq": self.seq,
            "added": self.time,
            "actor": self.actor,
            "size": self.size,
            "media_type": self.media_type,
            "metadata_object": self.metadata,
            "name": self.name,
            "derived_from": self.derived_from,
            "custodian": self.holder,
            "tags": list(self.tags),
        }


class UnindexableLineError(IntegrityError):
    """A log line the index cannot take (damaged, or a hand-made key event the rules refuse)."""

    def __init__(self, message: str, *, path: str | Path, offset: int, why: str) -> None:
        super().__init__(message, path=path)
        self.offset = offset  # where the line starts in log.jsonl
        self.why = why  # what is wrong with it


def items_of(event: Event) -> list[str]:
    """Item ids an event is about."""
    data = event.data
    out: list[str] = []
    for key in ("item", "original", "derived"):
        v = data.get(key)
        if isinstance(v, str):
            out.append(v)
    many = data.get("items")
    if isinstance(many, list):
        out.extend(x for x in many if isinstance(x, str))
    return list(dict.fromkeys(out))


# Catching up with more of the log than this folds the WAL into the database at once (``_fold_wal``).
_BIG_CATCH_UP = 8 << 20
_BUSY_TIMEOUT_S = 60  # how long a command waits for another one's write lock on the cache
_ITEM_EVENT = "INSERT OR IGNORE INTO item_events (item, seq, offset) VALUES (?, ?, ?)"


class Index:
    """The SQLite cache of one vault."""

    def __init__(self, path: Path, log: CustodyLog, names: NameLookup) -> None:
        self.path = path
        self.log = log
        self.names = names
        self._event_rows: list[tuple[str, int, int]] = []  # item_events rows not yet written
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()
        self.db.executescript(_SCHEMA)

    def _migrate(self) -> None:
        """A cache of another layout is simply dropped and rebuilt from the log."""
        has_meta = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        if has_meta and self._meta("version") == _VERSION:
            return
        for (name,) in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
            self.db.execute(f"DROP TABLE IF EXISTS {name}")

    def close(self) -> None:
        self.db.close()

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT v FROM meta WHERE k=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (key, value))

    def authority(self) -> Authority:
        raw = self._meta("authority")
        return Authority.from_dict(json.loads(raw)) if raw else Authority()

    def key_lines(self) -> dict[str, int]:
        """Where each key came in: the byte offset of its ``vault.created`` or ``key.added`` line
        (what is not such an offset is left out: the cache is in the vault, as editable as the log)."""
        try:
            found = json.loads(self._meta("key_lines") or "{}")
        except ValueError:
            return {}
        if not isinstance(found, dict):
            return {}
        return {k: v for k, v in found.items() if type(v) is int and v >= 0}

    def refresh(self, *, rebuild: bool = False) -> None:
        """Catch up with the log (only the new lines), or rebuild if the log changed under us (or if
        ``rebuild``: the cache is in the vault, so whoever can edit the log can edit it too)."""
        size = os.stat(self.log.path).st_size
        self.db.execute("BEGIN IMMEDIATE")
        try:
            mark = self._meta("offset") or "0"
            offset = int(mark) if mark.isascii() and mark.isdigit() and len(mark) < 20 else -1
            head = self._meta("head")
            if rebuild or self._meta("version") != _VERSION or not 0 <= offset <= size:
                self._clear()
                offset, head = 0, None
            if size != offset or rebuild:
                self._consume(offset, head)
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:  # SQLite already rolled back on SQLITE_FULL / IOERR
                self.db.execute("ROLLBACK")
            raise
        if size - offset > _BIG_CATCH_UP:
            self._fold_wal()

    def _fold_wal(self) -> None:
        """Copy a big catch-up (the first command on a vault without a cache writes as much as the
        log's size) from the write-ahead log into the database file now, and empty the WAL. Else it
        stays beside the database, as large again, and the next command pays for it: reading it at
        open, copying it at close (0.2 s and 0.8 s after indexing a million events). Readers of other
        processes are not waited for: the WAL then stays, as SQLite would leave it anyway."""
        self.db.execute("PRAGMA busy_timeout = 0")
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error:
            pass  # a full disk, say: what was written is committed, and SQLite folds the WAL later
        finally:
            self.db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_S * 1000}")

    def _refused(self, offset: int, what: str, reason: str | None = None) -> UnindexableLineError:
        """A hand-made line the index cannot take: one line naming the log and where."""
        detail = f" ({reason})" if reason else ""
        return UnindexableLineError(
            f"the line at byte {offset} {what}{detail}; run `evidence-vault verify` for details",
            path=self.log.path,
            offset=offset,
            why=reason or what,
        )

    def _flush_events(self) -> None:
        rows, self._event_rows = self._event_rows, []
        self.db.executemany(_ITEM_EVENT, rows)

    def _clear(self) -> None:
        self._event_rows = []
        for table in ("meta", "items", "item_events", "tags", "transfers"):
            self.db.execute(f"DELETE FROM {table}")
        self._set("version", _VERSION)

    def _consume(self, offset: int, head: str | None) -> None:
        auth = self.authority()
        key_lines = self.key_lines()
        first = True
        for raw in self.log.iter_raw(offset):
            if not raw.complete:
                break
            try:
                event = parse_event(raw.data)
            except IntegrityError:
                if first and offset:
                    self._clear()  # the log changed below our mark: start over (and report it there)
                    self._consume(0, None)
                    return
                raise self._refused(raw.offset, "is damaged") from None
            if first and event.prev != head:
                # The log was rewritten below our mark: start over from the beginning.
                self._clear()
                self._consume(0, None)
                return
            first = False
            if not int64(event.seq):
                raise self._refused(raw.offset, "has an impossible seq")
            try:
                self._apply(event, raw.offset, auth)
                if event.type in (ev.VAULT_CREATED, ev.KEY_ADDED):
                    key_lines[key_of(event.data).fingerprint] = raw.offset
            except (sqlite3.InterfaceError, sqlite3.ProgrammingError, UnicodeEncodeError, OverflowError):
                # What only a hand-made line holds (a lone surrogate, a value SQLite cannot bind).
                raise self._refused(raw.offset, "cannot be indexed") from None
            except EvidenceVaultError as exc:  # a key event the authorization rules refuse
                raise self._refused(raw.offset, "is a key event that cannot be taken", exc.message) from None
            head = line_hash(raw.data)
            offset = raw.offset + len(raw.data) + 1
            if len(self._event_rows) >= 10_000:
                self._flush_events()
        self._flush_events()
        self._set("offset", str(offset))
        if head is not None:
            self._set("head", head)
        self._set("authority", json.dumps(auth.to_dict()))
        self._set("key_lines", json.dumps(key_lines))

    def _apply(self, event: Event, offset: int, auth: Authority) -> None:
        if event.type in (ev.VAULT_CREATED, ev.KEY_ADDED, ev.KEY_REVOKED):
            # The authority the append guard trusts: a key event is taken only where its signer may
            # sign it and only with a valid signature (rare events: one Ed25519 check each).
            auth.check(event)
            auth.check_signature(event)
            auth.apply(event)
        data = event.data
        if event.type == ev.ITEM_INGESTED and isinstance(data.get("item"), str):
            meta = data.get("metadata") if isinstance(data.get("metadata"), str) else None
            self.db.execute(
                "INSERT OR IGNORE INTO items (id, seq, time, actor, size, media_type, metadata, name,"
                " derived_from, holder) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    data["item"],
                    event.seq,
                    event.time,
                    event.actor,
                    data["size"] if int64(data.get("size")) else 0,  # verify reports a bad size
                    _text(data.get("media_type")),
                    meta,
                    self.names(meta) if meta else None,
                    _text(data.get("derived_from")),
                    event.actor,
                ),
            )
        elif event.type == ev.CUSTODY_TRANSFERRED:
            # A transfer supersedes one still pending for the item (allowed only once its receiver was
            # revoked), as in Custody.apply.
            self.db.execute(
                "DELETE FROM transfers WHERE item=? AND accepted_seq IS NULL", (str(data.get("item")),)
            )
            self.db.execute(
                "INSERT OR IGNORE INTO transfers (transfer_id, item, sender, to_fp, seq)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    str(data.get("transfer_id")),
                    str(data.get("item")),
                    event.actor,
                    str(data.get("to")),
                    event.seq,
                ),
            )
        elif event.type == ev.CUSTODY_ACCEPTED:
            key = (str(data.get("transfer_id")), str(data.get("item")))
            row = self.db.execute(
                "SELECT to_fp FROM transfers WHERE transfer_id=? AND item=? AND accepted_seq IS NULL", key
            ).fetchone()
            if row is not None and auth.succeeds(event.actor, str(row[0])):  # or the key it rotated to
                self.db.execute(
                    "UPDATE transfers SET accepted_seq=? WHERE transfer_id=? AND item=?", (event.seq, *key)
                )
                self.db.execute("UPDATE items SET holder=? WHERE id=?", (event.actor, key[1]))
        for item in items_of(event):
            if item.isascii():  # nothing SQLite could refuse: written in batches by _flush_events
                self._event_rows.append((item, event.seq, offset))
            else:
                self.db.execute(_ITEM_EVENT, (item, event.seq, offset))
        tags = data.get("tags")
        if isinstance(tags, list):
            for item in items_of(event):
                for tag in tags:
                    if isinstance(tag, str):
                        self.db.execute("INSERT OR IGNORE INTO tags (item, tag) VALUES (?, ?)", (item, tag))

    # -- queries -----------------------------------------------------------------------------------
    def custody(self, item_ids: Iterable[str]) -> Custody:
        """The custody state of just these items (enough to check an event about them)."""
        state = Custody()
        for item in set(item_ids):
            row = self.db.execute("SELECT holder FROM items WHERE id=?", (item,)).fetchone()
            if row is not None:
                state.holders[item] = str(row[0])
            for tid, sender, to, seq in self.db.execute(
                "SELECT transfer_id, sender, to_fp, seq FROM transfers WHERE item=? AND accepted_seq IS NULL",
                (item,),
            ).fetchall():
                state.pending[(tid, item)] = PendingTransfer(tid, item, sender, to, seq)
        return state

    def pending_transfers(
        self, *, to: str | None = None, transfer_id: str | None = None
    ) -> list[PendingTransfer]:
        sql = "SELECT transfer_id, item, sender, to_fp, seq FROM transfers WHERE accepted_seq IS NULL"
        args: list[Any] = []
        if to is not None:
            sql += " AND to_fp=?"
            args.append(to)
        if transfer_id is not None:
            sql += " AND transfer_id LIKE ?"
            args.append(transfer_id + "%")
        rows = self.db.execute(sql + " ORDER BY seq", args).fetchall()
        return [PendingTransfer(*r) for r in rows]

    def holder(self, item_id: str) -> str | None:
        row = self.db.execute("SELECT holder FROM items WHERE id=?", (item_id,)).fetchone()
        return None if row is None else str(row[0])

    def items(
        self,
        *,
        tag: str | None = None,
        custodian: str | None = None,
        since: str | None = None,
        media_prefix: str | None = None,
    ) -> Iterator[IndexedItem]:
        sql = "SELECT id, seq, time, actor, size, media_type, metadata, name, derived_from, holder FROM items"
        where: list[str] = []
        args: list[Any] = []
        if tag is not None:
            where.append("id IN (SELECT item FROM tags WHERE tag=?)")
            args.append(tag)
        if custodian is not None:
            where.append("holder LIKE ?")
            args.append(custodian + "%")
        if since is not None:
            where.append("time >= ?")
            args.append(since)
        if media_prefix is not None:
            where.append("media_type LIKE ?")
            args.append(media_prefix + "%")
        if where:
            sql += " WHERE " + " AND ".join(where)
        for row in self.db.execute(sql + " ORDER BY seq", args).fetchall():
            yield self._item(row)

    def damaged(self, what: str) -> EvidenceVaultError:
        """The error for a cache that holds what no log could have put there (it is in the vault, as
        editable as the log): one line naming it; nothing recorded is affected."""
        return EvidenceVaultError(
            f"the index cache is damaged ({what}); it is derived from the log, so nothing recorded is "
            "affected: delete it to have it rebuilt",
            path=self.path,
        )

    def _item(self, row: Any) -> IndexedItem:
        tags = tuple(
            r[0] for r in self.db.execute("SELECT tag FROM tags WHERE item=? ORDER BY tag", (row[0],))
        )
        item_id, seq, time, actor, size, media_type, metadata, name, derived_from, holder = row
        texts = (media_type, metadata, name, derived_from, holder)
        if (
            not all(type(v) is int for v in (seq, size))  # a hand-made line may say any integer
            or not all(type(v) is str for v in (item_id, time, actor, *tags))
            or not all(v is None or type(v) is str for v in texts)
        ):
            raise self.damaged(f"a malformed row for item {str(item_id)[:80]!r}")
        return IndexedItem(
            item_id, seq, time, actor, size, media_type, metadata, name, derived_from, holder, tags
        )

    def item(self, item_id: str) -> IndexedItem | None:
        row = self.db.execute(
            "SELECT id, seq, time, actor, size, media_type, metadata, name, derived_from, holder FROM items"
            " WHERE id=?",
            (item_id,),
        ).fetchone()
        return None if row is None else self._item(row)

    def match_prefix(self, hex_prefix: str) -> list[str]:
        lo = "sha256:" + hex_prefix
        rows = self.db.execute(
            "SELECT id FROM items WHERE id >= ? AND id < ? LIMIT 3", (lo, lo + "\U0010ffff")
        ).fetchall()
        return [str(r[0]) for r in rows]

    def ingest_record(self, item_id: str) -> tuple[int, int | None, str | None] | None:
        """By this cache: the seq of the item's ``item.ingested`` line, its byte offset in the log and the
        item's media type; None for an item it does not know."""
        row = self.db.execute(
            "SELECT i.seq, e.offset, i.media_type FROM items i"
            " LEFT JOIN item_events e ON e.item = i.id AND e.seq = i.seq WHERE i.id=?",
            (item_id,),
        ).fetchone()
        if row is None:
            return None
        if type(row[0]) is not int or (row[1] is not None and type(row[1]) is not int):
            raise self.damaged(f"a malformed row for item {item_id[:80]!r}")
        return row[0], row[1], row[2]

    def event_offsets(self, item_id: str) -> list[int]:
        rows = self.db.execute("SELECT offset FROM item_events WHERE item=? ORDER BY seq", (item_id,))
        offsets = [r[0] for r in rows.fetchall()]
        if not all(type(o) is int and o >= 0 for o in offsets):
            raise self.damaged(f"a malformed event offset for item {item_id[:80]!r}")
        return offsets

    def event_count(self, item_id: str) -> int:
        return int(self.db.execute("SELECT count(*) FROM item_events WHERE item=?", (item_id,)).fetchone()[0])

    def derived_copies(self, item_id: str) -> list[str]:
        rows = self.db.execute(
            "SELECT id FROM items WHERE derived_from=? ORDER BY seq", (item_id,)
        ).fetchall()
        return [str(r[0]) for r in rows]

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM items").fetchone()[0])


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
