"""Finding the vault a command works on (light: the CLI calls it before it imports the vault code)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import VaultNotFoundError

VAULT_FILE = "vault.json"


def find_vault(explicit: str | os.PathLike[str] | None = None, cwd: Path | None = None) -> Path:
    """``--vault``, else ``EVIDENCE_VAULT``, else the working directory or a parent with vault.json."""
    given = explicit if explicit is not None else os.environ.get("EVIDENCE_VAULT")
    if given:
        root = Path(given)
        if not (root / VAULT_FILE).is_file():
            raise VaultNotFoundError("no vault here (vault.json missing)", path=root)
        return root
    here = (cwd or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / VAULT_FILE).is_file():
            return candidate
    raise VaultNotFoundError(
        "no vault in the current directory or its parents: use --vault PATH, set EVIDENCE_VAULT, "
        "or create one with `evidence-vault init`"
    )
