"""The check before every append: the log must end with a line this vault's keys wrote, in its place.

The writing commands append in O(1), without re-verifying the log. Anyone who can write the file can
append a line without a key; unchecked, that line would become the ``prev`` of the next signed event,
and the custodian's signature would vouch for it. So before signing, the last line must be canonical,
chain onto the line before it, be signed by a key authorized at that point (the index checks the
signature of every key event it takes, so that authority cannot be forged either), and not be older
than the head this machine last saw. Lines before the last are ``verify``'s job; the cost is one
Ed25519 check per append.
"""

from __future__ import annotations

from typing import Any

from . import events as ev
from .authority import Authority
from .custody_log import Head
from .errors import EvidenceVaultError, IntegrityError

KEY_EVENTS = (ev.KEY_ADDED, ev.KEY_REVOKED)


class UnsoundTailError(IntegrityError):
    """The log ends with a line no authorized key wrote there: nothing is appended after it (exit 2)."""

    exit_code = 2


def seen_problem(head: Head, seen: dict[str, Any] | None) -> str | None:
    """Is the log older than the head this machine last recorded (``{"seq", "hash"}``) for the vault?
    The answer is a clause about the last line, as :func:`tail_problem` gives."""
    if not isinstance(seen, dict) or not isinstance(seen.get("seq"), int):
        return None
    if seen["seq"] > head.seq:
        return f"is older than the head this machine saw (seq {seen['seq']}): lines were removed from the end"
    if seen["seq"] == head.seq and seen.get("hash") != head.hash:
        return "differs from the line this machine saw at that seq: history was rewritten"
    return None


def tail_problem(head: Head, authority: Authority) -> str | None:
    """What is wrong with the last line ``head``, as a clause ("was not written there by an authorized
    key (why)"); ``None``: a signed event may chain onto it.

    ``authority`` is the key state after the whole log (the index's).
    """
    event = head.event
    if event is None:  # a head not read by CustodyLog.tail_state: nothing to check
        return None
    if not head.canonical:
        return unwritten("not in RFC 8785 canonical form")
    problem = _chain_problem(head, event)
    if problem:
        return unwritten(problem)
    try:
        if event.seq == 0 or event.type not in KEY_EVENTS:
            authority.check(event)  # key events were checked at their place when the index took them
        else:
            grant = authority.keys.get(event.actor)
            if grant is not None and grant.revoked_seq is not None and grant.revoked_seq < event.seq:
                return unwritten(f"signed by key {event.actor}, revoked at seq {grant.revoked_seq}")
        authority.check_signature(event)
    except EvidenceVaultError as exc:
        return unwritten(exc.message)
    return None


def unwritten(reason: str) -> str:
    """The clause for a last line the writing commands refuse to chain onto."""
    return f"was not written there by an authorized key ({reason})"


def _chain_problem(head: Head, event: ev.Event) -> str | None:
    if head.before is None:
        if event.seq != 0 or event.prev is not None:
            return "the first line, but not a genesis event"
        return None
    if event.prev != ev.line_hash(head.before):
        return "its prev is not the hash of the line before it"
    try:
        before = ev.parse_event(head.before)
    except IntegrityError:
        return "the line before it is damaged"
    if event.seq != before.seq + 1:
        return f"seq {event.seq} after seq {before.seq}"
    return None


def refusal(head: Head, problem: str, log_path: object, *, repairable: bool) -> UnsoundTailError:
    """The one-line error of an append refused by :func:`seen_problem` or :func:`tail_problem`."""
    fix = (
        "`evidence-vault doctor --repair` sets it aside (a copy is kept)"
        if repairable
        else "restore the vault from a copy that holds the lines this machine saw"
    )
    return UnsoundTailError(
        f"the last line of the log (seq {head.seq}) {problem}; nothing recorded. "
        f"Run `evidence-vault verify`; {fix}",
        path=str(log_path),
    )
