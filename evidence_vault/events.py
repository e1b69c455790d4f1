"""The custody-log event model and its wire form (one canonical JSON line, signed with sshsig)."""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from typing import Any

from .canonical import canonical, parse_canonical, parse_json
from .errors import IntegrityError

FORMAT_VERSION = 1

VAULT_CREATED = "vault.created"
KEY_ADDED = "key.added"
KEY_REVOKED = "key.revoked"
ITEM_INGESTED = "item.ingested"
ITEM_ANNOTATED = "item.annotated"
CUSTODY_TRANSFERRED = "custody.transferred"
CUSTODY_ACCEPTED = "custody.accepted"
ITEM_ACCESSED = "item.accessed"
ITEM_DERIVED = "item.derived"
ITEM_EXPORTED = "item.exported"
CHECKPOINT = "checkpoint"

EVENT_TYPES = frozenset(
    {
        VAULT_CREATED,
        KEY_ADDED,
        KEY_REVOKED,
        ITEM_INGESTED,
        ITEM_ANNOTATED,
        CUSTODY_TRANSFERRED,
        CUSTODY_ACCEPTED,
        ITEM_ACCESSED,
        ITEM_DERIVED,
        ITEM_EXPORTED,
        CHECKPOINT,
    }
)

_FIELDS = {"v", "seq", "prev", "time", "type", "actor", "data", "sig"}


def line_hash(line: bytes) -> str:
    """``sha256:<hex>`` of a log line's exact bytes without its newline (the next line's ``prev``)."""
    return "sha256:" + hashlib.sha256(line).hexdigest()


@dataclass(frozen=True)
class Event:
    """One custody event; ``sig`` is the base64 sshsig blob over :meth:`signing_bytes`."""

    seq: int
    prev: str | None
    time: str
    type: str
    actor: str
    data: dict[str, Any] = field(default_factory=dict)
    sig: str = ""
    v: int = FORMAT_VERSION

    def unsigned_dict(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "seq": self.seq,
            "prev": self.prev,
            "time": self.time,
            "type": self.type,
            "actor": self.actor,
            "data": self.data,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.unsigned_dict(), "sig": self.sig}

    def signing_bytes(self) -> bytes:
        """The signed bytes: canonical JSON without ``sig`` (``IntegrityError`` if RFC 8785 cannot
        serialize it, e.g. an integer beyond +-(2**53 - 1) in a hand-made line)."""
        try:
            return canonical(self.unsigned_dict())
        except (ValueError, TypeError) as exc:
            raise IntegrityError(f"event has no RFC 8785 canonical form: {exc}") from None

    def line(self) -> bytes:
        return canonical(self.to_dict())

    @property
    def signature(self) -> bytes:
        if type(self.sig) is str:  # fast path: what re-encodes to exactly ``sig`` is canonical base64
            try:
                text = self.sig.encode("ascii")
                raw = binascii.a2b_base64(text)
                if binascii.b2a_base64(raw, newline=False) == text:
                    return raw
            except ValueError:  # binascii.Error and UnicodeEncodeError: the full check says which
                pass
        try:
            raw = base64.b64decode(self.sig, validate=True)
        except ValueError:
            raise IntegrityError("signature is not valid base64") from None
        if base64.b64encode(raw).decode("ascii") != self.sig:
            # Unused low bits in the last base64 digit would let the line change without the signature.
            raise IntegrityError("signature is not in canonical base64")
        return raw

    @classmethod
    def from_dict(cls, d: Any) -> Event:
        """Build from parsed JSON; raises ``IntegrityError`` naming what is wrong."""
        if (
            type(d) is dict
            and d.keys() == _FIELDS
            and type(d["v"]) is int
            and type(d["seq"]) is int
            and (d["prev"] is None or type(d["prev"]) is str)
            and type(d["time"]) is str
            and type(d["type"]) is str
            and type(d["actor"]) is str
            and type(d["data"]) is dict
            and type(d["sig"]) is str
        ):  # fast path for parsed JSON, where every value has exactly its JSON type
            event = object.__new__(cls)
            # What the frozen __init__ does one object.__setattr__ at a time (about 3x slower).
            event.__dict__.update(
                seq=d["seq"],
                prev=d["prev"],
                time=d["time"],
                type=d["type"],
                actor=d["actor"],
                data=d["data"],
                sig=d["sig"],
                v=d["v"],
            )
            return event
        if not isinstance(d, dict):
            raise IntegrityError("event is not a JSON object")
        missing = _FIELDS - d.keys()
        extra = d.keys() - _FIELDS
        if missing:
            raise IntegrityError(f"event lacks {', '.join(sorted(missing))}")
        if extra:
            raise IntegrityError(f"event has unknown fields {', '.join(sorted(extra))}")
        checks = [
            (isinstance(d["v"], int) and not isinstance(d["v"], bool), "v is not an integer"),
            (isinstance(d["seq"], int) and not isinstance(d["seq"], bool), "seq is not an integer"),
            (d["prev"] is None or isinstance(d["prev"], str), "prev is not a string or null"),
            (isinstance(d["time"], str), "time is not a string"),
            (isinstance(d["type"], str), "type is not a string"),
            (isinstance(d["actor"], str), "actor is not a string"),
            (isinstance(d["data"], dict), "data is not an object"),
            (isinstance(d["sig"], str), "sig is not a string"),
        ]
        for ok, why in checks:
            if not ok:
                raise IntegrityError(why)
        return cls(**d)  # exactly the fields, each of its type


def parse_event(line: bytes) -> Event:
    """Parse one log line without checking its canonical form (what ``verify`` does): for the index."""
    try:
        value = parse_json(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise IntegrityError("not valid JSON: nested too deeply") from None
    return Event.from_dict(value)


def parse_line(line: bytes) -> tuple[Event, bool]:
    """Parse one log line (without newline); returns the event and whether the line is canonical."""
    try:
        value, is_canonical = parse_canonical(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise IntegrityError("not valid JSON: nested too deeply") from None
    return Event.from_dict(value), is_canonical
