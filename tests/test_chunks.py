"""Per-chunk Merkle leaves of large originals: recorded at ingest, used by verify to name damaged ranges."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import pytest

from evidence_vault import hashing, merkle
from evidence_vault.hashing import LEAF_CHUNK, damaged_ranges, hash_stream
from tests.conftest import Cli, object_path
from tests.test_schemas import check

MIB = 1 << 20


def _metadata(vault: Path, cli: Cli, item_id: str) -> dict[str, object]:
    res = cli("--vault", vault, "show", "--json", item_id)
    assert res.code == 0, res.stderr
    doc: dict[str, object] = json.loads(object_path(vault, res.json()["metadata_object"]).read_bytes())
    return doc


def test_stream_leaves_match_merkle_leaf_hash() -> None:
    data = os.urandom(3 * MIB + 17)
    out = io.BytesIO()
    digest = hash_stream(io.BytesIO(data), out, leaves=True)
    assert out.getvalue() == data
    assert digest.sha256 == hashlib.sha256(data).hexdigest() and digest.size == len(data)
    assert digest.leaves == tuple(merkle.leaf_hash(data[i : i + MIB]) for i in range(0, len(data), MIB))
    # One chunk or less: no chunk tree (the whole-file hash already says everything).
    assert hash_stream(io.BytesIO(data[:MIB]), leaves=True).leaves is None


def test_durable_copy_is_flushed_while_it_streams(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A big copy is fdatasync'ed as it streams (so the sync before its event is signed has little left
    to do), on the copy's own descriptor, and the copy is still whole and exact."""
    data = os.urandom(9 * MIB + 5)
    flushed: list[int] = []
    real = getattr(os, "fdatasync", os.fsync)
    out_path = tmp_path / "copy"
    with open(out_path, "wb") as out:

        def spy(fd: int) -> None:
            assert fd == out.fileno()
            flushed.append(os.fstat(fd).st_size)
            real(fd)

        monkeypatch.setattr(os, "fdatasync", spy)
        digest = hash_stream(io.BytesIO(data), out, leaves=True, flush_every=2 * MIB)
    assert out_path.read_bytes() == data and digest.sha256 == hashlib.sha256(data).hexdigest()
    assert digest.leaves is not None and len(digest.leaves) == 10
    assert flushed and all(0 < size <= len(data) for size in flushed)
    assert flushed == sorted(flushed)
    # Without flush_every (a store that is not durable) nothing is flushed.
    flushed.clear()
    with open(tmp_path / "copy2", "wb") as out2:
        hash_stream(io.BytesIO(data), out2, leaves=True)
    assert flushed == []


def test_a_failed_flush_fails_the_copy(
    vault: Path, cli: Cli, identity: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write error is reported once per descriptor: the background flush that sees it must fail the
    add (a later fsync of the same file may report success), and nothing is recorded."""
    src = tmp_path / "video.bin"
    src.write_bytes(os.urandom(3 * hashing.FLUSH_EVERY // 2 + 7))

    def eio(fd: int) -> None:
        raise OSError(5, "Input/output error")

    with monkeypatch.context() as m:  # not monkeypatch.undo(): that would also undo the test's home
        m.setattr(os, "fdatasync", eio)
        res = cli("--vault", vault, "add", src)
    assert res.code != 0
    assert "video.bin" in res.stderr and "Input/output error" in res.stderr
    listed = cli("--vault", vault, "ls", "--json")
    assert listed.code == 0 and listed.json() == []
    assert not any((vault / "objects" / "tmp").iterdir())


def test_damaged_ranges(tmp_path: Path) -> None:
    data = bytearray(os.urandom(4 * MIB + 10))
    leaves = [merkle.leaf_hash(bytes(data[i : i + MIB])).hex() for i in range(0, len(data), MIB)]
    path = tmp_path / "f"
    path.write_bytes(data)
    assert damaged_ranges(path, MIB, leaves) == []
    data[MIB] ^= 1
    data[2 * MIB + 5] ^= 1
    data[4 * MIB + 9] ^= 1
    path.write_bytes(data)
    assert damaged_ranges(path, MIB, leaves) == [(MIB, 3 * MIB - 1), (4 * MIB, 5 * MIB - 1)]
    path.write_bytes(data[: 2 * MIB])  # truncated: the missing chunks are damaged too
    assert damaged_ranges(path, MIB, leaves) == [(MIB, 5 * MIB - 1)]


def test_ingest_records_chunk_tree_and_verify_names_the_damaged_range(
    vault: Path, cli: Cli, identity: str, tmp_path: Path
) -> None:
    data = os.urandom(5 * MIB)
    src = tmp_path / "video.bin"
    src.write_bytes(data)
    res = cli("--vault", vault, "add", "--json", src)
    assert res.code == 0, res.stderr
    item_id = res.json_lines()[0]["id"]
    assert item_id == "sha256:" + hashlib.sha256(data).hexdigest()

    doc = _metadata(vault, cli, item_id)
    check("metadata-object", doc)
    chunks = doc["chunks"]
    want = [merkle.leaf_hash(data[i : i + MIB]) for i in range(0, len(data), MIB)]
    assert chunks == {
        "chunk_size": LEAF_CHUNK,
        "root": merkle.root_from_leaves(want).hex(),
        "leaves": [leaf.hex() for leaf in want],
    }

    path = object_path(vault, item_id)
    damaged = bytearray(data)
    damaged[2 * MIB + 12345] ^= 0x40  # one byte in the 3rd MiB
    os.chmod(path, 0o644)
    path.write_bytes(damaged)
    os.chmod(path, 0o444)
    res = cli("--vault", vault, "verify", "--json", "--trust", identity)
    assert res.code == 1
    (finding,) = [f for f in res.json()["findings"] if f["level"] == "FAIL"]
    assert finding["code"] == "object.hash-mismatch" and finding["item"] == item_id
    assert "bytes 2097152-3145727 damaged (1 of 5 chunks)" in finding["message"], finding["message"]


@pytest.mark.parametrize("size", [100, MIB])
def test_small_files_have_no_chunk_tree(vault: Path, cli: Cli, tmp_path: Path, size: int) -> None:
    src = tmp_path / "small.bin"
    src.write_bytes(os.urandom(size))
    res = cli("--vault", vault, "add", "--json", src)
    assert res.code == 0, res.stderr
    assert "chunks" not in _metadata(vault, cli, res.json_lines()[0]["id"])


def test_big_original_is_rehashed_through_its_chunk_tree_on_all_cores(
    cli: Cli, vault: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import evidence_vault.object_checks as object_checks
    import evidence_vault.verify as verify_module
    from evidence_vault.vault import Vault

    big = tmp_path / "livestream.bin"
    big.write_bytes(os.urandom(5 * MIB + 99))
    assert cli("--vault", vault, "add", big).code == 0
    monkeypatch.setattr(object_checks, "BIG", MIB)  # the threshold is 64 MiB; a 5 MiB file keeps this fast
    calls: list[Path] = []
    real = object_checks.chunk_root

    def spy(path: Path, chunk_size: int, *, workers: int = 2) -> tuple[bytes, int]:
        calls.append(path)
        return real(path, chunk_size, workers=workers)

    monkeypatch.setattr(object_checks, "chunk_root", spy)
    report = verify_module.verify_vault(Vault(vault), workers=2)
    assert report.outcome != "FAIL" and len(calls) == 1, [f.to_dict() for f in report.failures]
    # A changed byte: the chunk root no longer matches, the whole-file hash reports it with its range.
    obj = object_path(vault, "sha256:" + hashlib.sha256(big.read_bytes()).hexdigest())
    os.chmod(obj, 0o644)
    data = bytearray(obj.read_bytes())
    data[3 * MIB + 5] ^= 1
    obj.write_bytes(bytes(data))
    report = verify_module.verify_vault(Vault(vault), workers=2)
    (fail,) = [f for f in report.failures if f.code == "object.hash-mismatch"]
    assert f"bytes {3 * MIB}-{4 * MIB - 1}" in fail.message
