"""Salted per-field commitments: sign a field's hash now, reveal or withhold its value later.

commitment = ``sha256:`` + SHA-256(salt || canonical JSON of the value), with a fresh random 16-byte
salt per field. The event carries only commitments; values and salts (the *openings*) live in the
item's metadata object. An export reveals a field by shipping its opening and withholds it by shipping
nothing: the signature still checks, and the 128-bit salt makes guessing a withheld value useless.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any

from .canonical import canonical

SALT_BYTES = 16


def commit(value: Any, salt: bytes) -> str:
    return "sha256:" + hashlib.sha256(salt + canonical(value)).hexdigest()


def make(fields: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """Commit to every field; returns (commitments, openings)."""
    commitments: dict[str, str] = {}
    openings: dict[str, dict[str, Any]] = {}
    for name, value in fields.items():
        salt = secrets.token_bytes(SALT_BYTES)
        commitments[name] = commit(value, salt)
        openings[name] = {"salt": salt.hex(), "value": value}
    return commitments, openings


def opens(commitment: str, opening: Mapping[str, Any]) -> bool:
    """True if ``opening`` (salt and value) matches ``commitment``."""
    try:
        salt = bytes.fromhex(str(opening["salt"]))
        value = opening["value"]
    except (KeyError, ValueError, TypeError):
        return False
    if len(salt) != SALT_BYTES:
        return False
    try:
        expected = commit(value, salt)
    except (ValueError, TypeError, RecursionError):  # no canonical form (1e400, 2**60, too deep)
        return False
    return hmac.compare_digest(expected, commitment)
