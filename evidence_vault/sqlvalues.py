"""What SQLite can store of values read from the log (which anyone with write access can hand-make)."""

from __future__ import annotations

from typing import TypeGuard


def int64(value: object) -> TypeGuard[int]:
    """An int SQLite stores: a bigger one makes it raise ``OverflowError`` (bools are not ints here)."""
    return type(value) is int and -(2**63) <= value < 2**63
