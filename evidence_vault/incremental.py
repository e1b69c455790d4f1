"""What a clean verification established, kept on this machine for the next, incremental, one.

Stored under ``EVIDENCE_VAULT_HOME/verified/<vault id>/`` (outside the vault, like the trust pins, so
a person with write access to the vault cannot edit it): the byte length and SHA-256 of the log prefix
that was verified, the Merkle accumulator, authorization and custody state at its end, and the
per-item table. An incremental run re-hashes that prefix (one fast pass, no parsing or signature
checks): if the bytes are unchanged, everything they said still holds and only the lines after it are
checked in full. If they changed, the run falls back to a full verification.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import write_atomic
from .authority import Authority
from .custody import PendingTransfer
from .keystore import default_home
from .merkle import MerkleAccumulator

_FINDING_KEYS = {"level", "code", "subject", "message", "seq", "item"}
STATE_VERSION = 4  # 2: the prefix's openings objects; 3: its log warnings; 4: items_db named in the state


def state_dir(vault_id: str, home: Path | None = None) -> Path:
    return (home or default_home()) / "verified" / vault_id


def prefix_sha256(path: Path, length: int) -> str:
    """SHA-256 of the first ``length`` bytes of a file (1 MiB reads)."""
    digest: str = extend(hashlib.sha256(), path, 0, length).hexdigest()
    return digest


def extend(h: Any, path: Path, start: int, end: int) -> Any:
    """Feed bytes ``[start, end)`` of a file into the running hash ``h``; returns ``h``."""
    remaining = end - start
    with open(path, "rb", buffering=0) as fh:
        fh.seek(start)
        while remaining > 0:
            block = fh.read(min(1 << 20, remaining))
            if not block:
                break
            h.update(block)
            remaining -= len(block)
    return h


@dataclass
class Saved:
    """The end state of the last clean verification of one vault on this machine."""

    lines: int
    bytes: int
    prefix_sha256: str
    last_hash: str | None
    last_time: str
    acc_size: int
    acc_hashes: list[str]
    authority: dict[str, Any]
    pending: list[dict[str, Any]]
    roots_at: dict[str, str]
    checkpoints: dict[str, dict[str, Any]]
    bundles: list[str]
    openings: list[str]
    warnings: list[dict[str, Any]]  # the WARN findings of its lines, said again by every run built on it
    verified_at: str
    items_db: str

    def accumulator(self) -> MerkleAccumulator:
        return MerkleAccumulator.from_state(self.acc_size, [bytes.fromhex(h) for h in self.acc_hashes])

    def authority_state(self) -> Authority:
        return Authority.from_dict(self.authority)

    def pending_transfers(self) -> dict[tuple[str, str], PendingTransfer]:
        out = {}
        for p in self.pending:
            t = PendingTransfer(**p)
            out[(t.transfer_id, t.item)] = t
        return out


_ITEMS_DB = re.compile(r"items-[0-9a-f]{16}\.sqlite")


def load(vault_id: str, home: Path | None = None) -> Saved | None:
    d = state_dir(vault_id, home)
    try:
        doc = json.loads((d / "state.json").read_text("utf-8"))
        if doc.get("version") != STATE_VERSION:
            return None
        doc.pop("version")
        items = doc.pop("items_db")
        if not isinstance(items, str) or not _ITEMS_DB.fullmatch(items):
            return None
        saved = Saved(**doc, items_db=str(d / items))
        if not all(isinstance(w, dict) and w.keys() == _FINDING_KEYS for w in saved.warnings):
            return None
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return saved if os.path.exists(saved.items_db) else None


def save(
    vault_id: str, doc: dict[str, Any], write_items: Callable[[str], None], home: Path | None = None
) -> None:
    """Keep ``doc`` and the item table (written by ``write_items`` to the path it is given) as one state:
    the table goes to a new file first, then ``state.json`` names it (atomically), then older tables go.
    Interrupted anywhere (disk full, killed), the state on disk is the old one or the new one, whole."""
    d = state_dir(vault_id, home)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = f"items-{secrets.token_hex(8)}.sqlite"
    try:
        write_items(str(d / name))
        write_atomic(
            d / "state.json",
            json.dumps({"version": STATE_VERSION, **doc, "items_db": name}, indent=1).encode(),
            mode=0o600,
        )
    except BaseException:
        for leftover in (name, name + ".tmp"):
            with contextlib.suppress(OSError):
                os.unlink(d / leftover)
        raise
    for old in d.iterdir():
        if old.name != name and (old.name == "items.sqlite" or _ITEMS_DB.fullmatch(old.name)):
            with contextlib.suppress(OSError):
                old.unlink()
