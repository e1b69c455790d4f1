"""Global options shared by every command (vault, key, passphrase), resolved lazily."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ..errors import PassphraseError, UsageError

if TYPE_CHECKING:  # imported where used: `--help` and `--version` must not pay for cryptography
    from ..keystore import KeyStore
    from ..signing import Signer
    from ..vault import Vault


@dataclass
class State:
    vault: str | None = None
    key: str | None = None
    passphrase_file: Path | None = None

    def keystore(self) -> KeyStore:
        from ..keystore import KeyStore

        return KeyStore()

    def open_vault(self) -> Vault:
        from ..vault import Vault, find_vault

        return Vault(find_vault(self.vault))

    def passphrase(self, what: str, *, confirm: bool = False) -> bytes | None:
        """From --passphrase-file, else EVIDENCE_VAULT_PASSPHRASE, else a prompt on a terminal."""
        if self.passphrase_file is not None:
            try:
                text = self.passphrase_file.read_text("utf-8")
            except OSError as exc:
                raise UsageError(
                    f"cannot read passphrase file: {exc.strerror}", path=self.passphrase_file
                ) from None
            return text.rstrip("\r\n").encode() or None
        env = os.environ.get("EVIDENCE_VAULT_PASSPHRASE")
        if env:
            return env.encode()
        if sys.stdin.isatty():
            value: str = typer.prompt(what.capitalize(), hide_input=True, confirmation_prompt=confirm)
            return value.encode() or None
        return None

    def signer(self) -> Signer:
        store = self.keystore()
        ident = store.find(self.key or os.environ.get("EVIDENCE_VAULT_KEY") or None)
        return store.signer(ident, self.passphrase)

    def signer_and_name(self) -> tuple[Signer, str]:
        store = self.keystore()
        ident = store.find(self.key or os.environ.get("EVIDENCE_VAULT_KEY") or None)
        return store.signer(ident, self.passphrase), ident.name

    def require_passphrase(self, what: str) -> bytes:
        value = self.passphrase(what, confirm=True)
        if not value:
            raise PassphraseError(
                "a passphrase is needed (prompt, EVIDENCE_VAULT_PASSPHRASE or --passphrase-file); "
                "use --no-passphrase for an unencrypted key"
            )
        return value


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    if not isinstance(obj, State):
        obj = State()
        ctx.find_root().obj = obj
    return obj


def read_files(paths: list[Path] | None) -> list[bytes]:
    """The bytes of each file named on the command line (e.g. --tsa-ca PEMs); a usage error if unreadable."""
    out = []
    for p in paths or []:
        try:
            out.append(p.read_bytes())
        except OSError as exc:
            raise UsageError(f"cannot read: {exc.strerror}", path=p) from None
    return out
