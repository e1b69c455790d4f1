"""RFC 8785 canonical JSON: the only serialization used for signed or hashed data."""

from __future__ import annotations

import json
from typing import Any

import rfc8785


def canonical(value: Any) -> bytes:
    """Serialize ``value`` as RFC 8785 canonical JSON (UTF-8, sorted keys, no whitespace)."""
    return rfc8785.dumps(value)


def parse_canonical(line: bytes) -> tuple[Any, bool]:
    """Parse a JSON text; also say whether it was already in canonical form.

    Raises ``ValueError`` if the bytes are not valid UTF-8 JSON.
    """
    value = json.loads(line.decode("utf-8"), parse_float=_reject_float, parse_constant=_reject_constant)
    return value, is_canonical_form(value, line)


def is_canonical_form(value: Any, line: bytes) -> bool:
    """True if ``line`` is the RFC 8785 serialization of ``value``.

    Fast path: without floats, RFC 8785 and ``json.dumps(sort_keys, compact, ensure_ascii=False)`` agree
    (same escapes, lowercase ``\\u00xx``) as long as keys sort the same by code point and by UTF-16
    unit, which holds for keys without characters above U+D7FF; only other cases go to ``rfc8785``
    (pure Python, about 15x slower).
    """
    try:
        fast = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, ValueError):
        fast = b""
    if fast == line and _plain_keys(value):
        return True
    try:
        return canonical(value) == line
    except (ValueError, TypeError, OverflowError):
        return False


def _plain_keys(value: Any) -> bool:
    if isinstance(value, dict):
        return all(max(map(ord, k), default=0) < 0xD800 and _plain_keys(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain_keys(v) for v in value)
    return True


def _reject_float(text: str) -> Any:
    raise ValueError(f"floating point number {text} is not allowed in signed data")


def _reject_constant(text: str) -> Any:
    raise ValueError(f"{text} is not allowed in JSON")
