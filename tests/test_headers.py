"""Bitcoin header checks, the header store, and fetching from a (stand-in) bitcoind or Esplora explorer."""

from __future__ import annotations

import hashlib
import json
import socket
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from evidence_vault.errors import IntegrityError, NetworkError, TimestampError, VaultFormatError
from evidence_vault.timestamps.headers import (
    MIN_DIFFICULTY,
    POW_LIMIT,
    BlockHeader,
    HeaderStore,
    bits_to_target,
    check_header,
    fetch_from_bitcoind,
    fetch_from_explorer,
    min_difficulty,
)
from tests.paths import CORPUS
from tests.servers.bitcoind import BitcoindServer
from tests.servers.slow import SlowServer

HEADERS_JSON = CORPUS / "timestamps" / "opentimestamps" / "bitcoin-headers.json"
CORPUS_HEADERS = json.loads(HEADERS_JSON.read_text())["headers"]


def raw(height: int) -> bytes:
    return bytes.fromhex(CORPUS_HEADERS[str(height)]["header_hex"])


def sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


@pytest.mark.parametrize("height", [358391, 428648])
def test_real_headers_check_out(height: int) -> None:
    header = check_header(raw(height), height)
    facts = CORPUS_HEADERS[str(height)]
    assert header.block_hash == facts["block_hash"]
    assert header.merkle_root[::-1].hex() == facts["merkle_root"]
    assert header.time == facts["time"]
    assert header.difficulty >= min_difficulty(height)
    assert BlockHeader.from_dict(header.to_dict()) == header


def test_bits_to_target() -> None:
    assert bits_to_target(0x1D00FFFF) == POW_LIMIT
    assert bits_to_target(0x1804FB08) == 0x04FB08 << (8 * 0x15)
    assert bits_to_target(0x01803456) == 0  # negative
    assert bits_to_target(0x03123456) == 0x123456


def test_min_difficulty_table_is_monotonic_and_documented() -> None:
    heights = [h for h, _ in MIN_DIFFICULTY]
    floors = [d for _, d in MIN_DIFFICULTY]
    assert heights == sorted(heights) and floors == sorted(floors)
    assert min_difficulty(0) == 1.0
    assert min_difficulty(300_000) >= 1e9
    assert min_difficulty(10**7) == floors[-1]


def test_wrong_size_rejected() -> None:
    with pytest.raises(IntegrityError, match="80 bytes"):
        check_header(raw(358391)[:79], 358391)


def test_tampered_header_fails_proof_of_work() -> None:
    tampered = bytearray(raw(428648))
    tampered[36] ^= 1  # one bit of the merkle root: the hash no longer meets the target
    with pytest.raises(IntegrityError, match="proof-of-work target") as err:
        check_header(bytes(tampered), 428648)
    assert "\n" not in str(err.value)


def test_forged_low_difficulty_header_rejected() -> None:
    """A header 'mined' in microseconds (regtest target) for a forged merkle root at a real height."""
    forged_root = hashlib.sha256(b"forged").digest()
    prev = bytes.fromhex(CORPUS_HEADERS["428648"]["block_hash"])[::-1]
    for nonce in range(1000):
        candidate = struct.pack("<i32s32sIII", 0x20000000, prev, forged_root, 1473228403, 0x207FFFFF, nonce)
        if int.from_bytes(sha256d(candidate), "little") <= bits_to_target(0x207FFFFF):
            break
    with pytest.raises(IntegrityError, match="proof-of-work range"):
        check_header(candidate, 428649)


def test_real_work_but_implausible_for_height_rejected() -> None:
    # Block 358391 (difficulty 4.9e10) is genuine work, but far too easy to be block 900,000.
    with pytest.raises(IntegrityError, match="implausibly low"):
        check_header(raw(358391), 900_000)
    with pytest.raises(IntegrityError, match="implausibly low"):
        check_header(raw(358391), 428648)


def test_header_time_must_fit_its_height() -> None:
    """The floor is difficulty 1 below height 100,000 (seconds of GPU work): a header there must not
    carry a time from years later, or a forged proof could claim any date (here: real work from 2015)."""
    with pytest.raises(IntegrityError, match="implausible for this height"):
        check_header(raw(358391), 50)
    with pytest.raises(IntegrityError, match="implausible for this height"):
        check_header(raw(428648), 300_000)
    with pytest.raises(IntegrityError, match="implausible for this height"):
        HeaderStore.from_dict({"headers": [{"height": 99_999, "hex": raw(358391).hex()}]})


def test_store_save_load_roundtrip(tmp_path: Path) -> None:
    store = HeaderStore.load(HEADERS_JSON)  # the corpus layout is accepted too
    assert store.heights() == [358391, 428648]
    path = tmp_path / "headers.json"
    store.save(path)
    data = json.loads(path.read_text())
    assert data == {"headers": [{"height": h, "hex": raw(h).hex()} for h in (358391, 428648)]}
    again = HeaderStore.load(path)
    assert [h.raw for h in again] == [raw(358391), raw(428648)]
    got = again.get(428648)
    assert got is not None and got.time == 1473227803
    assert again.get(1) is None
    assert len(HeaderStore.load(tmp_path / "absent.json")) == 0


def test_store_rejects_tampered_or_conflicting(tmp_path: Path) -> None:
    path = tmp_path / "headers.json"
    bad = bytearray(raw(428648))
    bad[70] ^= 0xFF  # timestamp field
    path.write_text(json.dumps({"headers": [{"height": 428648, "hex": bad.hex()}]}))
    with pytest.raises(IntegrityError) as err:
        HeaderStore.load(path)
    assert str(err.value).startswith(str(path))
    path.write_text("{not json")
    with pytest.raises(VaultFormatError):
        HeaderStore.load(path)
    store = HeaderStore()
    store.add_raw(raw(428648), 428648)
    # the same header again is fine; a different (real, high-work) header at that height is not
    store.add_raw(raw(428648), 428648)
    with pytest.raises(IntegrityError):
        store.add(BlockHeader(428648, raw(358391), "", 0, b"", 0))


def test_fetch_from_bitcoind_with_auth() -> None:
    with BitcoindServer(user="rpcuser", password="s3cret") as node:
        header = fetch_from_bitcoind(node.url, 428648, timeout=5)
        assert header.block_hash == CORPUS_HEADERS["428648"]["block_hash"]
        assert node.calls == [
            ("getblockhash", [428648]),
            ("getblockheader", [CORPUS_HEADERS["428648"]["block_hash"], False]),
        ]
        wrong = node.url.replace("s3cret", "nope")
        with pytest.raises(NetworkError, match="authorization"):
            fetch_from_bitcoind(wrong, 428648, timeout=5)
        with pytest.raises(TimestampError, match="out of range"):
            fetch_from_bitcoind(node.url, 5, timeout=5)


def test_bitcoind_hash_mismatch_rejected() -> None:
    with BitcoindServer() as node:
        fake = "00" * 12 + "ab" * 20
        node.hash_by_height[428648] = fake
        node.header_by_hash[fake] = CORPUS_HEADERS["428648"]["header_hex"]
        with pytest.raises(IntegrityError, match="differs from bitcoind"):
            fetch_from_bitcoind(node.url, 428648, timeout=5)
        # A node that serves a genuine header of another block under the asked height is caught too.
        node.hash_by_height[428648] = CORPUS_HEADERS["358391"]["block_hash"]
        with pytest.raises(IntegrityError, match="implausibly low"):
            fetch_from_bitcoind(node.url, 428648, timeout=5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_unreachable_bitcoind_is_network_error() -> None:
    with pytest.raises(NetworkError, match="unreachable"):
        fetch_from_bitcoind(f"http://127.0.0.1:{free_port()}/", 428648, timeout=2)


@pytest.fixture
def esplora() -> Iterator[tuple[str, dict[str, str]]]:
    """A tiny Esplora-style API: /block-height/<h> -> hash, /block/<hash>/header -> hex."""
    routes: dict[str, str] = {}
    for height, facts in CORPUS_HEADERS.items():
        routes[f"/api/block-height/{height}"] = facts["block_hash"]
        routes[f"/api/block/{facts['block_hash']}/header"] = facts["header_hex"]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = routes.get(self.path)
            self.send_response(200 if body else 404)
            self.end_headers()
            self.wfile.write((body or "Block not found").encode())

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/api", routes
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_fetch_from_explorer(esplora: tuple[str, dict[str, str]]) -> None:
    base, routes = esplora
    header = fetch_from_explorer(base, 358391, timeout=5)
    assert header.merkle_root[::-1].hex() == CORPUS_HEADERS["358391"]["merkle_root"]
    with pytest.raises(TimestampError, match="HTTP 404"):
        fetch_from_explorer(base, 1, timeout=5)
    # explorer claims a different hash than the header it serves
    fake = "00" * 12 + "cd" * 20
    routes["/api/block-height/358391"] = fake
    routes[f"/api/block/{fake}/header"] = CORPUS_HEADERS["358391"]["header_hex"]
    with pytest.raises(IntegrityError, match="differs from explorer"):
        fetch_from_explorer(base, 358391, timeout=5)


def test_a_node_that_answers_byte_by_byte_is_given_up_within_the_timeout() -> None:
    """--timeout bounds the whole request to a node or explorer, not each read of it."""
    import time

    from evidence_vault.timestamps.headers import fetch_from_explorer

    with SlowServer() as slow:
        for fetch in (fetch_from_bitcoind, fetch_from_explorer):
            start = time.monotonic()
            with pytest.raises(NetworkError, match="no complete answer within 1 s"):
                fetch(slow.url + "/", 428648, timeout=1)
            assert time.monotonic() - start < 10
