"""Private identities and per-machine trust pins, kept under ``EVIDENCE_VAULT_HOME`` (never in a vault).

Layout::

    <home>/identities.json          name, email, created, default flag per fingerprint
    <home>/identities/<id>.key      OpenSSH private key, passphrase-encrypted by default, mode 0600
    <home>/identities/<id>.pub      OpenSSH public key line
    <home>/vaults.json              per vault id: the pinned genesis key and the last log head seen here
    <home>/vaults.json.lock         held while a process changes vaults.json
    <home>/identities.json.lock     held while a process adds an identity
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import regular_files, signing
from .atomic import write_atomic
from .errors import KeyStoreError, PassphraseError, UsageError
from .locking import exclusive_lock

PassphraseSource = Callable[[str], bytes | None]
"""Called with a description of what needs unlocking; returns the passphrase or None."""


def default_home() -> Path:
    env = os.environ.get("EVIDENCE_VAULT_HOME")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg else Path.home() / ".config"
    return base / "evidence-vault"


def _file_id(fingerprint: str) -> str:
    return fingerprint.removeprefix("SHA256:").replace("/", "_").replace("+", "-")


@dataclass(frozen=True)
class Identity:
    """What is known about one private identity (no secret material)."""

    fingerprint: str
    name: str
    email: str | None
    created: str
    default: bool
    encrypted: bool
    public_key: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "name": self.name,
            "email": self.email,
            "created": self.created,
            "default": self.default,
            "encrypted": self.encrypted,
            "public_key": self.public_key,
        }


def utc_now() -> str:
    """Current UTC time as ``2023-12-22T18:03:11.123Z``."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


class KeyStore:
    """The identities of the person at this machine."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = home or default_home()

    # -- index -----------------------------------------------------------------------------------
    def _index_path(self) -> Path:
        return self.home / "identities.json"

    def _load_index(self) -> list[dict[str, Any]]:
        path = self._index_path()
        if not path.exists():
            return []
        try:
            data = json.loads(path.read_text("utf-8"))
            entries = data["identities"]
            if not isinstance(entries, list):
                raise TypeError("identities is not a list")
            return entries
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyStoreError(f"unreadable identity index: {exc}", path=path) from None

    def _save_index(self, entries: list[dict[str, Any]]) -> None:
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        payload = json.dumps({"identities": entries}, indent=2, sort_keys=True).encode() + b"\n"
        write_atomic(self._index_path(), payload, mode=0o600)

    def identities(self) -> list[Identity]:
        out = []
        for n, entry in enumerate(self._load_index()):
            try:
                ident = Identity(**entry)
                if not isinstance(ident.fingerprint, str) or not isinstance(ident.name, str):
                    raise TypeError("fingerprint and name must be strings")
            except TypeError as exc:
                raise KeyStoreError(
                    f"unreadable identity index: entry {n} is not an identity ({exc})",
                    path=self._index_path(),
                ) from None
            out.append(ident)
        return out

    def find(self, fingerprint: str | None = None) -> Identity:
        """The identity with this fingerprint (or unique prefix), else the default one."""
        ids = self.identities()
        if not ids:
            raise KeyStoreError(
                f"no identity under {self.home}: create one with `evidence-vault key new --name NAME`"
            )
        if fingerprint is None:
            for ident in ids:
                if ident.default:
                    return ident
            return ids[0]
        wanted = signing.fingerprint_prefix(fingerprint)
        matches = [i for i in ids if i.fingerprint.startswith(wanted)]
        if len(matches) != 1:
            what = "no identity" if not matches else "several identities"
            raise KeyStoreError(f"{what} match {fingerprint} under {self.home}")
        return matches[0]

    # -- create / load ---------------------------------------------------------------------------
    def add_identity(
        self,
        signer: signing.Signer,
        *,
        name: str,
        email: str | None,
        passphrase: bytes | None,
        make_default: bool = False,
    ) -> Identity:
        """Store a private key (encrypted when a passphrase is given) and register it; it becomes the
        default identity if it is the first one, or with ``make_default``."""
        check_identity_text(name, email)
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Read, changed and saved under a lock: two `key new` at once must not each save over the other.
        with exclusive_lock(self.home / "identities.json.lock"):
            return self._add_identity(signer, name, email, passphrase, make_default)

    def _add_identity(
        self,
        signer: signing.Signer,
        name: str,
        email: str | None,
        passphrase: bytes | None,
        make_default: bool,
    ) -> Identity:
        existing = self.identities()
        fp = signer.fingerprint
        if any(i.fingerprint == fp for i in existing):
            raise KeyStoreError(f"identity {fp} already exists")
        keydir = self.home / "identities"
        keydir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.home, 0o700)
        comment = f"{name} <{email}>" if email else name
        write_atomic(keydir / f"{_file_id(fp)}.key", signing.private_openssh(signer, passphrase), mode=0o600)
        pub = signer.public.openssh(comment)
        write_atomic(keydir / f"{_file_id(fp)}.pub", (pub + "\n").encode(), mode=0o644)
        ident = Identity(
            fingerprint=fp,
            name=name,
            email=email,
            created=utc_now(),
            default=make_default or not existing,
            encrypted=passphrase is not None,
            public_key=signer.public.openssh(),
        )
        if ident.default:  # one default identity
            existing = [replace(i, default=False) for i in existing]
        self._save_index([*(i.to_dict() for i in existing), ident.to_dict()])
        return ident

    def private_key_path(self, fingerprint: str) -> Path:
        return self.home / "identities" / f"{_file_id(fingerprint)}.key"

    def signer(self, ident: Identity, passphrase: PassphraseSource) -> signing.Signer:
        """Unlock the private key of ``ident``."""
        return self.unlocker(ident, passphrase)()

    def unlocker(self, ident: Identity, passphrase: PassphraseSource) -> Callable[[], signing.Signer]:
        """Read the private key of ``ident`` and its passphrase now; return the costly rest (the bcrypt
        KDF, which releases the GIL: another thread may run it)."""
        path = self.private_key_path(ident.fingerprint)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise KeyStoreError(f"cannot read private key: {exc.strerror}", path=path) from None
        secret = _secret_for(
            data,
            path,
            passphrase,
            f"passphrase for {ident.name} ({ident.fingerprint})",
            f"the key {ident.fingerprint} is encrypted: give a passphrase "
            "(prompt, EVIDENCE_VAULT_PASSPHRASE or --passphrase-file)",
        )

        def unlock() -> signing.Signer:
            signer = _load(data, path, secret)
            if signer.fingerprint != ident.fingerprint:
                raise KeyStoreError("private key does not match its registered fingerprint", path=path)
            return signer

        return unlock


def export_private(
    store: KeyStore,
    ident: Identity,
    passphrase: PassphraseSource,
    out: Path,
    *,
    new_passphrase: PassphraseSource | None = None,
) -> None:
    """Back up a private key as a passphrase-protected OpenSSH file (never unencrypted).
    ``new_passphrase`` (default ``passphrase``) gives the backup's: a prompt asks for it twice.
    ``out`` must be a new file in a folder that exists (checked before any passphrase is asked for)."""
    _check_backup_path(out)
    signer = store.signer(ident, passphrase)
    secret = (new_passphrase or passphrase)(f"passphrase to protect the backup of {ident.name}")
    if not secret:
        raise PassphraseError("a backup is always encrypted: give a passphrase")
    _check_backup_path(out)  # again: a prompt may have taken a while
    write_atomic(out, signing.private_openssh(signer, secret), mode=0o600)


def _check_backup_path(out: Path) -> None:
    """Refuse a backup path that is a directory, an existing file, or in a folder that does not exist (as
    ``export --out`` does: a mistyped path, or a disk not mounted, is no place to create folders)."""
    if out.is_dir():
        raise UsageError("is a directory; give the name of a new file for the backup", path=out)
    if os.path.lexists(out):
        raise UsageError("file exists; will not overwrite a key file", path=out)
    if not out.parent.is_dir():
        raise UsageError("destination folder does not exist", path=out.parent)


def check_identity_text(name: str, email: str | None) -> None:
    """Refuse a name or email an identity cannot have: empty, or with a line break or control character
    (either would split the one-line ``.pub`` file)."""
    if not name.strip():
        raise UsageError("an identity needs a non-empty --name")
    for option, value in (("--name", name), ("--email", email or "")):
        if any(ch < " " or ch == "\x7f" for ch in value):
            raise UsageError(f"{option} {value!r}: no line breaks or control characters")


def import_private(
    store: KeyStore,
    path: Path,
    passphrase: PassphraseSource,
    *,
    name: str | None,
    email: str | None,
    new_passphrase: PassphraseSource | None = None,
) -> Identity:
    """Take in an OpenSSH Ed25519 private key (a backup, or ~/.ssh/id_ed25519). ``new_passphrase``
    (default ``passphrase``) protects a key that came unencrypted: a prompt asks for it twice."""
    try:
        data = regular_files.read_bytes(path)
    except OSError as exc:
        raise KeyStoreError(f"cannot read: {exc.strerror}", path=path) from None
    signer, secret = _unlock(
        data, path, passphrase, f"passphrase of {path.name}", "the key file is encrypted: give its passphrase"
    )
    label = name or _comment_of(path) or path.stem
    # Kept encrypted with the same passphrase; an unencrypted source key is stored unencrypted only if
    # no passphrase is available at all.
    return store.add_identity(
        signer, name=label, email=email, passphrase=secret or (new_passphrase or passphrase)("new passphrase")
    )


def _unlock(
    data: bytes, path: Path, passphrase: PassphraseSource, prompt: str, missing: str
) -> tuple[signing.Signer, bytes | None]:
    """Load an OpenSSH private key, asking for its passphrase only if it is encrypted."""
    secret = _secret_for(data, path, passphrase, prompt, missing)
    return _load(data, path, secret), secret


def _secret_for(
    data: bytes, path: Path, passphrase: PassphraseSource, prompt: str, missing: str
) -> bytes | None:
    """The passphrase of an OpenSSH private key, asked for only if it is encrypted."""
    if not signing.is_encrypted_openssh(data):
        return None
    secret = passphrase(prompt)
    if not secret:
        raise PassphraseError(missing, path=path)
    return secret


def _load(data: bytes, path: Path, secret: bytes | None) -> signing.Signer:
    try:
        return signing.load_private_openssh(data, secret)
    except KeyStoreError as exc:
        raise type(exc)(exc.message, path=path) from None


def _comment_of(path: Path) -> str | None:
    pub = path.with_name(path.name + ".pub")
    try:
        parts = regular_files.read_text(pub).split(maxsplit=2)
    except (OSError, UnicodeDecodeError):  # a comment is only a default name: no .pub, no comment
        return None
    return parts[2].strip() if len(parts) > 2 else None


def fingerprint_to_b64(fingerprint: str) -> bytes:
    body = fingerprint.removeprefix("SHA256:")
    return base64.b64decode(body + "=" * (-len(body) % 4))


class TrustStore:
    """Per-machine pins: which genesis key a vault must have, and the last log head seen here.

    Lives beside the identities, outside every vault, so a person with write access to a vault
    cannot change what this machine expects of it.
    """

    def __init__(self, home: Path | None = None) -> None:
        self.path = (home or default_home()) / "vaults.json"

    def _load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text("utf-8"))
            if not isinstance(data, dict):
                raise TypeError("not an object")
            return data
        except (OSError, ValueError, TypeError) as exc:
            raise KeyStoreError(f"unreadable trust pins: {exc}", path=self.path) from None

    def get(self, vault_id: str) -> dict[str, Any] | None:
        entry = self._load().get(vault_id)
        return entry if isinstance(entry, dict) else None

    def pin(self, vault_id: str, genesis: str, path: Path) -> None:
        with self._editing() as data:
            entry = data.get(vault_id) or {}
            entry.update({"genesis": genesis, "path": str(path)})
            data[vault_id] = entry

    def pin_tsa_root(self, vault_id: str, sha256_hex: str) -> None:
        """Remember a TSA root given on this machine (``stamp --tsa-ca``) by the SHA-256 of its file:
        ``verify`` trusts the vault's copy of a root only if it is pinned here."""
        with self._editing() as data:
            entry = data.get(vault_id)
            entry = entry if isinstance(entry, dict) else {}
            roots = entry.get("tsa_roots")
            roots = [r for r in roots if isinstance(r, str)] if isinstance(roots, list) else []
            if sha256_hex not in roots:
                entry["tsa_roots"] = [*roots, sha256_hex]
                data[vault_id] = entry

    def tsa_roots(self, vault_id: str) -> frozenset[str]:
        """The SHA-256 of each TSA root pinned on this machine for ``vault_id``."""
        try:
            roots = (self.get(vault_id) or {}).get("tsa_roots")
        except KeyStoreError:
            return frozenset()
        return frozenset(r for r in roots if isinstance(r, str)) if isinstance(roots, list) else frozenset()

    def record_head(self, vault_id: str, seq: int, line_hash: str) -> None:
        """Remember the newest log head this machine has seen (detects a truncated log later)."""
        with self._editing() as data:
            entry = data.get(vault_id)
            if not isinstance(entry, dict):
                return
            head = entry.get("head")
            # A damaged head (hand-edited) is ignored by verify and the append guard too: replace it.
            if not isinstance(head, dict) or type(head.get("seq")) is not int or head["seq"] < seq:
                entry["head"] = {"seq": seq, "hash": line_hash}

    @contextmanager
    def _editing(self) -> Iterator[dict[str, Any]]:
        """The pins to change in place, saved (atomically) if changed. Read, change and save happen under
        a lock beside the file: two processes of this machine (an ``add`` recording its head, an ``init``
        pinning another vault) must not each save over what the other has just saved."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with exclusive_lock(self.path.with_name("vaults.json.lock")):
            data = self._load()
            before = json.dumps(data, sort_keys=True)
            yield data
            if json.dumps(data, sort_keys=True) != before:
                text = json.dumps(data, indent=2, sort_keys=True) + "\n"
                write_atomic(self.path, text.encode(), mode=0o600)
