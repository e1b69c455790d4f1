"""One exception hierarchy for the whole library.

Every error carries an optional ``path`` (the file it is about) and renders as one line:
``<path>: <message>``. The CLI maps ``exit_code`` to the process exit status.
"""

from __future__ import annotations

from pathlib import Path


class EvidenceVaultError(Exception):
    """Base class: the tool could not do its job (exit 2)."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = str(path) if path is not None else None

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class UsageError(EvidenceVaultError):
    """Bad arguments or an impossible request."""


class VaultNotFoundError(EvidenceVaultError):
    """No vault at the given path or above the working directory."""


class VaultFormatError(EvidenceVaultError):
    """vault.json or another vault file is unreadable or of an unknown version."""


class KeyStoreError(EvidenceVaultError):
    """A private or public key is missing, unreadable or of the wrong kind."""


class PassphraseError(KeyStoreError):
    """The passphrase is missing or wrong."""


class LockError(EvidenceVaultError):
    """The vault is locked by another writer."""


class NotAuthorizedError(EvidenceVaultError):
    """The acting key may not do this at this point of the log."""


class IngestError(EvidenceVaultError):
    """A file could not be ingested (unreadable, changed while read, not a regular file)."""


class MediaError(EvidenceVaultError):
    """Metadata could not be extracted (recorded in the event, never fatal to ingest)."""


class TimestampError(EvidenceVaultError):
    """A timestamp service or proof could not be used."""


class NetworkError(TimestampError):
    """A network service was unreachable or refused (stamping gets queued)."""


class BagError(EvidenceVaultError):
    """A BagIt bag or zip cannot be read or is unsafe to open. Raised as such (exit 2), the tool could not
    check it: not a bag, not a zip file. Its subclasses are verdicts on a zip, which ``verify-bundle``
    reports as findings (FAIL)."""


class UnsafeZipError(BagError):
    """The zip is unsafe to extract (paths outside the target, links, bombs): nothing was extracted."""


class DamagedZipError(BagError):
    """The file is a zip (it starts with a zip signature), but damaged or cut short: it cannot be read."""


class StorageError(EvidenceVaultError):
    """A local file could not be written or read (disk full, permissions, I/O error): the environment
    failed, not the data being checked (exit 2)."""


class IntegrityError(EvidenceVaultError):
    """Raising form of a verification FAIL (exit 1)."""

    exit_code = 1
