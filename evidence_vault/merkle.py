"""RFC 9162 (RFC 6962) Merkle tree: hashing, a resumable streaming accumulator, inclusion and
consistency proofs.

All tree functions take *leaf hashes* (``leaf_hash(data)``), never raw data. Hashes are 32-byte SHA-256
digests. Malformed input (bad index or size, wrong hash length, bad stored state) raises ``ValueError``;
the ``verify_*`` functions never raise and return ``False`` instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH({}) = SHA-256 of the empty string


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 leaf hash: SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_leaves(leaves: Sequence[bytes]) -> bytes:
    """Merkle tree hash (MTH) of a list of leaf hashes, computed level by level in O(n)."""
    level = list(leaves)
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        parents = list(map(node_hash, level[0::2], level[1::2]))
        if len(level) % 2:  # the lone right-most node moves up unchanged
            parents.append(level[-1])
        level = parents
    return level[0]


class MerkleAccumulator:
    """Streaming tree: append leaf hashes one at a time, O(log n) memory; root() at any time; can be
    serialized (size + list of subtree hashes) and resumed so an incremental verifier can continue from a
    stored state.

    The state holds the roots of the perfect subtrees that make up the tree, largest (left-most) first:
    one per set bit of ``size`` (the "compact range" [0, size) of transparency-dev/merkle).
    """

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []

    @property
    def size(self) -> int:
        return self._size

    def append(self, leaf: bytes) -> None:
        """Add the next leaf hash."""
        if len(leaf) != HASH_SIZE:
            raise ValueError(f"leaf hash must be {HASH_SIZE} bytes, got {len(leaf)}")
        self._hashes.append(leaf)
        n = self._size
        while n & 1:  # merge equal-sized subtrees, like carrying in binary addition
            right = self._hashes.pop()
            self._hashes[-1] = node_hash(self._hashes[-1], right)
            n >>= 1
        self._size += 1

    def root(self) -> bytes:
        """Root hash of the tree of all leaves appended so far."""
        if not self._hashes:
            return EMPTY_ROOT
        root = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            root = node_hash(h, root)
        return root

    def state(self) -> tuple[int, list[bytes]]:
        """(size, subtree hashes) to store and later pass to ``from_state``."""
        return self._size, list(self._hashes)

    @classmethod
    def from_state(cls, size: int, hashes: Sequence[bytes]) -> MerkleAccumulator:
        """Resume from ``state()``; raises ValueError if the state cannot be one."""
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"bad accumulator size: {size!r}")
        if len(hashes) != size.bit_count():
            raise ValueError(f"accumulator of size {size} needs {size.bit_count()} hashes, got {len(hashes)}")
        if any(not isinstance(h, bytes) or len(h) != HASH_SIZE for h in hashes):
            raise ValueError(f"accumulator hashes must be {HASH_SIZE}-byte values")
        acc = cls()
        acc._size, acc._hashes = size, list(hashes)
        return acc


def _split(n: int) -> int:
    """Largest power of two strictly less than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_proof(leaves: Sequence[bytes], index: int, size: int) -> list[bytes]:
    """Audit path (RFC 6962 PATH) for leaf ``index`` in the tree of the first ``size`` leaves.

    The sibling subtrees are disjoint, so this costs about as much as one root: O(size), no caching.
    """
    if not 0 <= index < size <= len(leaves):
        raise ValueError(f"no leaf {index} in a tree of size {size} (have {len(leaves)} leaves)")
    proof: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:  # descend towards the leaf; each sibling subtree is hashed once
        k = lo + _split(hi - lo)
        if index < k:
            proof.append(root_from_leaves(leaves[k:hi]))
            hi = k
        else:
            proof.append(root_from_leaves(leaves[lo:k]))
            lo = k
    proof.reverse()  # bottom-up order
    return proof


def consistency_proof(leaves: Sequence[bytes], old_size: int, new_size: int) -> list[bytes]:
    """Consistency proof (RFC 6962 PROOF) from the tree of ``old_size`` leaves to ``new_size``; O(n)."""
    if not 0 <= old_size <= new_size <= len(leaves):
        raise ValueError(f"bad sizes {old_size} -> {new_size} (have {len(leaves)} leaves)")
    if old_size in (0, new_size):
        return []
    proof: list[bytes] = []
    lo, hi, complete = 0, new_size, True  # SUBPROOF(m, D[lo:hi], complete) with m = old_size - lo
    while old_size != hi:
        k = lo + _split(hi - lo)
        if old_size <= k:
            proof.append(root_from_leaves(leaves[k:hi]))
            hi = k
        else:
            proof.append(root_from_leaves(leaves[lo:k]))
            lo, complete = k, False
    if not complete:
        proof.append(root_from_leaves(leaves[lo:hi]))
    proof.reverse()
    return proof


def _check_hashes(*hashes: bytes) -> None:
    if any(len(h) != HASH_SIZE for h in hashes):
        raise ValueError(f"hashes must be {HASH_SIZE} bytes")


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """Root implied by an inclusion proof (RFC 9162 section 2.1.3.2); ValueError if malformed."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} outside a tree of size {size}")
    _check_hashes(leaf, *proof)
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ValueError("inclusion proof too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ValueError("inclusion proof too short")
    return r


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """True if ``proof`` shows leaf hash ``leaf`` at ``index`` in the tree of ``size`` with ``root``."""
    try:
        return root_from_inclusion(leaf, index, size, proof) == root
    except ValueError:
        return False


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """True if ``proof`` shows the tree (old_size, old_root) is a prefix of (new_size, new_root)
    (RFC 9162 section 2.1.4.2). An empty old tree must have the empty root; equal sizes need equal roots
    and an empty proof."""
    if not 0 <= old_size <= new_size or any(len(h) != HASH_SIZE for h in (old_root, new_root, *proof)):
        return False
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT and (new_size > 0 or new_root == EMPTY_ROOT)
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # old tree is a perfect subtree: its root starts the path
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root
