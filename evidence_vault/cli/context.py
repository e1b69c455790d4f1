"""Global options shared by every command (vault, key, passphrase), resolved lazily."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import typer

from ..errors import EvidenceVaultError, PassphraseError, UsageError

if TYPE_CHECKING:  # imported where used: `--help` and `--version` must not pay for cryptography
    from ..keystore import Identity, KeyStore
    from ..signing import Signer
    from ..vault import Vault

TextValue = TypeVar("TextValue", str, "str | None", "list[str] | None")


NO_PASSPHRASE_EOF = (
    "no passphrase given (end of input): set EVIDENCE_VAULT_PASSPHRASE or use --passphrase-file"
)


@dataclass
class State:
    vault: str | None = None
    key: str | None = None
    passphrase_file: Path | None = None
    _unlocking: _Unlocking | None = field(default=None, init=False, repr=False)

    def keystore(self) -> KeyStore:
        from ..keystore import KeyStore

        return KeyStore()

    def vault_root(self) -> Path:
        """The vault's directory (found without loading the vault code)."""
        from ..locate import find_vault

        return find_vault(self.vault)

    def open_vault(self, root: Path | None = None) -> Vault:
        from ..vault import Vault

        return Vault(root if root is not None else self.vault_root())

    def passphrase(self, what: str, *, confirm: bool = False) -> bytes | None:
        """From --passphrase-file, else EVIDENCE_VAULT_PASSPHRASE, else a prompt on a terminal."""
        if self.passphrase_file is not None:
            # A passphrase is bytes to the key's KDF: taken as they are (UTF-8 text gives the same bytes
            # as typing it at the prompt), so that bytes that are not UTF-8 unlock rather than crash.
            try:
                data = self.passphrase_file.read_bytes()
            except OSError as exc:
                raise UsageError(
                    f"cannot read passphrase file: {exc.strerror}", path=self.passphrase_file
                ) from None
            return data.rstrip(b"\r\n") or None
        env = os.environ.get("EVIDENCE_VAULT_PASSPHRASE")
        if env:
            return env.encode("utf-8", "surrogateescape")  # the variable's bytes as they were given
        if sys.stdin.isatty():
            # Only the first letter is raised: str.capitalize() would lowercase the key's fingerprint.
            text = what[:1].upper() + what[1:]
            try:
                value: str = typer.prompt(text, hide_input=True, confirmation_prompt=confirm)
            except typer.Abort as exc:
                # click turns both end of input (Ctrl-D) and Ctrl-C at a prompt into "Aborted!" and exit 1
                # (1 means FAIL here); what it caught is the exception's context.
                if isinstance(exc.__context__, EOFError):
                    raise PassphraseError(NO_PASSPHRASE_EOF) from None
                if isinstance(exc.__context__, KeyboardInterrupt):
                    raise KeyboardInterrupt from None  # "interrupted", exit 130, as anywhere else
                raise
            return value.encode() or None
        return None

    def begin_unlock(self) -> None:
        """Start unlocking the signing key in a background thread, if that needs no prompt.

        The key's bcrypt KDF (about 0.15 s) releases the GIL, so it runs on another core while the
        command imports and opens the vault. :meth:`signer` waits for it and raises what it raised.
        A prompt is never shown from the thread: when one may be needed (no passphrase file or
        variable, stdin a terminal) the key is unlocked when :meth:`signer` is called, as before.
        """
        if self._unlocking is not None:
            return
        prompt_possible = self.passphrase_file is None and not os.environ.get("EVIDENCE_VAULT_PASSPHRASE")
        if prompt_possible and sys.stdin.isatty():
            return
        try:  # reading the key and its passphrase here, in this thread, lets the KDF start at once
            store = self.keystore()
            unlock = store.unlocker(self._identity(store), self.passphrase)
        except EvidenceVaultError as exc:  # raised by signer(), where it would have been raised before
            self._unlocking = _Unlocking(None, exc)
            return
        self._unlocking = _Unlocking(unlock)

    @property
    def unlocking(self) -> bool:
        """Is the key being unlocked in the background (:meth:`begin_unlock` started a thread)?"""
        return self._unlocking is not None and self._unlocking.running

    def signer(self) -> Signer:
        """The signing key, unlocked (by :meth:`begin_unlock`'s thread if it was started)."""
        if self._unlocking is not None:
            return self._unlocking.result()
        return self._unlock_now()

    def _unlock_now(self) -> Signer:
        store = self.keystore()
        return store.signer(self._identity(store), self.passphrase)

    def signer_and_name(self) -> tuple[Signer, str]:
        store = self.keystore()
        ident = self._identity(store)
        return store.signer(ident, self.passphrase), ident.name

    def _identity(self, store: KeyStore) -> Identity:
        return store.find(self.key or os.environ.get("EVIDENCE_VAULT_KEY") or None)

    def require_passphrase(self, what: str) -> bytes:
        value = self.passphrase(what, confirm=True)
        if not value:
            raise PassphraseError(
                "a passphrase is needed (prompt, EVIDENCE_VAULT_PASSPHRASE or --passphrase-file); "
                "use --no-passphrase for an unencrypted key"
            )
        return value


class _Unlocking:
    """One key unlock running in a thread (or an error found before it could start).

    Not a daemon thread: a command that fails before it needs the key waits for the KDF (at most about
    0.15 s) at exit, instead of the interpreter ending a thread that is inside the bcrypt library.
    """

    def __init__(self, unlock: Callable[[], Signer] | None, error: BaseException | None = None) -> None:
        self._signer: Signer | None = None
        self._error = error
        self._thread: threading.Thread | None = None
        if unlock is not None:
            self._thread = threading.Thread(target=self._run, args=(unlock,), name="unlock-key")
            self._thread.start()

    def _run(self, unlock: Callable[[], Signer]) -> None:
        try:
            self._signer = unlock()
        except BaseException as exc:  # re-raised in the caller's thread by result()
            self._error = exc

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def result(self) -> Signer:
        """The unlocked signer, once the thread is done; raises what the unlock raised."""
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._signer is not None
        return self._signer


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    if not isinstance(obj, State):
        obj = State()
        ctx.find_root().obj = obj
    return obj


def read_files(paths: list[Path] | None, option: str) -> list[bytes]:
    """The bytes of each file named on the command line with ``option`` (e.g. --tsa-ca PEMs); a usage
    error naming the file and the option if one is unreadable."""
    out = []
    for p in paths or []:
        try:
            out.append(p.read_bytes())
        except OSError as exc:
            raise UsageError(f"{option}: cannot read: {exc.strerror}", path=p) from None
    return out


def read_tsa_roots(paths: list[Path] | None) -> list[bytes]:
    """:func:`read_files` for --tsa-ca: a usage error naming the file if it holds no certificate (PEM or
    DER), rather than every token then failing as if the token were at fault."""
    blobs = read_files(paths, "--tsa-ca")
    if not blobs:
        return blobs
    from ..timestamps.rfc3161 import split_pem_or_der_certs  # only when there are roots to read

    for p, blob in zip(paths or [], blobs, strict=True):
        try:
            split_pem_or_der_certs(blob)
        except EvidenceVaultError as exc:
            raise UsageError(f"--tsa-ca: {exc.message}", path=p) from None
    return blobs


def refuse_inside_vault(path: Path, root: Path, option: str) -> None:
    """A usage error (exit 2, nothing written) if writing to ``path`` could write into the vault at
    ``root``: the path, once symbolic links are followed, is the vault or lies inside it, or it is an
    existing file that is the vault's log or ``vault.json`` under another name (a hard link). Only the
    vault's own code writes there; a report, proof, bag or key backup written over ``log.jsonl`` would
    destroy the custody log. ``option`` names what gave the path (``--out``)."""
    vault = Path(os.path.realpath(root))
    target = Path(os.path.realpath(path))  # never raises (a symlink loop stays unresolved)
    if target == vault or target.is_relative_to(vault):
        raise UsageError(
            f"{option} is inside the vault (only the vault itself writes there: a file written there could "
            "overwrite its log or config): choose a path outside it",
            path=path,
        )
    try:
        st = target.stat()
    except OSError:
        return  # nothing there yet (or unreadable: writing it fails with its own error)
    for name in ("log.jsonl", "vault.json"):
        try:
            own = (vault / name).stat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino):
            raise UsageError(
                f"{option} is the vault's {name} under another name (a hard link): choose another path",
                path=path,
            )


def signing_state(ctx: typer.Context) -> State:
    """:func:`state` for a command that signs: its key starts unlocking now (:meth:`State.begin_unlock`)."""
    st = state(ctx)
    st.begin_unlock()
    return st


def utf8_text(ctx: typer.Context, param: typer.CallbackParam, value: TextValue) -> TextValue:
    """Option callback: free text that ends up in a signed event must be valid UTF-8 (undecodable bytes
    on the command line cannot be signed): a usage error naming the option, before anything is written."""
    texts = [] if value is None else [value] if isinstance(value, str) else value
    for text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            name = param.opts[0] if param.opts else param.name
            raise UsageError(f"{name}: not valid UTF-8 text (undecodable bytes); give it as UTF-8") from None
    return value


def nonblank_text(ctx: typer.Context, param: typer.CallbackParam, value: TextValue) -> TextValue:
    """:func:`utf8_text`, and not empty or blank: an empty tag, purpose or reason records nothing."""
    return _nonblank(ctx, param, value, "give some text (nothing recorded)")


def nonblank_filter(ctx: typer.Context, param: typer.CallbackParam, value: TextValue) -> TextValue:
    """:func:`nonblank_text` for an option that selects (``ls --tag``, ``export --tag``): no tag can be
    empty (``add`` refuses one), so an empty value is a mistake (an unset shell variable), not a filter
    that matches nothing."""
    return _nonblank(ctx, param, value, "give a tag (no item can have an empty one)")


def _nonblank(ctx: typer.Context, param: typer.CallbackParam, value: TextValue, hint: str) -> TextValue:
    value = utf8_text(ctx, param, value)
    texts = [] if value is None else [value] if isinstance(value, str) else value
    if any(not text.strip() for text in texts):
        name = param.opts[0] if param.opts else param.name
        raise UsageError(f"{name}: empty; {hint}")
    return value


def fingerprints(ctx: typer.Context, param: typer.CallbackParam, value: list[str] | None) -> list[str] | None:
    """Option callback for --trust: each value must be a key fingerprint (``SHA256:`` and ``=`` padding
    optional, as ``ssh-keygen -l`` and base64 tools print it), else a usage error (exit 2), not a failed
    verification (exit 1). Returns them spelled as ``key list`` prints them."""
    from ..signing import normalize_fingerprint

    out = []
    for fp in value or []:
        norm = normalize_fingerprint(fp)
        if norm is None:
            name = param.opts[0] if param.opts else param.name
            raise UsageError(
                f"{name} {fp!r} is not a key fingerprint: SHA256: and 43 base64 characters, as "
                "`evidence-vault key list` and `ssh-keygen -l` print it"
            )
        out.append(norm)
    return out if value is not None else None
