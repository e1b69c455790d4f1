"""The Merkle tree head of a log prefix, without hashing again every line a checkpoint already covered.

A checkpoint signs the RFC 9162 root of every line before it. Read from the first line, that costs
seconds on a log of a million events (one leaf hash and one accumulator step per line, in Python), and
``stamp`` makes one each time it runs. So each checkpoint made on this machine keeps the accumulator's
frontier (O(log n) hashes) under ``EVIDENCE_VAULT_HOME/frontier/<vault id>.json``, outside the vault
(like the trust pins: a person with write access to the vault cannot edit it), with the byte length
and SHA-256 of the log prefix it covers. The next checkpoint re-hashes that prefix in one streaming
pass (no parsing): only if the bytes are unchanged does it start from the frontier and hash the new
lines alone; otherwise it reads the whole log, as before. The clean state a ``verify --incremental``
kept (:mod:`evidence_vault.incremental`) is used the same way when it covers more of the log.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import incremental, merkle
from .atomic import write_atomic
from .custody_log import CustodyLog
from .keystore import default_home

_VAULT_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


@dataclass(frozen=True)
class Frontier:
    """The accumulator after the first ``lines`` lines of a log, which end at byte ``bytes``."""

    lines: int
    bytes: int
    prefix_sha256: str
    acc_hashes: tuple[str, ...]

    def accumulator(self) -> merkle.MerkleAccumulator:
        return merkle.MerkleAccumulator.from_state(self.lines, [bytes.fromhex(h) for h in self.acc_hashes])

    def to_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "bytes": self.bytes,
            "prefix_sha256": self.prefix_sha256,
            "acc_hashes": list(self.acc_hashes),
        }


def path_of(vault_id: str, home: Path | None = None) -> Path | None:
    if not _VAULT_ID.fullmatch(vault_id):
        return None
    return (home or default_home()) / "frontier" / f"{vault_id}.json"


def load(vault_id: str, home: Path | None = None) -> Frontier | None:
    """The frontier kept for this vault, or None (none kept, or unreadable: then nothing is skipped)."""
    path = path_of(vault_id, home)
    if path is None:
        return None
    try:
        doc = json.loads(path.read_bytes())
        frontier = Frontier(
            lines=doc["lines"],
            bytes=doc["bytes"],
            prefix_sha256=doc["prefix_sha256"],
            acc_hashes=tuple(doc["acc_hashes"]),
        )
        if not isinstance(frontier.bytes, int) or frontier.bytes < 0:
            return None
        if not isinstance(frontier.prefix_sha256, str):
            return None
        frontier.accumulator()  # checks the size and the hashes
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    return frontier


def save(vault_id: str, frontier: Frontier, home: Path | None = None) -> None:
    """Keep ``frontier`` for the next checkpoint. Best effort: a home that cannot be written only
    means the next checkpoint reads the whole log again."""
    path = path_of(vault_id, home)
    if path is None:
        return
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(path, json.dumps(frontier.to_dict(), indent=1).encode() + b"\n", mode=0o600)


def _incremental_state(vault_id: str, home: Path | None) -> Frontier | None:
    saved = incremental.load(vault_id, home)
    if saved is None:
        return None
    try:
        frontier = Frontier(saved.lines, saved.bytes, saved.prefix_sha256, tuple(saved.acc_hashes))
        if saved.acc_size != saved.lines:
            return None
        frontier.accumulator()
    except (ValueError, TypeError):
        return None
    return frontier


def tree_head(
    log: CustodyLog, vault_id: str, size: int, *, home: Path | None = None
) -> tuple[bytes, Frontier | None]:
    """The Merkle root of the first ``size`` lines of ``log`` and the frontier after them (None if the
    log has fewer complete lines: the caller holds the writer lock and knows ``size`` is there).

    Starts from the largest kept frontier of at most ``size`` lines whose prefix is byte-for-byte
    unchanged; else from the first line.
    """
    kept = [f for f in (load(vault_id, home), _incremental_state(vault_id, home)) if f is not None]
    acc, h, offset = merkle.MerkleAccumulator(), hashlib.sha256(), 0
    for frontier in sorted(kept, key=lambda f: f.lines, reverse=True):
        if not 0 < frontier.lines <= size:
            continue
        try:
            prefix = incremental.extend(hashlib.sha256(), log.path, 0, frontier.bytes)
        except OSError:
            break
        if prefix.hexdigest() == frontier.prefix_sha256:
            acc, h, offset = frontier.accumulator(), prefix, frontier.bytes
            break
    for raw in log.iter_raw(offset):
        if acc.size >= size or not raw.complete:
            break
        acc.append(merkle.leaf_hash(raw.data))
        h.update(raw.data)
        h.update(b"\n")
        offset += len(raw.data) + 1
    if acc.size != size:
        return acc.root(), None
    count, hashes = acc.state()
    return acc.root(), Frontier(count, offset, h.hexdigest(), tuple(x.hex() for x in hashes))
