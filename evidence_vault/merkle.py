"""RFC 9162 (RFC 6962) Merkle tree: hashing, a resumable streaming accumulator, inclusion and
consistency proofs.

All tree functions take *leaf hashes* (``leaf_hash(data)``), never raw data. Hashes are 32-byte SHA-256
digests. Malformed input (bad index or size, wrong hash length, bad stored state) raises ``ValueError``;
the ``verify_*`` functions never raise and return ``False`` instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from typing import overload

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH({}) = SHA-256 of the empty string


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 leaf hash: SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


class Leaves(Sequence[bytes]):
    """Leaf hashes in one buffer, 32 bytes each: a million take 32 MB (as a list of bytes, 65 MB)."""

    def __init__(self, hashes: Iterable[bytes] = ()) -> None:
        self._buf = bytearray()
        for h in hashes:
            self.append(h)

    def append(self, leaf: bytes) -> None:
        if len(leaf) != HASH_SIZE:
            raise ValueError(f"leaf hash must be {HASH_SIZE} bytes, got {len(leaf)}")
        self._buf += leaf

    def __len__(self) -> int:
        return len(self._buf) // HASH_SIZE

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self)
        i = index + n if index < 0 else index
        if not 0 <= i < n:
            raise IndexError(f"no leaf {index} (have {n})")
        return bytes(self._buf[i * HASH_SIZE : (i + 1) * HASH_SIZE])

    def __iter__(self) -> Iterator[bytes]:
        buf = self._buf
        return (bytes(buf[i : i + HASH_SIZE]) for i in range(0, len(buf), HASH_SIZE))

    def parents(self, lo: int, hi: int) -> list[bytes]:
        """The node hashes of the leaves ``lo`` to ``hi`` taken in pairs (an odd last leaf left out)."""
        buf, sha256, pair = self._buf, hashlib.sha256, 2 * HASH_SIZE
        return [
            sha256(b"\x01" + buf[i : i + pair]).digest()
            for i in range(lo * HASH_SIZE, (hi - 1) * HASH_SIZE, pair)
        ]


def _parents(leaves: Sequence[bytes], lo: int, hi: int) -> list[bytes]:
    """The first level above the leaves ``lo`` to ``hi``, without copying them first."""
    if isinstance(leaves, Leaves):
        level = leaves.parents(lo, hi)
    elif isinstance(leaves, list):  # slices of a list copy pointers only
        level = list(map(node_hash, leaves[lo : hi - 1 : 2], leaves[lo + 1 : hi : 2]))
    else:
        level = [node_hash(leaves[i], leaves[i + 1]) for i in range(lo, hi - 1, 2)]
    if (hi - lo) % 2:  # the lone right-most node moves up unchanged
        level.append(leaves[hi - 1])
    return level


def root_from_leaves(leaves: Sequence[bytes], lo: int = 0, hi: int | None = None) -> bytes:
    """Merkle tree hash (MTH) of the leaf hashes ``leaves[lo:hi]`` (all by default), computed level by
    level in O(n)."""
    hi = len(leaves) if hi is None else hi
    if hi - lo <= 1:
        return leaves[lo] if hi - lo == 1 else EMPTY_ROOT
    level = _parents(leaves, lo, hi)
    while len(level) > 1:
        parents = list(map(node_hash, level[0::2], level[1::2]))
        if len(level) % 2:
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
            proof.append(root_from_leaves(leaves, k, hi))
            hi = k
        else:
            proof.append(root_from_leaves(leaves, lo, k))
            lo = k
    proof.reverse()  # bottom-up order
    return proof


def inclusion_proofs(leaves: Sequence[bytes], indices: Iterable[int], size: int) -> dict[int, list[bytes]]:
    """The audit paths of many leaves in the tree of the first ``size`` leaves, by index: one pass over
    the tree in all (:func:`inclusion_proof` costs a pass per leaf).

    Level by level: a node's parent is at half its position, a lone right-most node moves up unchanged,
    and a leaf's path is its ancestors' siblings, bottom-up (the same path as RFC 9162 PATH).
    """
    wanted = sorted(set(indices))
    if not wanted:
        return {}
    if not 0 <= wanted[0] <= wanted[-1] < size <= len(leaves):
        bad = wanted[0] if wanted[0] < 0 else wanted[-1]
        raise ValueError(f"no leaf {bad} in a tree of size {size} (have {len(leaves)} leaves)")
    paths: dict[int, list[bytes]] = {i: [] for i in wanted}
    at = {i: i for i in wanted}  # each leaf's ancestor's position on the level being walked
    level: Sequence[bytes] = leaves
    n = size
    while n > 1:
        for i in wanted:
            sibling = at[i] ^ 1
            if sibling < n:
                paths[i].append(level[sibling])
            at[i] >>= 1
        level = _parents(level, 0, n)
        n = len(level)
    return paths


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
            proof.append(root_from_leaves(leaves, k, hi))
            hi = k
        else:
            proof.append(root_from_leaves(leaves, lo, k))
            lo, complete = k, False
    if not complete:
        proof.append(root_from_leaves(leaves, lo, hi))
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
