"""Custody workflows: keys in the log, transfers and acceptance, notes, access, working copies, timeline.

Every function appends signed events through :meth:`Vault.append`, which checks the authorization and
custody rules under the writer lock before anything is written: a forbidden action records nothing.
"""

from __future__ import annotations

import bisect
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import events as ev
from .anchors_verify import _iso
from .custody_log import Head
from .errors import EvidenceVaultError, NotAuthorizedError, UsageError, VaultFormatError
from .events import Event
from .hashing import hash_file
from .keystore import KeyStore, check_identity_text
from .signing import PublicKey, Signer, fingerprint_prefix
from .vault import AddOptions, AddResult, Vault, instead_of_revoked

ACTIONS = ("redact", "transcode", "crop", "extract")


# -- keys ------------------------------------------------------------------------------------------


def key_add(vault: Vault, signer: Signer, public_line: str, *, role: str, name: str | None = None) -> Event:
    """Authorize a public key (admins only) from an OpenSSH one-line public key."""
    if role not in ("admin", "custodian"):
        raise UsageError(f"unknown role {role!r}: use admin or custodian")
    pk = PublicKey.from_openssh(public_line)
    parts = public_line.strip().split(maxsplit=2)
    label = name or (parts[2] if len(parts) > 2 else pk.fingerprint)
    data = {"key": {"fingerprint": pk.fingerprint, "public_key": pk.openssh(), "name": label}, "role": role}
    entries = [(ev.KEY_ADDED, data)]

    def build(head: Head | None) -> list[tuple[str, dict[str, Any]]]:
        grant = vault.authority().keys.get(pk.fingerprint)
        if grant is not None:  # a key enters the log once (verify: log.bad-key-event)
            state = f"revoked at seq {grant.revoked_seq}" if grant.revoked_seq is not None else "authorized"
            raise UsageError(
                f"key {pk.fingerprint} is already in this vault ({grant.role}, added at seq "
                f"{grant.since_seq}, {state}): nothing recorded",
                path=vault.root,
            )
        vault.check_events(signer, head, entries)
        return entries

    (event,) = vault.append(signer, entries, build=build)
    vault.write_public_key(pk.fingerprint, pk.openssh(label))
    return event


def key_revoke(vault: Vault, signer: Signer, fingerprint: str, *, reason: str) -> Event:
    fp = fingerprint_prefix(fingerprint)
    if fp not in vault.authority().keys:
        raise UsageError(f"key {fp} is not in this vault")
    entries = [(ev.KEY_REVOKED, {"fingerprint": fp, "reason": reason})]

    def build(head: Head | None) -> list[tuple[str, dict[str, Any]]]:
        # Under the writer lock, so two admins revoking each other at once cannot both pass.
        vault.check_events(signer, head, entries)
        keys = vault.authority().keys
        revoked = keys[fp].revoked_seq
        if revoked is not None:  # a second key.revoked would change nothing but say so
            raise UsageError(
                f"key {fp} was already revoked at seq {revoked}: nothing recorded", path=vault.root
            )
        active = {k for k, g in keys.items() if g.role == "admin" and g.revoked_seq is None}
        if active == {fp}:
            raise NotAuthorizedError(
                f"{fp} is the last admin key of this vault: revoking it would leave nobody who can add or "
                "revoke keys; add another admin key first (or `key rotate` to replace it): nothing recorded",
                path=vault.root,
            )
        return entries

    (event,) = vault.append(signer, entries, build=build)
    return event


def key_rotate(
    vault: Vault, old: Signer, store: KeyStore, passphrase: bytes | None, *, name: str, email: str | None
) -> tuple[str, list[Event]]:
    """New key, old key revoked, in one step: the old key authorizes the new, the new revokes the old.
    The new key becomes the default identity of ``store`` if the old one was."""
    from . import signing

    auth = vault.authority()
    grant = auth.keys.get(old.fingerprint)
    if grant is None or grant.revoked_seq is not None:
        raise NotAuthorizedError(
            f"key {old.fingerprint} is not an active key of this vault"
            + instead_of_revoked(auth, old.fingerprint, store)
        )
    try:
        was_default = store.find().fingerprint == old.fingerprint
    except EvidenceVaultError:  # not one of this store's identities
        was_default = False
    check_identity_text(name, email)  # before the log names the new key: add_identity would refuse it
    new = signing.generate()
    data = {
        "key": {"fingerprint": new.fingerprint, "public_key": new.public.openssh(), "name": name},
        "role": grant.role,
        "rotates": old.fingerprint,
    }
    first = vault.append(old, [(ev.KEY_ADDED, data)])
    # Store the new private key only once the log names it.
    store.add_identity(new, name=name, email=email, passphrase=passphrase, make_default=was_default)
    reason = f"rotated to {new.fingerprint}"
    try:
        second = vault.append(new, [(ev.KEY_REVOKED, {"fingerprint": old.fingerprint, "reason": reason})])
    except EvidenceVaultError as exc:  # half done: say how to finish, not to rotate again (a third key)
        exc.message += (
            f"; the new key {new.fingerprint} is authorized (seq {first[-1].seq}) and stored, but the old "
            f"key is not revoked yet: finish with `evidence-vault --key {new.fingerprint} key revoke "
            f"{old.fingerprint} --reason '{reason}'`"
        )
        raise
    vault.write_public_key(new.fingerprint, new.public.openssh(name))
    return new.fingerprint, [*first, *second]


# -- custody ---------------------------------------------------------------------------------------


def transfer(
    vault: Vault, signer: Signer, items: Sequence[str], to: str, *, reason: str | None
) -> tuple[str, list[Event]]:
    """Hand items over to another key; they stay pending until that key accepts."""
    to_fp = _full_fp(vault, to)
    tid = str(uuid.uuid4())
    committed, openings = vault.put_openings({"reason": reason})
    entries = []
    for item in dict.fromkeys(items):
        data: dict[str, Any] = {"transfer_id": tid, "item": item, "to": to_fp}
        if openings:
            data.update(committed=committed, openings=openings)
        entries.append((ev.CUSTODY_TRANSFERRED, data))
    return tid, _append(vault, signer, entries, openings)


def accept(
    vault: Vault, signer: Signer, transfer_id: str | None, *, all_pending: bool = False
) -> list[Event]:
    """Countersign pending transfers addressed to ``signer`` (one id or prefix, or all)."""
    if not all_pending and not transfer_id:
        raise UsageError("give a TRANSFER-ID or --all")
    auth = vault.authority()
    pending = [
        p
        for p in vault.index.pending_transfers(transfer_id=None if all_pending else transfer_id)
        # addressed to this key, or to a key it was rotated from (`key rotate`)
        if transfer_id or auth.succeeds(signer.fingerprint, p.to)
    ]
    if not pending:
        raise UsageError(
            "no pending transfer " + (f"{transfer_id}" if transfer_id else f"to {signer.fingerprint}")
        )
    ids = {p.transfer_id for p in pending}
    if transfer_id and len(ids) > 1:
        raise UsageError(f"transfer id prefix {transfer_id} is ambiguous")
    entries = [(ev.CUSTODY_ACCEPTED, {"transfer_id": p.transfer_id, "item": p.item}) for p in pending]
    return vault.append(signer, entries)


def annotate(vault: Vault, signer: Signer, item: str, *, note: str | None, tags: Sequence[str]) -> Event:
    if not note and not tags:
        raise UsageError("give --note and/or --tag")
    committed, openings = vault.put_openings({"note": note})
    data: dict[str, Any] = {"item": item, "tags": sorted(set(tags))}
    if openings:
        data.update(committed=committed, openings=openings)
    (event,) = _append(vault, signer, [(ev.ITEM_ANNOTATED, data)], openings)
    return event


def access(vault: Vault, signer: Signer, item: str, *, purpose: str, kind: str = "viewed") -> Event:
    committed, openings = vault.put_openings({"purpose": purpose})
    data: dict[str, Any] = {"item": item, "access": kind}
    if openings:
        data.update(committed=committed, openings=openings)
    (event,) = _append(vault, signer, [(ev.ITEM_ACCESSED, data)], openings)
    return event


def open_copy(vault: Vault, signer: Signer, item: str, *, purpose: str) -> Path:
    """A read-only working copy in a fresh temporary directory, recorded as an access.

    The copy is made first and the access recorded after it: an original that cannot be copied (missing
    from the store, unreadable) records nothing, and a refused append leaves no copy behind."""
    described = vault.index.item(item)
    if described is None:
        raise UsageError(f"no item {item} in this vault")
    source = vault.objects.path(item.removeprefix("sha256:"))
    directory = Path(tempfile.mkdtemp(prefix="evidence-vault-"))
    name = os.path.basename(described.name or item[7:19]) or item[7:19]
    target = directory / name
    try:
        try:
            shutil.copyfile(source, target)
        except FileNotFoundError:
            if os.path.lexists(source):
                raise
            raise VaultFormatError(
                f"the original of item {item} is missing from the object store (`evidence-vault verify` "
                "reports it as object.missing): nothing opened, nothing recorded",
                path=source,
            ) from None
        os.chmod(target, stat.S_IRUSR | stat.S_IRGRP)
        access(vault, signer, item, purpose=purpose, kind="opened")
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return target


def derive(
    vault: Vault,
    signer: Signer,
    original: str,
    derived_file: Path,
    *,
    action: str,
    tool: str,
    note: str | None,
) -> tuple[str, list[Event]]:
    """Ingest a working copy linked to its original (Berkeley Protocol: original vs working copy).

    The link is the ``derived_from`` of the copy's ingest event, so a file already in the vault is
    refused (``UsageError``), unless it is already this original's working copy: then nothing is
    recorded and no events are returned (or only the ``item.derived`` event an interrupted derive did
    not write)."""
    if action not in ACTIONS:
        raise UsageError(f"unknown action {action!r}: use one of {', '.join(ACTIONS)}")
    if vault.in_log(original) is None:
        raise NotAuthorizedError(f"original {original} is not in the vault: nothing recorded")
    derived_id = hash_file(derived_file).id
    if derived_id == original:
        raise UsageError("the working copy is byte-identical to its original", path=derived_file)
    events: list[Event] = []
    if vault.in_log(derived_id) is not None:
        recorded = vault.events_for(derived_id)
        ingest = next(
            (e for e in recorded if e.type == ev.ITEM_INGESTED and e.data.get("item") == derived_id), None
        )
        linked_to = ingest.data.get("derived_from") if ingest is not None else None
        if linked_to != original:
            what = f"as a working copy of {linked_to}" if linked_to else "as an item of its own"
            raise UsageError(
                f"already in the vault {what} ({derived_id}): only a file `derive` ingests can be "
                "linked to an original; nothing recorded",
                path=derived_file,
            )
        if any(
            e.type == ev.ITEM_DERIVED
            and e.data.get("original") == original
            and e.data.get("derived") == derived_id
            for e in recorded
        ):
            return derived_id, []  # already this original's working copy: nothing to record
    else:
        results: list[AddResult] = vault.add(
            [str(derived_file)], lambda: signer, AddOptions(derived_from=original, follow_symlinks=True)
        )
        bad = [r for r in results if r.status == "failed"]
        if bad:
            raise UsageError(bad[0].message or "could not ingest the working copy", path=derived_file)
    committed, openings = vault.put_openings({"note": note})
    data: dict[str, Any] = {"original": original, "derived": derived_id, "action": action, "tool": tool}
    if openings:
        data.update(committed=committed, openings=openings)
    events += _append(vault, signer, [(ev.ITEM_DERIVED, data)], openings)
    return derived_id, events


def _append(
    vault: Vault, signer: Signer, entries: list[tuple[str, dict[str, Any]]], openings: str | None
) -> list[Event]:
    """Append; if refused, remove the openings object written for it (no orphan left behind)."""
    try:
        return vault.append(signer, entries)
    except BaseException:
        if openings:
            vault.objects.discard(openings.removeprefix("sha256:"))
        raise


def _full_fp(vault: Vault, fp: str) -> str:
    want = fingerprint_prefix(fp)
    matches = [k for k in vault.authority().keys if k.startswith(want)]
    if not matches:
        raise UsageError(
            f"no key of this vault matches {fp}: authorize it first with `evidence-vault key add FILE.pub` "
            "(an admin key signs that); nothing recorded"
        )
    if len(matches) > 1:
        raise UsageError(
            f"more than one key of this vault matches {fp}: give more of the fingerprint; nothing recorded"
        )
    return matches[0]


# -- reading ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    seq: int
    time: str
    type: str
    actor: str
    actor_name: str
    summary: str
    proof: str  # how this point in time is proven

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def anchor_status(vault: Vault, *, tsa_roots: Sequence[bytes] = ()) -> list[tuple[int, float | None, str]]:
    """Per checkpoint size: (size, earliest proven time or None, description), offline, stating only
    the times ``verify`` would (see :func:`~evidence_vault.anchors_verify.checkpoint_times`)."""
    from .anchors_verify import checkpoint_times

    out: list[tuple[int, float | None, str]] = []
    for size, t, proof, status in checkpoint_times(vault, tsa_roots=tsa_roots):
        if t is None:
            out.append((size, None, f"{status} (checkpoint {size})"))
        else:
            out.append((size, t, f"existed by {_iso(t)} ({_how(proof)}, checkpoint {size})"))
    return out


def _how(proof: str) -> str:
    if proof.startswith("bitcoin block "):
        return "Bitcoin block " + proof.removeprefix("bitcoin block ")
    return f"RFC 3161 token of {proof.removeprefix('rfc3161 ')}, genTime"


def timeline(vault: Vault, item: str, *, tsa_roots: Sequence[bytes] = ()) -> Iterator[TimelineEntry]:
    """Every event about the item (and its working copies' links), in order, with proof status: the
    earliest time a checkpoint covering the event is proven to have existed, as ``verify`` states it
    (``tsa_roots``: the user's own TSA roots, as ``verify --tsa-ca``). One entry at a time: memory
    stays flat however many events the item has. The checkpoints are read before the first entry."""
    names = {fp: g.name for fp, g in vault.authority().keys.items()}
    anchors = anchor_status(vault, tsa_roots=tsa_roots)
    sizes = [a[0] for a in anchors]
    # What proves an event depends only on which checkpoints cover it: the first one past its seq.
    proofs = [_proof_of(anchors[first:]) for first in range(len(anchors) + 1)]
    return _timeline_entries(vault.iter_events_for(item), sizes, proofs, names)


def _proof_of(covering: list[tuple[int, float | None, str]]) -> str:
    """The earliest proven time among the checkpoints covering an event, else the latest of them."""
    proven = [a for a in covering if a[1] is not None]
    if proven:
        return min(proven, key=lambda a: (a[1], a[0]))[2]
    return covering[-1][2] if covering else "not yet in a checkpoint"


def _timeline_entries(
    events: Iterator[Event], sizes: list[int], proofs: list[str], names: dict[str, str]
) -> Iterator[TimelineEntry]:
    for e in events:
        actor_name = names.get(e.actor, "?")
        proof = proofs[bisect.bisect_right(sizes, e.seq)]
        yield TimelineEntry(e.seq, e.time, e.type, e.actor, actor_name, _summary(e, names), proof)


def _summary(e: Event, names: dict[str, str]) -> str:
    d = e.data
    if e.type == ev.ITEM_INGESTED:
        extra = f" as a working copy of {str(d['derived_from'])[7:19]}" if d.get("derived_from") else ""
        return f"ingested ({d.get('media_type')}, {d.get('size')} bytes){extra}"
    if e.type == ev.CUSTODY_TRANSFERRED:
        to = str(d.get("to"))
        return f"handed over to {names.get(to, '?')} ({to}), transfer {str(d.get('transfer_id'))[:8]}"
    if e.type == ev.CUSTODY_ACCEPTED:
        return f"custody accepted, transfer {str(d.get('transfer_id'))[:8]}"
    if e.type == ev.ITEM_ANNOTATED:
        return "annotated" + (f", tags {', '.join(d.get('tags', []))}" if d.get("tags") else "")
    if e.type == ev.ITEM_ACCESSED:
        return f"original {d.get('access', 'accessed')}"
    if e.type == ev.ITEM_DERIVED:
        copy, original = str(d.get("derived"))[7:19], str(d.get("original"))[7:19]
        return f"working copy {copy} made from {original} ({d.get('action')}, {d.get('tool')})"
    if e.type == ev.ITEM_EXPORTED:
        return f"exported (bag {str(d.get('export_id', ''))[:8]})"
    return e.type


def find(vault: Vault, paths: Sequence[Path]) -> list[dict[str, Any]]:
    """For files received from elsewhere: is each in the vault (exact hash), and its item id."""
    out: list[dict[str, Any]] = []
    for p in paths:
        try:
            digest = hash_file(p)
        except OSError as exc:
            out.append({"path": str(p), "error": exc.strerror, "in_vault": None, "id": None})
            continue
        item = vault.index.item(digest.id)
        out.append(
            {
                "path": str(p),
                "id": digest.id,
                "in_vault": item is not None,
                "name": item.name if item else None,
            }
        )
    return out
