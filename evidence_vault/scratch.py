"""Per-run verification state on disk, so memory stays flat however long the log is.

A private temporary SQLite file (journal off, never committed) holds what a log pass learns per
item; it is deleted when the run ends. It is scratch space for one run, never a cache: nothing in it
outlives the verification that wrote it.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import operator
import os
import shutil
import sqlite3
import tempfile
import weakref
from collections.abc import Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

from .sqlvalues import int64


@dataclass
class ItemRecord:
    seq: int
    size: int
    metadata: str | None
    committed: dict[str, str]


class _Db:
    def __init__(self, restore_from: str | None = None) -> None:
        self.dir = tempfile.mkdtemp(prefix="evidence-vault-verify-")
        self.conn = sqlite3.connect(os.path.join(self.dir, "state.sqlite"), isolation_level=None)
        weakref.finalize(self, _cleanup, self.conn, self.dir)
        if restore_from is not None:
            # Read-only: a saved table removed meanwhile (a newer state replaced it) is an error, not a new,
            # empty table.
            src = sqlite3.connect(Path(restore_from).absolute().as_uri() + "?mode=ro", uri=True)
            try:
                src.backup(self.conn)
            finally:
                src.close()
        self.conn.execute("PRAGMA journal_mode=OFF")
        self.conn.execute("PRAGMA synchronous=OFF")
        self.conn.execute("PRAGMA cache_size=-16000")  # 16 MB page cache at most
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS items"
            " (id TEXT PRIMARY KEY, seq INTEGER, size INTEGER, metadata TEXT, committed TEXT)"
        )
        self.conn.execute("CREATE TABLE IF NOT EXISTS holders (id TEXT PRIMARY KEY, holder TEXT NOT NULL)")
        self.conn.execute("BEGIN")
        self.pending: list[tuple[str, tuple[str | int | None, ...]]] = []

    def defer(self, sql: str, params: tuple[str | int | None, ...]) -> None:
        """A write of plain values (nothing SQLite could refuse), run in order with the next ones by
        one ``executemany`` before anything reads (an item and its holder: about 15 us instead of 22)."""
        self.pending.append((sql, params))
        if len(self.pending) >= DEFER_MAX:
            self.flush()

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        # Writes to different tables commute: each table's run in their order, in as few calls as its
        # runs of one statement allow (an ingest writes an item, then its holder: one call per table,
        # not one per write).
        by_table: dict[str, list[tuple[str, tuple[str | int | None, ...]]]] = {}
        for write in pending:
            by_table.setdefault(_table_of(write[0]), []).append(write)
        for writes in by_table.values():
            for sql, group in itertools.groupby(writes, key=operator.itemgetter(0)):
                self.conn.executemany(sql, [params for _sql, params in group])

    def execute(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
        """Run a statement after the deferred writes."""
        if self.pending:
            self.flush()
        return self.conn.execute(sql, params)

    def save_to(self, path: str) -> None:
        """Copy the state to ``path`` (atomically: a temporary file renamed into place)."""
        self.flush()
        self.conn.execute("COMMIT")
        tmp = path + ".tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        dest = sqlite3.connect(tmp)
        try:
            self.conn.backup(dest)
        finally:
            dest.close()
        os.replace(tmp, path)
        self.conn.execute("BEGIN")


@functools.cache
def _table_of(sql: str) -> str:
    """The table a deferred ``INSERT … INTO table …`` writes."""
    return sql.split(" INTO ", 1)[1].split(None, 1)[0]


def _cleanup(conn: sqlite3.Connection, directory: str) -> None:
    with contextlib.suppress(sqlite3.ProgrammingError):  # finalized in another thread: closed at exit
        conn.close()
    shutil.rmtree(directory, ignore_errors=True)


def restore(path: str) -> ItemTable:
    """A scratch item table starting from a saved copy."""
    return ItemTable(_Db(restore_from=path))


# json.dumps(value, separators=(",", ":")), built once (json.dumps builds an encoder on every such call).
_compact = json.JSONEncoder(separators=(",", ":")).encode

# Ids (and holders) kept in memory in front of the tables: a bounded cache, so memory stays flat.
CACHE_MAX = 50_000
DEFER_MAX = 4096  # deferred writes held at most


class _Known:
    """Keys known to be in a table (with a value, for a mapping): ``complete`` while it holds them all.

    Every write to the table goes through it, so it never holds a stale entry; when full it stops
    growing and stops being complete (lookups it cannot answer go to the table).
    """

    def __init__(self, complete: bool) -> None:
        self.values: dict[str, str] = {}
        self.complete = complete

    def put(self, key: object, value: object = "") -> None:
        """After writing ``key`` -> ``value`` to the table."""
        if _plain(key) and _plain(value):
            if key in self.values or len(self.values) < CACHE_MAX:
                self.values[key] = value
            else:
                self.complete = False
        else:
            self.forget()  # the table may have stored it under another key or read it back changed

    def forget(self) -> None:
        self.values.clear()
        self.complete = False


def _plain(key: object) -> TypeGuard[str]:
    """A key the cache answers for: a str that SQLite binds and returns unchanged, never an error."""
    return type(key) is str and key.isascii()


def _plain_or_none(value: object) -> bool:
    return value is None or _plain(value)


def _bind(text: str | None) -> str | bytes | None:
    """What SQLite stores for a str: the str itself, or, for one UTF-8 cannot encode (a lone surrogate:
    only in a hand-made line), its bytes with the surrogates kept, a BLOB no TEXT value equals."""
    if text is None:
        return None
    if type(text) is not str:
        raise TypeError(f"expected a str, not {type(text).__name__}")
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")
    return text


def _unbind(value: object) -> str:
    """The str :func:`_bind` stored."""
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else str(value)


class ItemTable(MutableMapping[str, ItemRecord]):
    """Item id -> what its ingest event recorded, in seq order when iterated."""

    def __init__(self, db: _Db | None = None) -> None:
        self._db = db or _Db()
        self._n = int(self._db.execute("SELECT count(*) FROM items").fetchone()[0])
        self._known = _Known(complete=self._n == 0)

    @property
    def db(self) -> _Db:
        return self._db

    def __getitem__(self, key: str) -> ItemRecord:
        if not isinstance(key, str):
            raise KeyError(key)
        row = self._db.execute(
            "SELECT seq, size, metadata, committed FROM items WHERE id=?", (_bind(key),)
        ).fetchone()
        if row is None:
            raise KeyError(key)
        return _record(row[0], row[1], row[2], row[3])

    def __setitem__(self, key: str, rec: ItemRecord) -> None:
        existed = key in self
        sql = "INSERT OR REPLACE INTO items (id, seq, size, metadata, committed) VALUES (?, ?, ?, ?, ?)"
        committed = _compact(rec.committed)  # ASCII: surrogates escaped
        if _plain(key) and int64(rec.seq) and int64(rec.size) and _plain_or_none(rec.metadata):
            self._db.defer(sql, (key, rec.seq, rec.size, rec.metadata, committed))
        else:
            self._db.execute(sql, (_bind(key), rec.seq, rec.size, _bind(rec.metadata), committed))
        self._known.put(key)
        self._n += 0 if existed else 1

    def _count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM items").fetchone()[0])

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._db.execute("DELETE FROM items WHERE id=?", (_bind(key),))
        if _plain(key):
            self._known.values.pop(key, None)
        else:
            self._known.forget()
        self._n = self._count()

    def __contains__(self, key: object) -> bool:
        if _plain(key) and (key in self._known.values or self._known.complete):
            return key in self._known.values
        if not isinstance(key, str):
            return False
        found = self._db.execute("SELECT 1 FROM items WHERE id=?", (_bind(key),)).fetchone() is not None
        if found:
            self._known.put(key)
        return found

    def __iter__(self) -> Iterator[str]:
        for (key,) in self._db.execute("SELECT id FROM items ORDER BY seq"):
            yield _unbind(key)

    def __len__(self) -> int:
        return self._n

    def records_by_size(self, min_seq: int = 0, above: int = -1) -> Iterator[tuple[str, ItemRecord]]:
        """(id, record) of items from ``min_seq`` on bigger than ``above`` bytes, biggest first: keeps
        every core busy to the end."""
        query = (
            "SELECT id, seq, size, metadata, committed FROM items WHERE seq >= ? AND size > ? "
            "ORDER BY size DESC"
        )
        for key, seq, size, meta, committed in self._db.execute(query, (min_seq, above)):
            yield _unbind(key), _record(seq, size, meta, committed)

    def total_size(self, min_seq: int = 0) -> int:
        """The bytes of the originals of the items from ``min_seq`` on."""
        row = self._db.execute(
            "SELECT coalesce(sum(size), 0) FROM items WHERE seq >= ?", (min_seq,)
        ).fetchone()
        return int(row[0])

    def references(self, hex_digest: str) -> bool:
        """Is this object an item's original or its metadata object?"""
        db = self._db
        if db.execute("SELECT 1 FROM items WHERE id=?", ("sha256:" + hex_digest,)).fetchone():
            return True
        db.execute("CREATE INDEX IF NOT EXISTS items_by_metadata ON items (metadata)")
        return (
            db.execute("SELECT 1 FROM items WHERE metadata=?", ("sha256:" + hex_digest,)).fetchone()
            is not None
        )

    def records(self) -> Iterator[tuple[str, ItemRecord]]:
        """(id, record) in seq order, streamed."""
        for key, seq, size, meta, committed in self._db.execute(
            "SELECT id, seq, size, metadata, committed FROM items ORDER BY seq"
        ):
            yield _unbind(key), _record(seq, size, meta, committed)

    def seqs(self) -> Iterator[tuple[str, int]]:
        """(id, seq) in seq order, streamed: :meth:`records` without what the ingests recorded."""
        for key, seq in self._db.execute("SELECT id, seq FROM items ORDER BY seq"):
            yield _unbind(key), seq


def _record(seq: int, size: int, metadata: str | bytes | None, committed: str) -> ItemRecord:
    return ItemRecord(seq, size, None if metadata is None else _unbind(metadata), json.loads(committed))


class HolderTable(MutableMapping[str, str]):
    """Item id -> fingerprint of its current custodian."""

    def __init__(self, db: _Db) -> None:
        self._db = db
        empty = db.execute("SELECT 1 FROM holders LIMIT 1").fetchone() is None
        self._known = _Known(complete=empty)

    def __getitem__(self, key: str) -> str:
        if _plain(key):
            cached = self._known.values.get(key)
            if cached is not None:
                return cached
            if self._known.complete:
                raise KeyError(key)
        if not isinstance(key, str):
            raise KeyError(key)
        row = self._db.execute("SELECT holder FROM holders WHERE id=?", (_bind(key),)).fetchone()
        if row is None:
            raise KeyError(key)
        if _plain(key) and _plain(row[0]):
            self._known.put(key, row[0])
        return _unbind(row[0])

    def __setitem__(self, key: str, value: str) -> None:
        sql = "INSERT OR REPLACE INTO holders (id, holder) VALUES (?, ?)"
        if _plain(key) and _plain(value):
            self._db.defer(sql, (key, value))
        else:
            self._db.execute(sql, (_bind(key), _bind(value)))
        self._known.put(key, value)

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._db.execute("DELETE FROM holders WHERE id=?", (_bind(key),))
        if _plain(key):
            self._known.values.pop(key, None)
        else:
            self._known.forget()

    def __contains__(self, key: object) -> bool:
        if _plain(key) and (key in self._known.values or self._known.complete):
            return key in self._known.values
        if not isinstance(key, str):
            return False
        return self._db.execute("SELECT 1 FROM holders WHERE id=?", (_bind(key),)).fetchone() is not None

    def __iter__(self) -> Iterator[str]:
        for (key,) in self._db.execute("SELECT id FROM holders"):
            yield _unbind(key)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM holders").fetchone()[0])

    def setdefault(self, key: str, default: str = "") -> str:
        if _plain(key) and key in self._known.values:
            return self._known.values[key]
        complete = self._known.complete  # then it was not there: the row is the one inserted now
        sql = "INSERT OR IGNORE INTO holders (id, holder) VALUES (?, ?)"
        if complete and _plain(key) and _plain(default):
            self._db.defer(sql, (key, default))
            self._known.put(key, default)
            return default
        self._db.execute(sql, (_bind(key), _bind(default)))
        if not (_plain(key) and _plain(default)):
            self._known.forget()
        return self[key]


class LineHashes:
    """How many lines were seen, the last one's hash, and the hashes at the seqs asked for."""

    def __init__(self, keep: set[int] | None = None) -> None:
        self.count = 0
        self.last: str | None = None
        self.keep = keep or set()
        self.kept: dict[int, str] = {}

    def append(self, line_hash: str) -> None:
        if self.count in self.keep:
            self.kept[self.count] = line_hash
        self.count += 1
        self.last = line_hash

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    def __getitem__(self, index: int) -> str:
        if index == -1 or index == self.count - 1:
            if self.last is None:
                raise IndexError(index)
            return self.last
        try:
            return self.kept[index]
        except KeyError:
            raise IndexError(f"hash of line {index} was not kept") from None
