"""Who may sign what, at each point of the log: the key-authorization state machine.

The genesis event names the first key (role ``admin``). Only admins add or revoke keys; any
authorized key signs other events; a key revoked at seq N signs nothing after N. Verification and
appending use this one class, so both apply the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from . import events as ev
from .errors import EvidenceVaultError, IntegrityError, NotAuthorizedError
from .signing import PublicKey, verify_signature

ROLES = ("admin", "custodian")


@dataclass(frozen=True)
class KeyGrant:
    fingerprint: str
    public_key: str
    role: str
    name: str
    since_seq: int
    since_time: str
    added_by: str | None
    revoked_seq: int | None = None
    revoked_time: str | None = None
    revoked_reason: str | None = None
    rotates: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KeyGrant:
        return cls(**d)


@dataclass
class Authority:
    """Keys authorized so far, built by feeding events in log order."""

    keys: dict[str, KeyGrant] = field(default_factory=dict)
    genesis: str | None = None
    vault_id: str | None = None
    _parsed: dict[str, PublicKey] = field(default_factory=dict, repr=False)

    def public_key(self, fingerprint: str) -> PublicKey:
        pk = self._parsed.get(fingerprint)
        if pk is None:
            pk = PublicKey.from_openssh(self.keys[fingerprint].public_key)
            self._parsed[fingerprint] = pk
        return pk

    def check(self, event: ev.Event) -> None:
        """Raise ``NotAuthorizedError`` if ``event.actor`` may not sign ``event`` at this point."""
        if event.seq == 0:
            if event.type != ev.VAULT_CREATED:
                raise NotAuthorizedError("the first event must be vault.created")
            key = key_of(event.data)
            if key.fingerprint != event.actor:
                raise NotAuthorizedError("genesis is not signed by the key it names")
            return
        if event.type == ev.VAULT_CREATED:
            raise NotAuthorizedError("vault.created may only be the first event")
        grant = self.keys.get(event.actor)
        if grant is None:
            raise NotAuthorizedError(f"key {event.actor} was never authorized in this vault")
        if grant.revoked_seq is not None:
            raise NotAuthorizedError(f"key {event.actor} was revoked at seq {grant.revoked_seq}")
        if grant.role == "admin" or event.type not in (ev.KEY_ADDED, ev.KEY_REVOKED):
            return
        data = event.data
        if (
            event.type == ev.KEY_ADDED
            and data.get("rotates") == event.actor
            and data.get("role") == grant.role
        ):
            return  # a custodian rotating their own key
        target = data.get("fingerprint")
        if event.type == ev.KEY_REVOKED and (target == event.actor or grant.rotates == target):
            return  # revoking oneself, or the key one was rotated from
        raise NotAuthorizedError(f"key {event.actor} ({grant.role}) may not add or revoke keys")

    def succeeds(self, actor: str, fingerprint: str) -> bool:
        """Is ``actor`` the key ``fingerprint`` itself, or a key it was rotated to (``key rotate``: the
        old key signed the ``key.added`` naming it in ``rotates``), directly or in a chain?"""
        seen: set[str] = set()
        while actor not in seen:
            if actor == fingerprint:
                return True
            seen.add(actor)
            grant = self.keys.get(actor)
            if grant is None or grant.rotates is None or grant.added_by != grant.rotates:
                return False
            actor = grant.rotates
        return False

    def check_signature(self, event: ev.Event) -> None:
        """Raise ``IntegrityError`` unless ``event`` is signed by its signer's key (the genesis key for
        seq 0): one Ed25519 check, for single lines (``verify`` checks a log's signatures in batches)."""
        try:
            key = PublicKey.from_openssh(key_of(event.data).public_key) if event.seq == 0 else None
            verify_signature(event.signature, event.signing_bytes(), key or self.public_key(event.actor))
        except KeyError:
            raise IntegrityError(f"key {event.actor} was never authorized in this vault") from None
        except EvidenceVaultError as exc:
            raise IntegrityError(f"signature check failed: {exc.message}") from None

    def apply(self, event: ev.Event) -> None:
        """Update the state after an accepted event."""
        if event.type == ev.VAULT_CREATED:
            key = key_of(event.data)
            self.genesis = key.fingerprint
            self.vault_id = str(event.data.get("vault_id"))
            self._grant(key, "admin", event, None)
        elif event.type == ev.KEY_ADDED:
            role = str(event.data.get("role", "custodian"))
            if role not in ROLES:
                raise IntegrityError(f"unknown role {role!r}")
            rotates = event.data.get("rotates")
            self._grant(
                key_of(event.data), role, event, event.actor, rotates if isinstance(rotates, str) else None
            )
        elif event.type == ev.KEY_REVOKED:
            fp = str(event.data.get("fingerprint"))
            grant = self.keys.get(fp)
            if grant is None:
                raise IntegrityError(f"revokes unknown key {fp}")
            if grant.revoked_seq is None:
                self.keys[fp] = replace(
                    grant,
                    revoked_seq=event.seq,
                    revoked_time=event.time,
                    revoked_reason=str(event.data.get("reason", "")),
                )

    def _grant(
        self, key: NamedKey, role: str, event: ev.Event, by: str | None, rotates: str | None = None
    ) -> None:
        if key.fingerprint in self.keys:
            raise IntegrityError(f"key {key.fingerprint} is already in the vault")
        self.keys[key.fingerprint] = KeyGrant(
            fingerprint=key.fingerprint,
            public_key=key.public_key,
            role=role,
            name=key.name,
            since_seq=event.seq,
            since_time=event.time,
            added_by=by,
            rotates=rotates,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "genesis": self.genesis,
            "vault_id": self.vault_id,
            "keys": [g.to_dict() for g in self.keys.values()],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Authority:
        keys = {k["fingerprint"]: KeyGrant.from_dict(k) for k in d.get("keys", [])}
        return cls(keys=keys, genesis=d.get("genesis"), vault_id=d.get("vault_id"))


@dataclass(frozen=True)
class NamedKey:
    fingerprint: str
    public_key: str
    name: str


def key_of(data: dict[str, Any]) -> NamedKey:
    """The key a ``vault.created`` or ``key.added`` event names, its fingerprint recomputed from the
    public key itself (``IntegrityError`` if they differ)."""
    key = data.get("key")
    if not isinstance(key, dict) or not isinstance(key.get("public_key"), str):
        raise IntegrityError("event does not name a public key")
    pk = PublicKey.from_openssh(key["public_key"])
    if key.get("fingerprint") != pk.fingerprint:
        raise IntegrityError("named fingerprint does not match the public key")
    return NamedKey(pk.fingerprint, pk.openssh(), str(key.get("name", "")))
