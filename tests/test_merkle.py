"""RFC 9162 Merkle tree: transparency-dev/merkle vectors, an RFC-text reference, and property tests."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evidence_vault.merkle import (
    EMPTY_ROOT,
    Leaves,
    MerkleAccumulator,
    consistency_proof,
    inclusion_proof,
    inclusion_proofs,
    leaf_hash,
    node_hash,
    root_from_inclusion,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "merkle" / "transparency-dev-vectors.json").read_text()
)
LEAVES = [leaf_hash(bytes.fromhex(x)) for x in VECTORS["leaf_inputs"]]
ROOTS = [bytes.fromhex(x) for x in VECTORS["root_hashes"]]
SOME_HASH = bytes.fromhex(VECTORS["some_hash"])
MAX = 300
BIG = [leaf_hash(i.to_bytes(4, "big")) for i in range(MAX + 1)]  # one spare leaf for size tampering


def h(hexes: Sequence[str]) -> list[bytes]:
    return [bytes.fromhex(x) for x in hexes]


def mth(leaves: Sequence[bytes]) -> bytes:
    """MTH exactly as written in RFC 9162 section 2.1.1 (recursive split at the largest power of 2 < n)."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def flip(proof: list[bytes], i: int, bit: int = 8) -> list[bytes]:
    out = list(proof)
    out[i] = bytes([out[i][0] ^ bit]) + out[i][1:]
    return out


# --- hashing and roots -----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", VECTORS["hasher"], ids=lambda c: c["desc"])
def test_hasher_vectors(case: dict[str, str]) -> None:
    if "leaf_input_hex" in case:
        got = leaf_hash(bytes.fromhex(case["leaf_input_hex"]))
    else:
        got = node_hash(bytes.fromhex(case["left_hex"]), bytes.fromhex(case["right_hex"]))
    assert got.hex() == case["want"]


def test_empty_tree() -> None:
    assert EMPTY_ROOT.hex() == VECTORS["empty_root"]
    assert root_from_leaves([]) == EMPTY_ROOT == MerkleAccumulator().root()
    assert leaf_hash(b"") != EMPTY_ROOT


@pytest.mark.parametrize("size", range(9))
def test_roots_match_vectors(size: int) -> None:
    assert root_from_leaves(LEAVES[:size]) == ROOTS[size]
    assert mth(LEAVES[:size]) == ROOTS[size]


def test_node_hashes_match_vectors() -> None:
    for level, row in enumerate(VECTORS["node_hashes"]):
        width = 1 << level
        for i, want in enumerate(row):
            assert root_from_leaves(LEAVES[i * width : (i + 1) * width]).hex() == want


def test_accumulator_matches_compact_tree_vectors() -> None:
    acc = MerkleAccumulator()
    for size in range(9):
        assert acc.size == size
        assert acc.state() == (size, h(VECTORS["compact_trees"][size]))
        assert acc.root() == ROOTS[size]
        if size < 8:
            acc.append(LEAVES[size])


# --- inclusion: vectors and tampering (probe list after transparency-dev proof/verify_test.go) ------------


@pytest.mark.parametrize("case", VECTORS["inclusion_proofs"], ids=lambda c: f"{c['index']}of{c['size']}")
def test_inclusion_vectors(case: dict[str, Any]) -> None:
    index, size, proof = case["index"], case["size"], h(case["proof"])
    leaf, root = LEAVES[index], ROOTS[size]
    assert inclusion_proof(LEAVES, index, size) == proof
    assert root_from_inclusion(leaf, index, size, proof) == root
    assert verify_inclusion(leaf, index, size, proof, root)

    probes: list[tuple[str, int, int, bytes, list[bytes], bytes]] = [
        ("index - 1", index - 1, size, leaf, proof, root),
        ("index + 1", index + 1, size, leaf, proof, root),
        ("index ^ 2", index ^ 2, size, leaf, proof, root),
        ("size * 2", index, size * 2, leaf, proof, root),
        ("size / 2", index, size // 2, leaf, proof, root),
        ("wrong leaf", index, size, b"WrongLeaf", proof, root),
        ("other leaf", index, size, leaf_hash(b"other"), proof, root),
        ("empty root", index, size, leaf, proof, EMPTY_ROOT),
        ("random root", index, size, leaf, proof, SOME_HASH),
        ("trailing garbage", index, size, leaf, [*proof, b""], root),
        ("trailing root", index, size, leaf, [*proof, root], root),
        ("preceding garbage", index, size, leaf, [b"", *proof], root),
        ("preceding root", index, size, leaf, [root, *proof], root),
    ]
    probes += [(f"flip proof[{i}]", index, size, leaf, flip(proof, i), root) for i in range(len(proof))]
    if proof:
        probes.append(("removed component", index, size, leaf, proof[:-1], root))
    if len(proof) > 1:
        probes.append(("inserted component", index, size, leaf, [proof[0], SOME_HASH, *proof[1:]], root))
    accepted = [desc for desc, i, s, lf, p, r in probes if verify_inclusion(lf, i, s, p, r)]
    assert accepted == []


def test_single_entry_inclusion() -> None:
    leaf = leaf_hash(b"data")
    assert verify_inclusion(leaf, 0, 1, [], leaf)
    assert not verify_inclusion(leaf, 0, 1, [], b"")
    assert not verify_inclusion(b"", 0, 1, [], leaf)
    assert not verify_inclusion(b"", 0, 1, [], b"")


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 0), (1, 1), (2, 1), (-1, 5), (8, 7)])
def test_inclusion_bad_index(index: int, size: int) -> None:
    assert not verify_inclusion(SOME_HASH, index, size, [], EMPTY_ROOT)
    with pytest.raises(ValueError):
        root_from_inclusion(SOME_HASH, index, size, [])
    with pytest.raises(ValueError):
        inclusion_proof(LEAVES, index, size)


def test_inclusion_proof_needs_enough_leaves() -> None:
    with pytest.raises(ValueError):
        inclusion_proof(LEAVES, 0, 9)


@pytest.mark.parametrize("proof", [[b""], [SOME_HASH[:31]], [SOME_HASH, SOME_HASH]])
def test_root_from_inclusion_rejects_malformed(proof: list[bytes]) -> None:
    with pytest.raises(ValueError):
        root_from_inclusion(LEAVES[0], 0, 2, proof)


# --- consistency: vectors, edge cases, tampering --------------------------------------------------------


@pytest.mark.parametrize(
    "case", VECTORS["consistency_proofs"], ids=lambda c: f"{c['old_size']}to{c['new_size']}"
)
def test_consistency_vectors(case: dict[str, Any]) -> None:
    old, new, proof = case["old_size"], case["new_size"], h(case["proof"])
    r1, r2 = ROOTS[old], ROOTS[new]
    assert consistency_proof(LEAVES, old, new) == proof
    assert verify_consistency(old, new, r1, r2, proof)
    if not proof:
        return
    probes: list[tuple[str, int, int, bytes, bytes, list[bytes]]] = [
        ("old - 1", old - 1, new, r1, r2, proof),
        ("old + 1", old + 1, new, r1, r2, proof),
        ("old ^ 2", old ^ 2, new, r1, r2, proof),
        ("new * 2", old, new * 2, r1, r2, proof),
        ("new / 2", old, new // 2, r1, r2, proof),
        ("wrong root1", old, new, b"WrongRoot", r2, proof),
        ("wrong root2", old, new, r1, b"WrongRoot", proof),
        ("other root1", old, new, SOME_HASH, r2, proof),
        ("other root2", old, new, r1, SOME_HASH, proof),
        ("swapped roots", old, new, r2, r1, proof),
        ("empty proof", old, new, r1, r2, []),
        ("trailing garbage", old, new, r1, r2, [*proof, b""]),
        ("trailing root1", old, new, r1, r2, [*proof, r1]),
        ("trailing root2", old, new, r1, r2, [*proof, r2]),
        ("preceding garbage", old, new, r1, r2, [b"", *proof]),
        ("preceding root1", old, new, r1, r2, [r1, *proof]),
        ("preceding root2", old, new, r1, r2, [r2, *proof]),
        ("preceding proof[0]", old, new, r1, r2, [proof[0], *proof]),
        ("truncated", old, new, r1, r2, proof[:-1]),
    ]
    probes += [(f"flip proof[{i}]", old, new, r1, r2, flip(proof, i, 16)) for i in range(len(proof))]
    accepted = [p[0] for p in probes if verify_consistency(*p[1:])]
    assert accepted == []


def test_consistency_edge_cases() -> None:
    r1, r2 = ROOTS[1], ROOTS[2]
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 5, EMPTY_ROOT, ROOTS[5], [])
    assert verify_consistency(1, 1, r1, r1, [])
    assert not verify_consistency(0, 5, r1, ROOTS[5], [])  # a size-0 tree has only the empty root
    assert not verify_consistency(0, 0, EMPTY_ROOT, r2, [])
    assert not verify_consistency(1, 1, r1, r2, [])
    assert not verify_consistency(1, 0, r1, EMPTY_ROOT, [])  # time travel
    assert not verify_consistency(2, 1, r2, r1, [])
    assert not verify_consistency(1, 2, r1, r2, [])  # empty proof
    assert not verify_consistency(0, 1, EMPTY_ROOT, r1, [EMPTY_ROOT])  # trivial proof must be empty
    assert not verify_consistency(1, 1, r1, r1, [EMPTY_ROOT])
    assert not verify_consistency(-1, 1, r1, r1, [])


def test_consistency_proof_bad_sizes() -> None:
    for old, new in [(5, 0), (9, 8), (-1, 3), (3, 9)]:
        with pytest.raises(ValueError):
            consistency_proof(LEAVES, old, new)
    assert consistency_proof(LEAVES, 0, 8) == consistency_proof(LEAVES, 8, 8) == []


# --- properties ----------------------------------------------------------------------------------------


def test_exhaustive_small_trees() -> None:
    """Every leaf of every tree up to 40 leaves, and every pair of sizes up to 40."""
    for size in range(1, 41):
        root = mth(BIG[:size])
        assert root_from_leaves(BIG[:size]) == root
        for i in range(size):
            assert verify_inclusion(BIG[i], i, size, inclusion_proof(BIG, i, size), root)
        for old in range(size + 1):
            proof = consistency_proof(BIG, old, size)
            assert verify_consistency(old, size, mth(BIG[:old]), root, proof)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, MAX))
def test_every_leaf_inclusion_verifies(size: int) -> None:
    root = root_from_leaves(BIG[:size])
    for i in range(size):
        proof = inclusion_proof(BIG, i, size)
        assert root_from_inclusion(BIG[i], i, size, proof) == root


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_tampered_inclusion_fails(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, MAX))
    i = data.draw(st.integers(0, size - 1))
    proof, root = inclusion_proof(BIG, i, size), root_from_leaves(BIG[:size])
    assert verify_inclusion(BIG[i], i, size, proof, root)
    other = data.draw(st.integers(0, size - 1).filter(lambda j: j != i)) if size > 1 else i + 1
    assert not verify_inclusion(BIG[i], other, size, proof, root)
    assert not verify_inclusion(BIG[other % size], i, size, proof, root) or other % size == i
    assert not verify_inclusion(BIG[i], i, size, proof, flip([root], 0)[0])
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1))
        assert not verify_inclusion(
            BIG[i], i, size, flip(proof, k, data.draw(st.sampled_from([1, 64]))), root
        )
        assert not verify_inclusion(BIG[i], i, size, proof[:k] + proof[k + 1 :], root)
    assert not verify_inclusion(BIG[i], i, size, [*proof, SOME_HASH], root)
    # A different size, even with that size's true root, only verifies if the proof is literally the same.
    size2 = data.draw(st.integers(i + 1, MAX))
    size2 = MAX + 1 if size2 == size else size2
    same = inclusion_proof(BIG, i, size2) == proof
    assert verify_inclusion(BIG[i], i, size2, proof, root_from_leaves(BIG[:size2])) == same


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_consistency_between_any_sizes(data: st.DataObject) -> None:
    new = data.draw(st.integers(0, MAX))
    old = data.draw(st.integers(0, new))
    r1, r2 = root_from_leaves(BIG[:old]), root_from_leaves(BIG[:new])
    proof = consistency_proof(BIG, old, new)
    assert verify_consistency(old, new, r1, r2, proof)
    if not proof:
        assert old in (0, new)
        return
    k = data.draw(st.integers(0, len(proof) - 1))
    assert not verify_consistency(old, new, r1, r2, flip(proof, k))
    assert not verify_consistency(old, new, r1, r2, proof[:k] + proof[k + 1 :])
    assert not verify_consistency(old, new, flip([r1], 0)[0], r2, proof)
    assert not verify_consistency(old, new, r1, flip([r2], 0)[0], proof)
    assert not verify_consistency(old, new, r1, r2, [*proof, SOME_HASH])
    old2 = data.draw(st.integers(1, new).filter(lambda s: s != old))
    same = consistency_proof(BIG, old2, new) == proof
    assert verify_consistency(old2, new, root_from_leaves(BIG[:old2]), r2, proof) == same


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=MAX))
def test_accumulator_root_at_every_size(items: list[bytes]) -> None:
    leaves = [leaf_hash(x) for x in items]
    acc = MerkleAccumulator()
    for n, leaf in enumerate(leaves):
        assert acc.root() == root_from_leaves(leaves[:n])
        acc.append(leaf)
    assert acc.size == len(leaves)
    assert acc.root() == root_from_leaves(leaves) == mth(leaves)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_accumulator_state_round_trip(data: st.DataObject) -> None:
    total = data.draw(st.integers(0, MAX))
    cut = data.draw(st.integers(0, total))
    acc = MerkleAccumulator()
    for leaf in BIG[:cut]:
        acc.append(leaf)
    size, hashes = acc.state()
    assert size == cut and len(hashes) == cut.bit_count()
    resumed = MerkleAccumulator.from_state(size, hashes)
    assert resumed.state() == (size, hashes)
    for leaf in BIG[cut:total]:
        acc.append(leaf)
        resumed.append(leaf)
        assert resumed.root() == acc.root()
    assert resumed.root() == root_from_leaves(BIG[:total])


def test_state_is_a_copy() -> None:
    acc = MerkleAccumulator()
    acc.append(LEAVES[0])
    _, hashes = acc.state()
    hashes.append(SOME_HASH)
    assert acc.state() == (1, [LEAVES[0]])


@pytest.mark.parametrize(
    ("size", "hashes"),
    [(-1, []), (1, []), (0, [SOME_HASH]), (3, [SOME_HASH]), (2, [SOME_HASH[:31]]), (True, [SOME_HASH])],
)
def test_from_state_rejects_bad_state(size: int, hashes: list[bytes]) -> None:
    with pytest.raises(ValueError):
        MerkleAccumulator.from_state(size, hashes)


def test_append_rejects_non_hash() -> None:
    with pytest.raises(ValueError):
        MerkleAccumulator().append(b"raw data, not a leaf hash")


# --- many proofs in one pass; leaf hashes in one buffer ------------------------------------------------


def test_inclusion_proofs_in_one_pass_equal_one_by_one() -> None:
    """Every leaf of every tree up to 70 leaves, from a list, a tuple and a :class:`Leaves` buffer."""
    packed = Leaves(BIG)
    for size in range(1, 71):
        want = {i: inclusion_proof(BIG, i, size) for i in range(size)}
        for leaves in (BIG, tuple(BIG), packed):
            assert inclusion_proofs(leaves, range(size), size) == want
        some = sorted({0, size - 1, size // 2, size // 3})
        assert inclusion_proofs(packed, reversed(some), size) == {i: want[i] for i in some}
        assert list(inclusion_proofs(packed, reversed(some), size)) == some  # by index, in order


@settings(max_examples=30, deadline=None)
@given(st.integers(1, MAX), st.lists(st.integers(0, MAX - 1), max_size=12))
def test_inclusion_proofs_verify(size: int, picks: list[int]) -> None:
    indices = [p % size for p in picks]
    root = root_from_leaves(BIG[:size])
    for i, proof in inclusion_proofs(Leaves(BIG), indices, size).items():
        assert verify_inclusion(BIG[i], i, size, proof, root)


def test_inclusion_proofs_refuse_leaves_outside_the_tree() -> None:
    assert inclusion_proofs(BIG, [], 5) == {}
    for indices, size in (([5], 5), ([-1], 5), ([0], 0), ([0], MAX + 2)):
        with pytest.raises(ValueError, match="no leaf"):
            inclusion_proofs(BIG, indices, size)


def test_leaves_buffer_is_a_sequence_of_leaf_hashes() -> None:
    packed = Leaves(BIG[:10])
    assert len(packed) == 10 and list(packed) == BIG[:10] and packed[-1] == BIG[9]
    assert packed[2:5] == BIG[2:5] and packed[::-3] == BIG[9::-3]
    with pytest.raises(IndexError):
        packed[10]
    with pytest.raises(ValueError):
        packed.append(b"short")
    for lo, hi in ((0, 10), (3, 10), (4, 8), (9, 10), (5, 5)):
        assert root_from_leaves(packed, lo, hi) == root_from_leaves(BIG[lo:hi]) == mth(BIG[lo:hi])
