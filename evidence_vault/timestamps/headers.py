"""Bitcoin block headers: proof-of-work checks, an offline store, and fetchers (bitcoind, Esplora).

OpenTimestamps proofs end in "the merkle root of block N"; verifying them offline needs the 80-byte header
of block N. A header is accepted only if its double-SHA256 meets the target encoded in its ``nBits`` and
that target is at least as hard as a conservative floor for its height (:data:`MIN_DIFFICULTY`). This is a
plausibility check, not a chain check: a forger must still spend real mining work of at least the floor
difficulty per forged header, which is far beyond anyone's means for recent heights. Since the floor is
low for early heights (difficulty 1 is a second of GPU work), a header's time must also fit its height
(:data:`KNOWN_BLOCK_DATES`): a cheap header at height 50 cannot claim to be from last year.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import hashlib
import json
import os
import re
import struct
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evidence_vault.errors import IntegrityError, NetworkError, TimestampError, VaultFormatError
from evidence_vault.regular_files import read_text
from evidence_vault.timestamps import http

if TYPE_CHECKING:
    from urllib.request import Request

HEADER_SIZE = 80

# Mainnet proof-of-work limit (difficulty 1): nBits 0x1d00ffff.
POW_LIMIT = 0xFFFF << 208

# Conservative minimum difficulty by height, as (first height, minimum difficulty). Each floor lies well
# below (2x to 10x) the real mainnet difficulty at that height, so that ordinary difficulty drops (the
# largest ever was about -28% in July 2021) never reject a real header. Real values for reference:
# 100k: 1.4e4, 200k: 2.9e6, 250k: 3.7e7, 300k: 8.9e9, 350k: 4.7e10, 400k: 1.6e11, 500k: 1.9e12,
# 600k: 1.3e13, 700k: 1.8e13, 800k: 5.3e13, 900k: 1.3e14.
MIN_DIFFICULTY: tuple[tuple[int, float], ...] = (
    (0, 1.0),
    (100_000, 1e3),
    (200_000, 1e6),
    (250_000, 1e7),
    (300_000, 1e9),
    (350_000, 1e10),
    (400_000, 1e11),
    (500_000, 1e12),
    (600_000, 5e12),
    (700_000, 1e13),
    (800_000, 2e13),
    (900_000, 5e13),
)

# Dates on which the real chain reached these heights (genesis, block 100,000, the halvings). A header
# between two of them must carry a time between their dates, with SLACK for clock rules and rounding.
KNOWN_BLOCK_DATES: tuple[tuple[int, str], ...] = (
    (0, "2009-01-03"),
    (100_000, "2010-12-29"),
    (210_000, "2012-11-28"),
    (420_000, "2016-07-09"),
    (630_000, "2020-05-11"),
    (840_000, "2024-04-20"),
)
TIME_SLACK = 14 * 86400


def _date_ts(day: str) -> int:
    return int(datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).timestamp())


def time_bounds(height: int) -> tuple[int, int | None]:
    """(earliest, latest or None) block time :func:`check_header` accepts at ``height``."""
    earliest, latest = _date_ts(KNOWN_BLOCK_DATES[0][1]) - TIME_SLACK, None
    for known, day in KNOWN_BLOCK_DATES:
        if known <= height:
            earliest = _date_ts(day) - TIME_SLACK
        if known >= height:
            latest = _date_ts(day) + TIME_SLACK
            break
    return earliest, latest


_HEX_HASH = re.compile(r"^[0-9a-f]{64}$")


def _sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def bits_to_target(bits: int) -> int:
    """Expand a compact ``nBits`` value into the full 256-bit target; 0 for negative or overflowing values."""
    exponent = bits >> 24
    mantissa = bits & 0x007FFFFF
    if bits & 0x00800000:
        return 0  # negative target: never valid
    if exponent <= 3:
        return mantissa >> (8 * (3 - exponent))
    target = mantissa << (8 * (exponent - 3))
    return target if target < 1 << 256 else 0


def min_difficulty(height: int) -> float:
    """The lowest difficulty :func:`check_header` accepts at ``height`` (see :data:`MIN_DIFFICULTY`)."""
    index = bisect.bisect_right([h for h, _ in MIN_DIFFICULTY], height) - 1
    return MIN_DIFFICULTY[max(index, 0)][1]


@dataclass(frozen=True)
class BlockHeader:
    """A checked Bitcoin block header.

    ``block_hash`` is hex in display order (as block explorers show it); ``merkle_root`` is in the header's
    internal byte order, which is what OpenTimestamps attestations commit to.
    """

    height: int
    raw: bytes
    block_hash: str
    time: int
    merkle_root: bytes
    bits: int

    @property
    def difficulty(self) -> float:
        return POW_LIMIT / bits_to_target(self.bits)

    def to_dict(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "hex": self.raw.hex(),
            "block_hash": self.block_hash,
            "time": self.time,
            "merkle_root": self.merkle_root[::-1].hex(),
            "bits": self.bits,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BlockHeader:
        """Rebuild from :meth:`to_dict` output; the header is re-checked, derived fields must agree."""
        try:
            height = data["height"]
            raw = bytes.fromhex(data["hex"])
        except (KeyError, TypeError, ValueError) as exc:
            raise VaultFormatError(f"bad block header entry: {exc!r}") from None
        if not isinstance(height, int) or isinstance(height, bool):
            raise VaultFormatError("bad block header entry: height is not an integer")
        header = check_header(raw, height)
        if "block_hash" in data and data["block_hash"] != header.block_hash:
            raise IntegrityError(f"block {height}: stored hash does not match the header")
        return header


def check_header(raw: bytes, height: int) -> BlockHeader:
    """Parse and check an 80-byte header claimed to be at ``height``; IntegrityError if implausible."""
    if not isinstance(raw, bytes | bytearray) or len(raw) != HEADER_SIZE:
        raise IntegrityError(f"block {height}: header must be {HEADER_SIZE} bytes")
    if height < 0:
        raise IntegrityError(f"block {height}: negative height")
    raw = bytes(raw)
    _version, _prev, merkle_root, ntime, bits, _nonce = struct.unpack("<i32s32sIII", raw)
    target = bits_to_target(bits)
    if target <= 0 or target > POW_LIMIT:
        raise IntegrityError(f"block {height}: nBits 0x{bits:08x} is outside the mainnet proof-of-work range")
    digest = _sha256d(raw)
    if int.from_bytes(digest, "little") > target:
        raise IntegrityError(f"block {height}: header hash does not meet its proof-of-work target")
    difficulty = POW_LIMIT / target
    floor = min_difficulty(height)
    if difficulty < floor:
        raise IntegrityError(
            f"block {height}: difficulty {difficulty:.3g} is implausibly low for this height"
            f" (minimum {floor:.3g})"
        )
    earliest, latest = time_bounds(height)
    if ntime < earliest or (latest is not None and ntime > latest):
        when = datetime.fromtimestamp(ntime, UTC).strftime("%Y-%m-%d")
        raise IntegrityError(
            f"block {height}: its time {when} is implausible for this height (the real chain was there"
            f" between {_iso_day(earliest)} and {_iso_day(latest) if latest else 'now'})"
        )
    return BlockHeader(
        height=height, raw=raw, block_hash=digest[::-1].hex(), time=ntime, merkle_root=merkle_root, bits=bits
    )


def _iso_day(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


class HeaderStore:
    """Checked block headers by height, saved as ``{"headers": [{"height": .., "hex": ..}]}``."""

    def __init__(self, headers: Mapping[int, BlockHeader] | None = None) -> None:
        self._headers: dict[int, BlockHeader] = {}
        for header in (headers or {}).values():
            self.add(header)

    def add(self, header: BlockHeader) -> None:
        """Add a header (re-checked); IntegrityError if another header is already stored for its height."""
        checked = check_header(header.raw, header.height)
        existing = self._headers.get(checked.height)
        if existing is not None and existing.raw != checked.raw:
            raise IntegrityError(f"block {checked.height}: conflicts with the header already stored")
        self._headers[checked.height] = checked

    def add_raw(self, raw: bytes, height: int) -> BlockHeader:
        header = check_header(raw, height)
        self.add(header)
        return header

    def get(self, height: int) -> BlockHeader | None:
        return self._headers.get(height)

    def heights(self) -> list[int]:
        return sorted(self._headers)

    def __contains__(self, height: object) -> bool:
        return height in self._headers

    def __len__(self) -> int:
        return len(self._headers)

    def __iter__(self) -> Iterator[BlockHeader]:
        return iter(self._headers[h] for h in sorted(self._headers))

    def to_dict(self) -> dict[str, Any]:
        return {"headers": [{"height": h.height, "hex": h.raw.hex()} for h in self]}

    @classmethod
    def from_dict(cls, data: Any) -> HeaderStore:
        """Read the store format; also accepts ``{"headers": {"<height>": {"header_hex": ..}}}``."""
        if not isinstance(data, dict) or "headers" not in data:
            raise VaultFormatError("header store: expected an object with 'headers'")
        entries = data["headers"]
        store = cls()
        if isinstance(entries, dict):
            for key, value in entries.items():
                try:
                    height, raw_hex = int(key), value["header_hex"]
                except (TypeError, ValueError, KeyError) as exc:
                    raise VaultFormatError(f"header store: bad entry {key!r}: {exc!r}") from None
                store.add(BlockHeader.from_dict({**value, "height": height, "hex": raw_hex}))
        elif isinstance(entries, list):
            for entry in entries:
                if not isinstance(entry, dict):
                    raise VaultFormatError("header store: entries must be objects")
                store.add(BlockHeader.from_dict(entry))
        else:
            raise VaultFormatError("header store: 'headers' must be a list")
        return store

    @classmethod
    def load(cls, path: str | Path) -> HeaderStore:
        """Load and re-check every header; an absent file gives an empty store."""
        path = Path(path)
        try:
            text = read_text(path, "utf-8")
        except FileNotFoundError:
            return cls()
        except OSError as exc:
            raise VaultFormatError(f"cannot read: {exc.strerror}", path=path) from None
        except UnicodeDecodeError as exc:
            raise VaultFormatError(f"not JSON: not UTF-8 text (byte {exc.start})", path=path) from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise VaultFormatError(f"not JSON: {exc}", path=path) from None
        except RecursionError:
            raise VaultFormatError("not JSON: nested too deeply", path=path) from None
        try:
            return cls.from_dict(data)
        except (VaultFormatError, IntegrityError) as exc:
            exc.path = str(path)
            raise

    def save(self, path: str | Path) -> None:
        """Write atomically (temporary file, fsync, rename)."""
        path = Path(path)
        data = json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=".headers-", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def _http(req: Request, timeout: float, what: str, limit: int = 100_000) -> bytes:
    try:
        answer = http.fetch(req, timeout=timeout, limit=limit)
    except OSError as exc:
        reason = getattr(exc, "reason", exc)
        raise NetworkError(f"{what}: unreachable ({reason})") from None
    if answer.status != 200:
        raise TimestampError(f"{what}: HTTP {answer.status}")
    body = answer.body
    if len(body) > limit:
        raise TimestampError(f"{what}: answer too large")
    return body


def _split_userinfo(url: str) -> tuple[str, str | None]:
    """Remove ``user:password@`` from a URL; return the clean URL and a Basic auth header value."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TimestampError(f"not an http(s) URL: {parts.scheme}://{parts.hostname or ''}")
    if parts.username is None:
        return url, None
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), f"Basic {token}"


def _rpc(url: str, auth: str | None, method: str, params: list[Any], timeout: float) -> Any:
    body = json.dumps({"jsonrpc": "1.0", "id": "evidence-vault", "method": method, "params": params}).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "evidence-vault"}
    if auth:
        headers["Authorization"] = auth
    req = http.request(url, data=body, headers=headers, method="POST")
    try:
        answer = http.fetch(req, timeout=timeout, limit=1_000_000)
    except OSError as exc:
        reason = getattr(exc, "reason", exc)
        raise NetworkError(f"bitcoind {method}: unreachable ({reason})") from None
    raw = answer.body
    if answer.status != 200:
        # bitcoind answers RPC errors with HTTP 500/404 and a JSON body
        if answer.status == 401:
            raise NetworkError(f"bitcoind {method}: authorization refused")
        if not raw:
            raise TimestampError(f"bitcoind {method}: HTTP {answer.status}")
    try:
        answer = json.loads(raw)
    except ValueError:
        raise TimestampError(f"bitcoind {method}: answer is not JSON") from None
    if not isinstance(answer, dict):
        raise TimestampError(f"bitcoind {method}: answer is not a JSON-RPC object")
    error = answer.get("error")
    if error:
        message = error.get("message") if isinstance(error, dict) else error
        raise TimestampError(f"bitcoind {method}: {message}")
    return answer.get("result")


def _header_from_hex(text: Any, height: int, expected_hash: str, source: str) -> BlockHeader:
    if not isinstance(text, str):
        raise TimestampError(f"{source}: header for block {height} is not hex")
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raise TimestampError(f"{source}: header for block {height} is not hex") from None
    header = check_header(raw, height)
    if header.block_hash != expected_hash:
        raise IntegrityError(
            f"block {height}: header hash {header.block_hash} differs from {source}'s {expected_hash}"
        )
    return header


def _check_hash(value: Any, height: int, source: str) -> str:
    if not isinstance(value, str) or not _HEX_HASH.match(value.strip().lower()):
        raise TimestampError(f"{source}: no block hash for height {height}")
    return value.strip().lower()


def fetch_from_bitcoind(url: str, height: int, *, timeout: float = 10) -> BlockHeader:
    """Fetch the header at ``height`` from bitcoind JSON-RPC (``http://user:pass@host:8332/``)."""
    clean, auth = _split_userinfo(url)
    block_hash = _check_hash(_rpc(clean, auth, "getblockhash", [height], timeout), height, "bitcoind")
    raw_hex = _rpc(clean, auth, "getblockheader", [block_hash, False], timeout)
    return _header_from_hex(raw_hex, height, block_hash, "bitcoind")


def fetch_from_explorer(url_template: str, height: int, *, timeout: float = 10) -> BlockHeader:
    """Fetch from an Esplora-style API base (``https://blockstream.info/api``).

    Asks ``{base}/block-height/{h}`` for the hash, then ``{base}/block/{hash}/header`` for the header.
    """
    base, auth = _split_userinfo(url_template.rstrip("/"))
    headers = {"User-Agent": "evidence-vault"}
    if auth:
        headers["Authorization"] = auth

    def get(path: str) -> str:
        req = http.request(base + path, headers=headers)
        return _http(req, timeout, f"explorer {base}", limit=10_000).decode("ascii", "replace")

    block_hash = _check_hash(get(f"/block-height/{height}"), height, "explorer")
    return _header_from_hex(get(f"/block/{block_hash}/header"), height, block_hash, "explorer")
