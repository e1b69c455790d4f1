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
    return value, canonical(value) == line


def _reject_float(text: str) -> Any:
    raise ValueError(f"floating point number {text} is not allowed in signed data")


def _reject_constant(text: str) -> Any:
    raise ValueError(f"{text} is not allowed in JSON")
