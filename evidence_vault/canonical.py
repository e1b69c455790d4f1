"""RFC 8785 canonical JSON: the only serialization used for signed or hashed data."""

from __future__ import annotations

import json
import re
from typing import Any

import rfc8785


def canonical(value: Any) -> bytes:
    """Serialize ``value`` as RFC 8785 canonical JSON (UTF-8, sorted keys, no whitespace).

    Without floats, RFC 8785 and ``json.dumps(sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)`` produce the same bytes (same escapes, lowercase ``\\u00xx``) as long as
    every key sorts the same by code point as by UTF-16 unit (no key character above U+D7FF) and every
    integer is within +-(2**53 - 1); such values take the C encoder, anything else the ``rfc8785``
    package (pure Python, about 15x slower), which also rejects what RFC 8785 forbids.
    """
    if _fast_ok(value):
        try:
            return _dumps(value)
        except UnicodeEncodeError:
            pass  # a lone surrogate: let rfc8785 raise its own error
    return rfc8785.dumps(value)


def parse_canonical(line: bytes) -> tuple[Any, bool]:
    """Parse a JSON text (no floats allowed); also say whether it was already in canonical form.

    Raises ``ValueError`` if the bytes are not valid UTF-8 JSON.
    """
    value = json.loads(line.decode("utf-8"), parse_float=_reject_float, parse_constant=_reject_constant)
    return value, is_canonical_form(value, line)


def is_canonical_form(value: Any, line: bytes) -> bool:
    """True if ``line`` is the RFC 8785 serialization of ``value`` (a float-free parsed value)."""
    try:
        out = _dumps(value)
    except UnicodeEncodeError:
        out = b""
    if out.isascii() and not _LONG_DIGITS.search(out):
        return out == line  # here json.dumps and RFC 8785 agree byte for byte
    try:
        return canonical(value) == line
    except (ValueError, TypeError, OverflowError, rfc8785.CanonicalizationError):
        return False


def _dumps(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


_MAX_INT = 2**53 - 1
_LONG_DIGITS = re.compile(rb"\d{16,}")


def _fast_ok(value: Any) -> bool:
    if isinstance(value, str) or value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -_MAX_INT <= value <= _MAX_INT
    if isinstance(value, dict):
        return all(
            isinstance(k, str) and max(map(ord, k), default=0) < 0xD800 and _fast_ok(v)
            for k, v in value.items()
        )
    if isinstance(value, list):
        return all(_fast_ok(v) for v in value)
    return False  # floats and anything else: the reference implementation decides


def _reject_float(text: str) -> Any:
    raise ValueError(f"floating point number {text} is not allowed in signed data")


def _reject_constant(text: str) -> Any:
    raise ValueError(f"{text} is not allowed in JSON")
