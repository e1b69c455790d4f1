"""Custody rules: who holds each item, which transfers are pending, what each event may refer to.

Shared by appending (refuse before writing) and verification (FAIL when written by hand):

* ``item.ingested`` starts custody with the signer (a working copy names its original in
  ``derived_from``, which must exist);
* ``custody.transferred`` must be signed by the current holder (or the key it was rotated to) or an
  admin, name an authorized key in ``to``, and the item must not already be in a transfer pending to a
  key that can still accept it (a transfer to a key revoked since is superseded by the new one);
* ``custody.accepted`` must be signed by the key the transfer named (or the key it was rotated to);
  custody then moves;
* ``item.annotated`` / ``item.accessed`` / ``item.exported`` / ``item.derived`` refer to existing items.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from . import events as ev
from .authority import Authority
from .errors import NotAuthorizedError
from .events import Event


@dataclass(frozen=True)
class PendingTransfer:
    transfer_id: str
    item: str
    sender: str
    to: str
    seq: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Custody:
    """Item holders and pending transfers, built by feeding events in log order."""

    holders: MutableMapping[str, str] = field(default_factory=dict)
    pending: dict[tuple[str, str], PendingTransfer] = field(default_factory=dict)  # (transfer_id, item)

    def check(self, event: Event, auth: Authority) -> None:
        """Raise ``NotAuthorizedError`` if ``event`` breaks a custody rule at this point."""
        data = event.data
        t = event.type
        if t == ev.ITEM_INGESTED:
            original = data.get("derived_from")
            if original is not None and original not in self.holders:
                raise NotAuthorizedError(
                    f"working copy names an original {original} that is not in the vault"
                )
        elif t == ev.CUSTODY_TRANSFERRED:
            item = self._existing(data.get("item"))
            to = str(data.get("to"))
            holder = self.holders[item]
            grant = auth.keys.get(event.actor)
            if not auth.succeeds(event.actor, holder) and (grant is None or grant.role != "admin"):
                raise NotAuthorizedError(
                    f"{event.actor} does not hold {item} (held by {holder}) and is not an admin"
                )
            target = auth.keys.get(to)
            if target is None or target.revoked_seq is not None:
                raise NotAuthorizedError(f"transfer to {to}, which is not an authorized key")
            if to == holder:
                raise NotAuthorizedError(f"{to} already holds {item}")
            if any(p.item == item and _can_accept(auth, p.to) for p in self.pending.values()):
                raise NotAuthorizedError(f"{item} already has a pending transfer")
        elif t == ev.CUSTODY_ACCEPTED:
            key = (str(data.get("transfer_id")), str(data.get("item")))
            p = self.pending.get(key)
            if p is None:
                raise NotAuthorizedError(f"no pending transfer {key[0]} of {key[1]}")
            if not auth.succeeds(event.actor, p.to):
                raise NotAuthorizedError(f"transfer {p.transfer_id} is to {p.to}, not to {event.actor}")
        elif t in (ev.ITEM_ANNOTATED, ev.ITEM_ACCESSED):
            self._existing(data.get("item"))
        elif t == ev.ITEM_DERIVED:
            self._existing(data.get("original"))
            self._existing(data.get("derived"))
        elif t == ev.ITEM_EXPORTED:
            items = data.get("items")
            for item in items if isinstance(items, list) else []:
                self._existing(item)

    def _existing(self, item: Any) -> str:
        if not isinstance(item, str) or item not in self.holders:
            raise NotAuthorizedError(f"refers to item {item} that is not in the vault")
        return item

    def apply(self, event: Event) -> None:
        data = event.data
        if event.type == ev.ITEM_INGESTED and isinstance(data.get("item"), str):
            self.holders.setdefault(data["item"], event.actor)
        elif event.type == ev.CUSTODY_TRANSFERRED:
            tid, item = str(data.get("transfer_id")), str(data.get("item"))
            for stale in [k for k, p in self.pending.items() if p.item == item]:
                del self.pending[stale]  # superseded (its receiver was revoked: check allowed this one)
            self.pending[(tid, item)] = PendingTransfer(
                tid, item, event.actor, str(data.get("to")), event.seq
            )
        elif event.type == ev.CUSTODY_ACCEPTED:
            p = self.pending.pop((str(data.get("transfer_id")), str(data.get("item"))), None)
            if p is not None:
                self.holders[p.item] = event.actor


def _can_accept(auth: Authority, to: str) -> bool:
    """Can a transfer to ``to`` still be accepted: by ``to`` itself, or by a key it was rotated to
    that is not revoked?"""
    return any(g.revoked_seq is None and auth.succeeds(fp, to) for fp, g in auth.keys.items())
