"""The log pass's fast paths give exactly what the full checks give, and fall back whenever they differ."""

from __future__ import annotations

import base64
import json
import re
import sqlite3
import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from evidence_vault import canonical, scratch, signing
from evidence_vault import events as ev
from evidence_vault.custody_log import RawLine
from evidence_vault.errors import EvidenceVaultError, IntegrityError
from evidence_vault.events import Event, parse_line
from evidence_vault.report import Report
from evidence_vault.scratch import HolderTable, ItemRecord, ItemTable
from evidence_vault.verify import verify_log

# --- canonical form -------------------------------------------------------------------------------


def _reference_parse(line: bytes) -> tuple[Any, bool]:
    """parse_canonical as it was before the fast paths (json.loads; regex on every line)."""

    def no_float(text: str) -> Any:
        raise ValueError(f"floating point number {text} is not allowed in signed data")

    def no_constant(text: str) -> Any:
        raise ValueError(f"{text} is not allowed in JSON")

    value = json.loads(line.decode("utf-8"), parse_float=no_float, parse_constant=no_constant)
    try:
        out = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError:
        out = b""
    if out.isascii() and not re.search(rb"\d{16,}", out):
        return value, out == line
    try:
        return value, canonical.canonical(value) == line
    except (ValueError, TypeError, OverflowError, rfc8785.CanonicalizationError):
        return value, False


LINES = [
    b'{"a":1,"b":"x"}',
    b'{"b":1,"a":2}',  # keys out of order
    b'{"a":12345678901234567}',  # 17 digits: json.dumps writes it back unchanged, RFC 8785 refuses it
    b'{"a":9007199254740991}',  # 2**53 - 1: the largest integer allowed
    b'{"a":9007199254740992}',
    b'{"a":-9007199254740992}',
    b'{"a":"12345678901234567890"}',  # a long digit run in a string is fine
    b'{"a":"12345678901234567890","b":2,"a0":1}',
    b'{"a":1 }',
    b' {"a":1}',
    b'{"a":1} ',
    b'{"a":1}\n',
    b'{"a":1}{"b":2}',
    b'{"a":1}x',
    b'{"a":1.5}',
    b'{"a":NaN}',
    b'{"a":-0}',
    b'{"a":"\\u00e9"}',
    '{"a":"é"}'.encode(),
    '{"\ue000":1,"\U0001f600":2}'.encode(),  # UTF-16 order differs from code point order
    '{"\U0001f600":2,"\ue000":1}'.encode(),
    b'{"a":"\\ud800"}',  # lone surrogate
    b'{"a":"\\u001f"}',
    b'{"a":"\\/"}',
    "\ufeff{}".encode(),
    b"",
    b"[1,2,3]",
    b'"str"',
    b'{"a":[1,{"c":null,"b":true}]}',
    b'{"a":' + b"1" * 5000 + b"}",  # beyond the int digit limit
    b"\xff",
]


def _outcome(fn: Any, line: bytes) -> tuple[str, Any]:
    try:
        return "ok", fn(line)
    except (ValueError, UnicodeDecodeError) as exc:
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize("line", LINES)
def test_parse_canonical_matches_reference(line: bytes) -> None:
    assert _outcome(canonical.parse_canonical, line) == _outcome(_reference_parse, line)


@pytest.mark.parametrize("line", LINES)
def test_is_canonical_form_matches_reference(line: bytes) -> None:
    try:
        value, expected = _reference_parse(line)
    except (ValueError, UnicodeDecodeError):
        return
    assert canonical.is_canonical_form(value, line) is expected


def test_long_integer_line_is_not_canonical_but_long_digit_string_is() -> None:
    assert parse_line_canonical(b'{"n":12345678901234567}') is False
    assert parse_line_canonical(b'{"n":"sha256:1234567890123456789"}') is True


def parse_line_canonical(line: bytes) -> bool:
    return bool(canonical.parse_canonical(line)[1])


# --- Event.from_dict and Event.signature ----------------------------------------------------------


def _event_dict(**changes: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "v": 1,
        "seq": 3,
        "prev": "sha256:" + "0" * 64,
        "time": "2026-01-01T00:00:00.000Z",
        "type": "item.annotated",
        "actor": "SHA256:x",
        "data": {"item": "sha256:" + "1" * 64},
        "sig": "",
    }
    d.update(changes)
    return d


def _reference_from_dict(d: Any) -> Event:
    """The full checks alone (a dict subclass takes them), for comparison."""

    class Other(dict[str, Any]):
        pass

    return Event.from_dict(Other(d)) if isinstance(d, dict) else Event.from_dict(d)


class _Int(int):
    pass


@pytest.mark.parametrize(
    "d",
    [
        _event_dict(),
        _event_dict(prev=None),
        _event_dict(v=True),
        _event_dict(seq=False),
        _event_dict(seq=_Int(3)),
        _event_dict(prev=1),
        _event_dict(time=None),
        _event_dict(type=1),
        _event_dict(actor=[]),
        _event_dict(data=[]),
        _event_dict(sig=None),
        _event_dict(extra=1),
        {k: v for k, v in _event_dict().items() if k != "sig"},
        [],
        "x",
    ],
)
def test_from_dict_matches_full_checks(d: Any) -> None:
    def outcome(fn: Any) -> Any:
        try:
            e = fn(d)
        except IntegrityError as exc:
            return "error", exc.message
        return "ok", e, e.__dict__, repr(e), hash(e.seq)

    assert outcome(Event.from_dict) == outcome(_reference_from_dict)


def test_from_dict_fast_path_builds_a_normal_event() -> None:
    d = _event_dict()
    e = Event.from_dict(d)
    assert e == Event(**d)
    assert list(e.__dict__) == list(Event(**d).__dict__)
    with pytest.raises(AttributeError):
        e.seq = 4  # type: ignore[misc]


def _reference_signature(sig: str) -> bytes:
    try:
        raw = base64.b64decode(sig, validate=True)
    except ValueError:
        raise IntegrityError("signature is not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != sig:
        raise IntegrityError("signature is not in canonical base64")
    return raw


@pytest.mark.parametrize(
    "sig",
    [
        "",
        "AAAA",
        "AAA=",
        "AAB=",
        "AA==",
        "AB==",
        "AAAA\n",
        "AA AA",
        "AA=A",
        "A",
        "AAAAA",
        "é",
        "AA-_",
        "====",
        "QUJD",
    ],
)
def test_signature_matches_full_check(sig: str) -> None:
    def outcome(fn: Any) -> Any:
        try:
            return "ok", fn()
        except IntegrityError as exc:
            return "error", exc.message

    event = Event(**_event_dict(sig=sig))
    assert outcome(lambda: event.signature) == outcome(lambda: _reference_signature(sig))


# --- sshsig fast path -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signer() -> signing.Signer:
    return signing.generate()


@pytest.fixture(scope="module")
def intruder() -> signing.Signer:
    return signing.generate()


def _blob(
    raw_sig: bytes,
    public_blob: bytes,
    namespace: bytes = b"evidence-vault",
    halg: bytes = b"sha512",
    version: int = 1,
    reserved: bytes = b"",
    trailing: bytes = b"",
) -> bytes:
    s = signing._string
    return (
        b"SSHSIG"
        + struct.pack(">I", version)
        + s(public_blob)
        + s(namespace)
        + s(reserved)
        + s(halg)
        + s(s(b"ssh-ed25519") + s(raw_sig))
        + trailing
    )


def _variants(signer: signing.Signer, intruder: signing.Signer, message: bytes) -> dict[str, bytes]:
    good = signer.sign(message)
    raw = good[-64:]
    pub = signer.public.blob
    signed256 = (
        b"SSHSIG"
        + signing._string(b"evidence-vault")
        + signing._string(b"")
        + signing._string(b"sha256")
        + signing._string(__import__("hashlib").sha256(message).digest())
    )
    raw256 = signer.private_key.sign(signed256)
    return {
        "good": good,
        "other-namespace": signer.sign(message, namespace="other"),
        "namespace-same-length": signer.sign(message, namespace="evidence-vaulT"),
        "other-key": intruder.sign(message),
        "unreadable-key": _blob(raw, b"\x00\x00\x00\x01x"),
        "sha256": _blob(raw256, pub, halg=b"sha256"),
        "md5": _blob(raw, pub, halg=b"md5"),
        "version-2": _blob(raw, pub, version=2),
        "reserved": _blob(raw, pub, reserved=b"x"),
        "trailing": good + b"\x00",
        "short-sig": _blob(raw[:63], pub),
        "truncated": good[:-1],
        "empty": b"",
        "bad-equation": good[:-1] + bytes([good[-1] ^ 1]),
    }


def _prepare(blob: bytes, message: bytes, key: signing.PublicKey, namespace: str) -> Any:
    try:
        return "ok", signing.prepare_verification(blob, message, key, namespace)
    except IntegrityError as exc:
        return "error", exc.message


@pytest.fixture
def full_parse_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No fast path: every blob takes the full parser (the reference)."""
    monkeypatch.setattr(signing, "_expected_head", lambda blob, ns: (b"", b"", ""))
    yield


@pytest.mark.parametrize(
    "name",
    [
        "good",
        "other-namespace",
        "namespace-same-length",
        "other-key",
        "unreadable-key",
        "sha256",
        "md5",
        "version-2",
        "reserved",
        "trailing",
        "short-sig",
        "truncated",
        "empty",
        "bad-equation",
    ],
)
@pytest.mark.parametrize("namespace", ["evidence-vault", "other", "\ud800"])
def test_prepare_verification_fast_path_matches_full_parse(
    name: str,
    namespace: str,
    signer: signing.Signer,
    intruder: signing.Signer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = b'{"a":1}'
    blob = _variants(signer, intruder, message)[name]
    key = signer.public

    def both() -> tuple[Any, Any]:
        prepared: Any
        try:
            prepared = signing.prepare_verification_base64(
                base64.b64encode(blob).decode(), message, key, namespace
            )
        except UnicodeEncodeError:
            prepared = "unicode"
        try:
            return _prepare(blob, message, key, namespace), prepared
        except UnicodeEncodeError:
            return "unicode", prepared

    fast, fast_b64 = both()
    monkeypatch.setattr(signing, "_expected_head", lambda blob, ns: (b"", b"", ""))
    full, _ = both()
    assert fast == full
    if fast_b64 is not None:  # the base64 fast path answers only when the full path accepts
        assert fast[0] == "ok" and fast_b64 == fast[1]
    elif name == "good" and namespace == "evidence-vault":
        pytest.fail("the common case must take the fast path")


def test_prepare_verification_base64_refuses_non_canonical_text(signer: signing.Signer) -> None:
    message = b"m"
    text = base64.b64encode(signer.sign(message)).decode()
    key = signer.public
    assert signing.prepare_verification_base64(text, message, key) is not None
    # "==" ends the text; a last digit with unused low bits set decodes to the same bytes
    last = text[-3]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    tweaked = text[:-3] + alphabet[alphabet.index(last) ^ 1] + "=="
    assert base64.b64decode(tweaked) == base64.b64decode(text)
    for bad in (tweaked, text + "A", text[:-1], text[:-2] + "\n=", text.replace("A", "é", 1), text[:-2]):
        assert signing.prepare_verification_base64(bad, message, key) is None


# --- the whole log pass: same findings through fast paths and fallbacks ---------------------------


def _genesis(signer: signing.Signer) -> Event:
    pk = signer.public
    data = {
        "hash_algorithms": ["sha256"],
        "key": {"fingerprint": pk.fingerprint, "name": "t", "public_key": pk.openssh()},
        "name": "t",
        "vault_id": "v",
    }
    return Event(0, None, "2026-01-01T00:00:00.000Z", ev.VAULT_CREATED, pk.fingerprint, data)


def _signed(event: Event, sig: str) -> bytes:
    return Event(**{**event.__dict__, "sig": sig}).line()


def _log(signer: signing.Signer, tail: list[tuple[dict[str, Any], Any]]) -> list[bytes]:
    """Genesis, an ingest, then one line per ``(data, sign)``: ``sign(event) -> sig text``."""
    from evidence_vault.events import line_hash

    def ok(e: Event) -> str:
        return base64.b64encode(signer.sign(e.signing_bytes())).decode("ascii")

    item = {"item": "sha256:" + "a" * 64, "size": 1}
    lines: list[bytes] = []
    steps: list[tuple[dict[str, Any], Any, str]] = [
        (item, ok, ev.ITEM_INGESTED),
        *((d, s, ev.ITEM_ANNOTATED) for d, s in tail),
    ]
    lines.append(_signed(_genesis(signer), ok(_genesis(signer))))
    for seq, (data, sign, kind) in enumerate(steps, start=1):
        e = Event(
            seq, line_hash(lines[-1]), f"2026-01-01T00:00:0{seq % 10}.000Z", kind, signer.fingerprint, data
        )
        lines.append(_signed(e, sign(e)))
    return lines


def _findings(lines: list[bytes]) -> list[tuple[str, str, str, str, int | None]]:
    report = Report(target="t", vault_id="v", started="")
    offset = 0
    raws = []
    for line in lines:
        raws.append(RawLine(offset, line, True))
        offset += len(line) + 1
    verify_log(raws, report, vault_id="v")
    return [(f.level, f.code, f.subject, f.message, f.seq) for f in report.findings]


def test_log_pass_findings_same_with_and_without_fast_paths(
    signer: signing.Signer, intruder: signing.Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    item = "sha256:" + "a" * 64

    def by(s: signing.Signer, namespace: str = "evidence-vault") -> Callable[[Event], str]:
        return lambda e: base64.b64encode(s.sign(e.signing_bytes(), namespace)).decode("ascii")

    def tweak(e: Event) -> str:
        text = by(signer)(e)
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        return text[:-3] + alphabet[alphabet.index(text[-3]) ^ 1] + "=="

    def flip(e: Event) -> str:
        blob = bytearray(signer.sign(e.signing_bytes()))
        blob[-1] ^= 1
        return base64.b64encode(bytes(blob)).decode()

    lines = _log(
        signer,
        [
            ({"item": item, "label": "fine"}, by(signer)),
            ({"item": item, "label": "another key"}, by(intruder)),
            ({"item": item, "label": "another namespace"}, by(signer, "other")),
            ({"item": item, "label": "non-canonical base64"}, tweak),
            ({"item": item, "label": "not base64"}, lambda e: "!!!!"),
            ({"item": item, "label": "equation fails"}, flip),
            ({"item": item, "label": "digits 1234567890123456789"}, by(signer)),
            ({"item": "sha256:" + "b" * 64, "label": "unknown item"}, by(signer)),
        ],
    )
    # Not canonical (a space): the signature is then checked over the re-serialized event.
    spaced = _log(signer, [({"item": item, "label": "spaced"}, by(signer))])[-1]
    lines.append(spaced.replace(b'"seq":2', b'"seq":10').replace(b'"v":1', b'"v": 1'))
    found = _findings(lines)

    monkeypatch.setattr(signing, "_expected_head", lambda blob, ns: (b"", b"", ""))
    monkeypatch.setattr(canonical, "parse_canonical", _reference_parse)
    monkeypatch.setattr(ev, "parse_canonical", _reference_parse)
    assert found == _findings(lines)

    messages = {(code, seq): message for _, code, _, message, seq in found}
    assert messages[("log.bad-signature", 3)] == (
        f"signature check failed: signature is by {intruder.fingerprint}, expected {signer.fingerprint}"
    )
    assert messages[("log.bad-signature", 4)] == (
        "signature check failed: signature namespace is 'other', expected 'evidence-vault'"
    )
    assert (
        messages[("log.bad-signature", 5)] == "signature check failed: signature is not in canonical base64"
    )
    assert messages[("log.bad-signature", 6)] == "signature check failed: signature is not valid base64"
    assert messages[("log.bad-signature", 7)] == "signature check failed: signature does not verify"
    assert ("log.bad-signature", 8) not in messages
    assert messages[("log.custody-violation", 9)].startswith("refers to item sha256:bbb")
    assert messages[("log.non-canonical", 10)] == "line is not in RFC 8785 canonical form"
    assert messages[("log.chain-broken", 10)].startswith("prev does not match")
    assert {seq for _, _, _, _, seq in found} == {3, 4, 5, 6, 7, 9, 10}
    assert all(subject == f"log.jsonl line {(seq or 0) + 1} (seq {seq})" for _, _, subject, _, seq in found)


def test_parse_line_errors_unchanged() -> None:
    for line in (b'{"a":1}{', b"\xef\xbb\xbf{}", b'{"a":1.0}', b"[]", b"{}"):
        with pytest.raises(EvidenceVaultError) as got:
            parse_line(line)
        try:
            value, _ = _reference_parse(line)
        except (ValueError, UnicodeDecodeError) as exc:
            assert got.value.message == f"not valid JSON: {exc}"
        else:
            with pytest.raises(EvidenceVaultError) as ref:
                Event.from_dict(value)
            assert got.value.message == ref.value.message


# --- scratch tables: the in-memory cache never changes an answer ----------------------------------


@pytest.mark.parametrize("cap", [2, 50_000])
def test_holder_table_cache_agrees_with_dict(cap: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scratch, "CACHE_MAX", cap)
    items = ItemTable()
    table = HolderTable(items.db)
    model: dict[str, str] = {}
    keys = [f"sha256:{i}" for i in range(6)]
    for i, key in enumerate(keys):
        assert table.setdefault(key, f"h{i}") == model.setdefault(key, f"h{i}")
        assert table.setdefault(key, "other") == model.setdefault(key, "other")
    table[keys[1]] = "moved"
    model[keys[1]] = "moved"
    del table[keys[2]]
    del model[keys[2]]
    for key in [*keys, "sha256:none", "é"]:
        assert (key in table) == (key in model)
        assert table.get(key) == model.get(key)
    assert sorted(table) == sorted(model) and len(table) == len(model)


def test_holder_table_non_text_keys_are_never_present() -> None:
    """A hand-made line can name an item with any JSON value: looking it up answers "absent" (it used
    to reach SQLite, which raised on a dict); the log pass itself only ever writes str keys."""
    table = HolderTable(ItemTable().db)
    table["5"] = "h"
    for key in (5, {"a": 1}, ["5"], None, 2**80):
        assert key not in table
        with pytest.raises(KeyError):
            _ = table[key]  # type: ignore[index]
    with pytest.raises(TypeError):
        table[5] = "h"  # type: ignore[index]
    with pytest.raises(TypeError):
        table["6"] = 7  # type: ignore[assignment]


@pytest.mark.parametrize("cap", [2, 50_000])
def test_lone_surrogates_round_trip(cap: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lone surrogate (valid in JSON, not in UTF-8) made SQLite raise, and verify stop with an
    internal error on a hand-made line. It is kept as a BLOB no real id equals."""
    monkeypatch.setattr(scratch, "CACHE_MAX", cap)
    items = ItemTable()
    table = HolderTable(items.db)
    odd, near = "\ud800x", "\udfffx"
    assert odd not in table and near not in table
    assert table.setdefault(odd, "h\udc00") == "h\udc00"
    assert table.setdefault(odd, "other") == "h\udc00"
    table[near] = "x"
    assert table[odd] == "h\udc00" and table[near] == "x" and "x" not in table
    assert sorted(table) == sorted([odd, near])
    del table[near]
    assert near not in table and len(table) == 1
    items[odd] = ItemRecord(1, 2, "\ud801", {"\ud802": "v"})
    assert odd in items and near not in items
    assert items[odd] == ItemRecord(1, 2, "\ud801", {"\ud802": "v"})
    assert list(items.records()) == [(odd, ItemRecord(1, 2, "\ud801", {"\ud802": "v"}))]


@pytest.mark.parametrize("cap", [2, 50_000])
def test_deferred_writes_are_read_back(cap: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes are batched (one executemany); every read first runs those still pending, in order."""
    monkeypatch.setattr(scratch, "CACHE_MAX", cap)
    monkeypatch.setattr(scratch, "DEFER_MAX", 5)
    items = ItemTable()
    holders = HolderTable(items.db)
    model: dict[str, str] = {}
    for i in range(23):
        key = f"sha256:{i:02d}"
        items[key] = ItemRecord(i, 100 - i, f"sha256:m{i}", {"name": f"c{i}"})
        assert holders.setdefault(key, "a") == model.setdefault(key, "a")
        if i % 3 == 0:
            holders[key] = model[key] = f"b{i}"  # a replace after an insert of the same key
        if i % 7 == 0:
            assert len(holders) == len(model) and items[key].committed == {"name": f"c{i}"}
    if cap > 100:  # with the cache complete, no read reached SQLite: some writes are still deferred
        assert items.db.pending
    assert dict((k, holders[k]) for k in holders) == model
    assert [k for k, _ in items.records_by_size()] == [f"sha256:{i:02d}" for i in range(23)]
    assert items.references("m5") and not items.references("m99")
    saved = str(Path(tempfile.mkdtemp()) / "s.sqlite")
    items[f"sha256:{99}"] = ItemRecord(99, 1, None, {})
    items.db.save_to(saved)
    assert len(scratch.restore(saved)) == 24


def test_deferred_writes_of_two_tables_run_in_one_call_each() -> None:
    """An ingest writes an item, then its holder: a flush runs one executemany per table and statement
    (it ran one per write, as the two alternate), and the holder replace still follows its insert."""
    items = ItemTable()
    holders = HolderTable(items.db)
    calls: list[tuple[str, int]] = []

    class Counting:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def executemany(self, sql: str, rows: list[Any]) -> Any:
            calls.append((sql.split(" (")[0], len(rows)))
            return self.conn.executemany(sql, rows)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.conn, name)

    items.db.conn = Counting(items.db.conn)  # type: ignore[assignment]
    for i in range(100):
        key = f"sha256:{i:03d}"
        items[key] = ItemRecord(i, 1, None, {})
        holders.setdefault(key, "a")
    holders["sha256:007"] = "b"
    items.db.flush()
    assert calls == [
        ("INSERT OR REPLACE INTO items", 100),
        ("INSERT OR IGNORE INTO holders", 100),
        ("INSERT OR REPLACE INTO holders", 1),
    ]
    assert holders["sha256:007"] == "b" and holders["sha256:008"] == "a" and len(items) == 100


def test_item_sizes_beyond_sqlite_are_bad_items() -> None:
    """A hand-made ingest line with a size SQLite cannot store is reported, not a crash."""
    items = ItemTable()
    with pytest.raises(OverflowError):
        items["sha256:a"] = ItemRecord(1, 2**70, None, {})
    assert "sha256:a" not in items


@pytest.mark.parametrize("cap", [2, 50_000])
def test_item_table_cache_agrees_with_dict(cap: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scratch, "CACHE_MAX", cap)
    table = ItemTable()
    keys = [f"sha256:{i}" for i in range(6)]
    for i, key in enumerate(keys):
        assert key not in table
        table[key] = ItemRecord(i, i, None, {})
        assert key in table
    del table[keys[0]]
    assert keys[0] not in table and len(table) == 5
    assert 7 not in table and {"a": 1} not in table
    assert [k for k in table] == keys[1:]


def test_restored_tables_answer_from_sqlite(tmp_path: Path) -> None:
    items = ItemTable()
    holders = HolderTable(items.db)
    items["sha256:a"] = ItemRecord(1, 1, None, {})
    holders["sha256:a"] = "h"
    saved = str(tmp_path / "s.sqlite")
    items.db.save_to(saved)
    restored = scratch.restore(saved)
    again = HolderTable(restored.db)
    assert "sha256:a" in restored and "sha256:b" not in restored
    assert again["sha256:a"] == "h" and "sha256:b" not in again
    assert again.setdefault("sha256:a", "x") == "h"
    assert again.setdefault("sha256:b", "y") == "y"
