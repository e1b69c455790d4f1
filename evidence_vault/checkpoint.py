"""C2SP tlog-checkpoint note text (https://c2sp.org/tlog-checkpoint): the unsigned body of a signed tree head.

    <origin>\\n<tree size>\\n<base64 root hash>\\n[<extension line>\\n ...]

Parsing is strict, so one tree head has exactly one byte form: a valid UTF-8 text without control
characters, every line non-empty and ending in a newline, a decimal size without leading zeros, and a 32-byte
root in padded standard base64. Every violation raises ``IntegrityError`` with a one-line message.
Signing the text is another module's job.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evidence_vault.errors import IntegrityError

if TYPE_CHECKING:
    from evidence_vault.vault import Vault

CHECKPOINTS = "checkpoints"


def checkpoint_dir(vault: Vault, size: int) -> Path:
    """``checkpoints/<size, 12 digits>/``: a checkpoint with its proofs."""
    return vault.root / CHECKPOINTS / f"{size:012d}"


def headers_path(vault: Vault) -> Path:
    """The Bitcoin block headers kept for offline verification of OpenTimestamps proofs."""
    return vault.root / CHECKPOINTS / "headers.json"


def queue_path(vault: Vault) -> Path:
    """The stamps still to make (offline, or too few calendars answered): see ``anchoring.load_queue``."""
    return vault.root / CHECKPOINTS / "queue.json"


def parse_queue(data: bytes) -> dict[str, list[int]] | None:
    """The stamps a queue file lists, ``{"ots": [sizes], "tsa:<url>": [sizes]}``; None if it is none."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    return {
        str(k): [s for s in v if isinstance(s, int) and not isinstance(s, bool) and s > 0]
        for k, v in value.items()
        if isinstance(v, list)
    }


def list_checkpoints(vault: Vault) -> list[int]:
    """Tree sizes of the checkpoint directories, ascending.

    Only names ``checkpoint_dir`` writes count (ASCII digits, zero-padded to 12): another name, such as
    ``3``, a superscript digit or an Arabic-Indic one, is no checkpoint of this vault and is skipped.
    """
    base = vault.root / CHECKPOINTS
    if not base.is_dir():
        return []
    return sorted(
        int(p.name)
        for p in base.iterdir()
        if _DIR_NAME_RE.fullmatch(p.name) and p.name == f"{int(p.name):012d}" and p.is_dir()
    )


_DIR_NAME_RE = re.compile(r"[0-9]{12,20}")


ROOT_SIZE = 32
MAX_SIZE = 2**64 - 1  # tree sizes are uint64 in RFC 9162
_SIZE_RE = re.compile(r"0|[1-9][0-9]*")
_CONTROL_RE = re.compile(r"[\x00-\x1f]")


def _check_line(what: str, line: object) -> str:
    if not isinstance(line, str):
        raise IntegrityError(f"checkpoint {what} is not a string")
    if not line:
        raise IntegrityError(f"checkpoint {what} is empty")
    if _CONTROL_RE.search(line):
        raise IntegrityError(f"checkpoint {what} contains a newline or control character")
    return line


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: log origin, tree size and RFC 9162 root hash, plus optional opaque extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line("origin", self.origin)
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 0 <= self.size <= MAX_SIZE:
            raise IntegrityError(f"checkpoint tree size {self.size!r} is not an integer in 0..2^64-1")
        if not isinstance(self.root, bytes) or len(self.root) != ROOT_SIZE:
            raise IntegrityError(f"checkpoint root hash must be {ROOT_SIZE} bytes")
        if not isinstance(self.extensions, tuple):
            raise IntegrityError("checkpoint extensions must be a tuple of strings")
        for line in self.extensions:
            _check_line("extension line", line)

    def to_text(self) -> bytes:
        """The note text, UTF-8, each line ending in a newline."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode("ascii"), *self.extensions]
        return "".join(line + "\n" for line in lines).encode("utf-8")

    @classmethod
    def parse(cls, data: bytes) -> Checkpoint:
        """Parse note text strictly; ``parse(c.to_text()) == c`` and ``parse(t).to_text() == t``."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise IntegrityError(f"checkpoint is not valid UTF-8 (byte {exc.start})") from None
        if not text:
            raise IntegrityError("checkpoint is empty")
        if not text.endswith("\n"):
            raise IntegrityError("checkpoint does not end with a newline")
        lines = text[:-1].split("\n")
        bad = next((n for n, line in enumerate(lines, 1) if _CONTROL_RE.search(line)), None)
        if bad is not None:
            raise IntegrityError(f"checkpoint line {bad} contains a control character (CR, tab, NUL, ...)")
        if "" in lines:
            raise IntegrityError(f"checkpoint has a blank line (line {lines.index('') + 1})")
        if len(lines) < 3:
            raise IntegrityError(f"checkpoint has {len(lines)} lines, needs at least 3")
        origin, size_text, root_text, *extensions = lines
        if len(size_text) > 20 or not _SIZE_RE.fullmatch(size_text):
            raise IntegrityError(
                f"checkpoint tree size {size_text[:40]!r} is not a decimal without leading zeros"
            )
        return cls(origin, int(size_text), _decode_root(root_text), tuple(extensions))

    def to_dict(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "size": self.size,
            "root": self.root.hex(),
            "extensions": list(self.extensions),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Checkpoint:
        """Inverse of ``to_dict`` (``extensions`` may be omitted); raises IntegrityError on bad input."""
        if not isinstance(d, dict):
            raise IntegrityError("checkpoint must be a JSON object")
        unknown = set(d) - {"origin", "size", "root", "extensions"}
        if unknown or not {"origin", "size", "root"} <= set(d):
            raise IntegrityError(
                f"checkpoint object has fields {sorted(d)}, want origin, size, root, extensions"
            )
        root, extensions = d["root"], d.get("extensions", [])
        if not isinstance(root, str) or not re.fullmatch(r"[0-9a-f]{64}", root):
            raise IntegrityError("checkpoint root must be 64 lowercase hex digits")
        if not isinstance(extensions, list):
            raise IntegrityError("checkpoint extensions must be a list of strings")
        return cls(d["origin"], d["size"], bytes.fromhex(root), tuple(extensions))


def _decode_root(text: str) -> bytes:
    try:
        root = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise IntegrityError(f"checkpoint root hash {text[:60]!r} is not valid base64") from None
    if base64.b64encode(root).decode("ascii") != text:  # padding or unused bits not canonical
        raise IntegrityError(f"checkpoint root hash {text[:60]!r} is not canonical padded base64")
    if len(root) != ROOT_SIZE:
        raise IntegrityError(f"checkpoint root hash is {len(root)} bytes, want {ROOT_SIZE}")
    return root
