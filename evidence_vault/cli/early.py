"""Work started before typer loads: ``verify`` forks its re-hashing child (:mod:`evidence_vault.prehash`)
while typer, the vault code and the verification code are imported (about 0.1 s on one core).

Light on purpose: it reads the command line itself, and imports neither typer nor the vault code.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..prehash import Prehash

GLOBAL_WITH_VALUE = ("--vault", "--key", "--passphrase-file")

_started: Prehash | None = None


def split_command(argv: list[str]) -> tuple[str | None, str | None, list[str]]:
    """``(--vault value or None, command or None, the command's arguments)`` of an argument list."""
    vault: str | None = None
    args = iter(argv)
    for arg in args:
        if arg in GLOBAL_WITH_VALUE:
            value = next(args, None)
            if arg == "--vault":
                vault = value
        elif arg.startswith("--vault="):
            vault = arg.partition("=")[2]
        elif not arg.startswith("-"):
            return vault, arg, list(args)
    return vault, None, []


def start(argv: list[str]) -> None:
    """For ``verify`` (one that re-hashes every object), fork the re-hashing child now; anything
    unusual: leave it to the command (which reports what is wrong)."""
    global _started
    vault, command, rest = split_command(argv)
    if command != "verify" or any(a in ("--help", "-h") for a in rest):
        return
    if "--incremental" in rest and "--rehash" not in rest:  # earlier objects are not re-hashed
        return
    from ..errors import EvidenceVaultError
    from ..locate import find_vault
    from ..prehash import Prehash

    try:
        _started = Prehash.start(find_vault(vault))
    except (EvidenceVaultError, OSError, ValueError):
        _started = None


def claim(root: Path) -> Prehash | None:
    """The child started for the vault at ``root``, if one was (a child started for another directory
    is stopped and not used)."""
    global _started
    early, _started = _started, None
    if early is not None and not early.covers(root):
        early.close()
        return None
    return early


def stop() -> None:
    """Stop a child no command claimed (the command failed before it got there)."""
    global _started
    early, _started = _started, None
    if early is not None:
        early.close()
