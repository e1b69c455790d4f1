"""RFC 8785 canonical JSON: the only serialization used for signed or hashed data."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
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
    value = parse_json(line)
    return value, _is_canonical(value, line, _dumps)


def parse_json(line: bytes) -> Any:
    """Parse a JSON text (no floats allowed), without the canonical-form check.

    Raises ``ValueError`` if the bytes are not valid UTF-8 JSON.
    """
    text = line.decode("utf-8")
    if text.startswith("\ufeff"):  # what json.loads refuses before decoding
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    try:  # JSON from the first character to the last: what decode() accepts without its two scans
        value, end = _DECODER.raw_decode(text)
    except json.JSONDecodeError:
        end = -1
    if end != len(text):
        value = _DECODER.decode(text)  # raises the error json.loads would
    return value


def is_canonical_form(value: Any, line: bytes) -> bool:
    """True if ``line`` is the RFC 8785 serialization of ``value`` (a float-free parsed value)."""
    return _is_canonical(value, line, _dumps_checked)


def _is_canonical(value: Any, line: bytes, dumps: Callable[[Any], bytes]) -> bool:
    try:
        out = dumps(value)
    except UnicodeEncodeError:
        out = b""
    # json.dumps and RFC 8785 agree byte for byte on ASCII output without a run of 16 digits (which
    # the only integers that may differ have); the digit scan only runs when it can change the answer.
    if out == line:
        if out.isascii() and _LONG_RUN not in out.translate(_DIGITS_ONLY):
            return True
    elif out.isascii() and not _LONG_DIGITS.search(out):
        return False
    try:
        return canonical(value) == line
    except (ValueError, TypeError, OverflowError, rfc8785.CanonicalizationError):
        return False


def _dumps_checked(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _dumps(value: Any) -> bytes:
    """:func:`_dumps_checked` for values without cycles (parsed JSON; what passed :func:`_fast_ok`)."""
    if _ENCODE is None:
        return _dumps_checked(value)
    return "".join(_ENCODE(value, 0)).encode("utf-8")


# The C encoder json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False) builds on every
# call, built once and without its cycle check (the one difference: a cycle recurses without end).
_C_MAKE_ENCODER: Any = getattr(json.encoder, "c_make_encoder", None)
_ENCODE: Any = (
    None
    if _C_MAKE_ENCODER is None
    else _C_MAKE_ENCODER(
        None, json.JSONEncoder().default, json.encoder.encode_basestring, None, ":", ",", True, False, True
    )
)
_MAX_INT = 2**53 - 1
_LONG_DIGITS = re.compile(rb"\d{16,}")
_DIGITS_ONLY = bytes(0x30 if 0x30 <= c <= 0x39 else 0x20 for c in range(256))  # digit: "0", rest: " "
_LONG_RUN = b"0" * 16  # after _DIGITS_ONLY: some run of 16 digits (what _LONG_DIGITS finds)


def _fast_ok(value: Any) -> bool:
    """May ``json.dumps`` serialize ``value`` (RFC 8785 bytes guaranteed)? Exact types only; subclasses
    and floats go to the reference implementation. ASCII keys are checked with one C call."""
    t = type(value)
    if t is str or t is bool or value is None:
        return True
    if t is int:
        return bool(-_MAX_INT <= value <= _MAX_INT)
    if t is dict:
        for k, v in value.items():
            if type(k) is not str or (not k.isascii() and max(map(ord, k)) >= 0xD800):
                return False
            if not _fast_ok(v):
                return False
        return True
    if t is list:
        return all(map(_fast_ok, value))
    return False  # floats and anything else: the reference implementation decides


def _reject_float(text: str) -> Any:
    raise ValueError(f"floating point number {text} is not allowed in signed data")


def _reject_constant(text: str) -> Any:
    raise ValueError(f"{text} is not allowed in JSON")


# What json.loads(..., parse_float=_reject_float, parse_constant=_reject_constant) builds on every call.
_DECODER = json.JSONDecoder(parse_float=_reject_float, parse_constant=_reject_constant)
