"""The check before every append: the log must end with a line this vault's keys wrote, in its place.

The writing commands append in O(1), without re-verifying the log. Anyone who can write the file can
append a line without a key; unchecked, that line would become the ``prev`` of the next signed event,
and the custodian's signature would vouch for it. So before signing, the last line must be canonical,
chain onto the line before it, and not be older than the head this machine last saw; its signer must
be allowed to sign it (the index's key state, for revocations and roles), and its signature must verify
under a key taken from the log itself (:class:`KeyChain`: the lines that brought the key in, signed
back to the genesis key this machine pinned), so that a forged index cannot make a stranger's key
count. Lines before the last are ``verify``'s job; the cost is one or two Ed25519 checks per append.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import events as ev
from .authority import Authority, key_of
from .custody_log import Head
from .errors import EvidenceVaultError, IntegrityError
from .signing import PublicKey, verify_signature

KEY_EVENTS = (ev.KEY_ADDED, ev.KEY_REVOKED)
MAX_CHAIN = 64  # keys brought in by keys brought in by ...: far more than any vault has


class KeyChain:
    """Public keys taken from the log itself, not from the index: a key counts only if the line that
    brought it in (``key.added``) is signed by a key that counts in the same way, back to the genesis
    line at the start of the log, whose key must be the one this machine pinned (if it pinned one).

    The index only says where those lines are (``key_lines``); each is read and parsed once, and each
    key costs one Ed25519 check, kept for the next look-up.
    """

    def __init__(self, line_at: Callable[[int], bytes], pin: dict[str, Any]) -> None:
        pinned = pin.get("genesis")  # pin: this machine's trust pin of the vault
        self.line_at = line_at
        self.pinned = pinned if isinstance(pinned, str) else None
        self._known: dict[str, PublicKey] = {}
        self._lines: dict[int, tuple[ev.Event, bool]] = {}

    def genesis_problem(self) -> str | None:
        """Does the log start with another genesis key than the pinned one? A clause about the last
        line, as :func:`seen_problem` gives."""
        if self.pinned is None:
            return None
        try:
            first, _ = self._line(0)
            genesis = key_of(first.data).fingerprint if first.type == ev.VAULT_CREATED else None
        except EvidenceVaultError:  # IntegrityError, or KeyStoreError for an unreadable key
            genesis = None
        if genesis is None:
            return "ends a log whose first line is not a genesis event"
        if genesis != self.pinned:
            return (
                f"ends a log whose genesis key {genesis} is not the one this machine pinned ({self.pinned})"
            )
        return None

    def key(self, fingerprint: str, key_lines: dict[str, int]) -> PublicKey:
        """The public key of ``fingerprint``, finding key lines at ``key_lines`` (the index's byte
        offsets); raises ``IntegrityError`` saying what does not hold."""
        path: list[tuple[ev.Event, PublicKey]] = []  # lines that brought keys in, back to a known key
        fp = fingerprint
        while fp not in self._known:
            if len(path) >= MAX_CHAIN or any(key.fingerprint == fp for _, key in path):
                raise IntegrityError(f"the key events that brought in key {fingerprint} form a loop")
            event, key = self._grant(fp, key_lines.get(fp))
            if event.seq == 0:
                self._check(event, key)  # the genesis line is signed by the key it names
                self._known[fp] = key
                break
            path.append((event, key))
            fp = event.actor
        for event, key in reversed(path):  # from the key nearest the genesis on
            self._check(event, self._known[event.actor])
            self._known[key.fingerprint] = key
        return self._known[fingerprint]

    def _line(self, offset: int) -> tuple[ev.Event, bool]:
        if offset not in self._lines:
            self._lines[offset] = ev.parse_line(self.line_at(offset))
        return self._lines[offset]

    def _grant(self, fp: str, offset: int | None) -> tuple[ev.Event, PublicKey]:
        if offset is None:
            raise IntegrityError(f"key {fp} was never authorized in this vault")
        try:
            event, canonical = self._line(offset)
            named = key_of(event.data)
        except IntegrityError as exc:
            raise IntegrityError(f"the line that brought in key {fp} does not hold: {exc.message}") from None
        genesis = event.seq == 0 and offset == 0 and event.type == ev.VAULT_CREATED and event.actor == fp
        if named.fingerprint != fp or not canonical or not (genesis or event.type == ev.KEY_ADDED):
            raise IntegrityError(f"the index does not point at the line that brought in key {fp}")
        if genesis and self.pinned is not None and fp != self.pinned:
            raise IntegrityError(f"genesis key {fp} is not the one this machine pinned ({self.pinned})")
        return event, PublicKey.from_openssh(named.public_key)

    @staticmethod
    def _check(event: ev.Event, signer: PublicKey) -> None:
        try:
            verify_signature(event.signature, event.signing_bytes(), signer)
        except IntegrityError as exc:
            raise IntegrityError(f"the line that brought in a key (seq {event.seq}): {exc.message}") from None


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


def tail_problem(head: Head, authority: Authority, keys: KeyChain, key_lines: dict[str, int]) -> str | None:
    """What is wrong with the last line ``head``, as a clause ("was not written there by an authorized
    key (why)"); ``None``: a signed event may chain onto it.

    ``authority`` is the key state after the whole log (the index's: roles and revocations); the
    signature is checked under the key ``keys`` takes from the log (``key_lines``: where, per the index).
    """
    event = head.event
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
        key = keys.key(event.actor, key_lines)
        verify_signature(event.signature, event.signing_bytes(), key)
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
