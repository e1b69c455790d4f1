"""A stand-in bitcoind JSON-RPC server on loopback serving the real block headers of the corpus.

Methods: getblockcount, getblockhash, getblockheader (verbose true/false), with bitcoind's error codes
(-8 height out of range, -5 block not found, -32601 unknown method). Optional HTTP basic auth. Tests may
tamper with ``hash_by_height`` / ``header_by_hash`` to make the node lie. Every call is recorded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.paths import CORPUS
from tests.servers import Served

HEADERS_JSON = CORPUS / "timestamps" / "opentimestamps" / "bitcoin-headers.json"


def corpus_headers() -> dict[int, str]:
    """Height -> header hex, from the corpus' bitcoin-headers.json."""
    data = json.loads(HEADERS_JSON.read_text())
    return {int(h): v["header_hex"] for h, v in data["headers"].items()}


def _hash(header_hex: str) -> str:
    raw = bytes.fromhex(header_hex)
    return hashlib.sha256(hashlib.sha256(raw).digest()).digest()[::-1].hex()


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class BitcoindServer(Served):
    """Threaded loopback JSON-RPC node; use as a context manager or call start()/stop()."""

    def __init__(
        self, headers: dict[int, str] | None = None, *, user: str | None = None, password: str | None = None
    ) -> None:
        headers = corpus_headers() if headers is None else headers
        self.hash_by_height: dict[int, str] = {h: _hash(x) for h, x in headers.items()}
        self.header_by_hash: dict[str, str] = {_hash(x): x for x in headers.values()}
        self.height_by_hash: dict[str, int] = {_hash(x): h for h, x in headers.items()}
        self.tip = max(headers, default=0) + 100
        self.user, self.password = user, password
        self.calls: list[tuple[str, list[Any]]] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """Base URL, with ``user:password@`` if auth is on."""
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        auth = f"{self.user}:{self.password}@" if self.user is not None else ""
        return f"http://{auth}{host!s}:{port}/"

    def call(self, method: str, params: list[Any]) -> Any:
        with self._lock:
            self.calls.append((method, list(params)))
        if method == "getblockcount":
            return self.tip
        if method == "getblockhash":
            height = params[0] if params else None
            if not isinstance(height, int) or height not in self.hash_by_height:
                raise RpcError(-8, "Block height out of range")
            return self.hash_by_height[height]
        if method == "getblockheader":
            block_hash = params[0] if params else None
            verbose = params[1] if len(params) > 1 else True
            if not isinstance(block_hash, str) or block_hash not in self.header_by_hash:
                raise RpcError(-5, "Block not found")
            header_hex = self.header_by_hash[block_hash]
            if not verbose:
                return header_hex
            return self._verbose(block_hash, header_hex)
        raise RpcError(-32601, "Method not found")

    def _verbose(self, block_hash: str, header_hex: str) -> dict[str, Any]:
        raw = bytes.fromhex(header_hex)
        version, prev, merkle, ntime, bits, nonce = struct.unpack("<i32s32sIII", raw)
        height = self.height_by_hash.get(block_hash, -1)
        exponent, mantissa = bits >> 24, bits & 0x7FFFFF
        difficulty = (0xFFFF << 208) / (mantissa << (8 * (exponent - 3)))
        return {
            "hash": block_hash,
            "confirmations": self.tip - height + 1,
            "height": height,
            "version": version,
            "versionHex": f"{version & 0xFFFFFFFF:08x}",
            "merkleroot": merkle[::-1].hex(),
            "time": ntime,
            "mediantime": ntime,
            "nonce": nonce,
            "bits": f"{bits:08x}",
            "difficulty": difficulty,
            "chainwork": "00" * 32,
            "nTx": 1,
            "previousblockhash": prev[::-1].hex(),
        }

    def start(self) -> BitcoindServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _reply(self, status: int, obj: Any) -> None:
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if server.user is not None:
                    expected = base64.b64encode(f"{server.user}:{server.password}".encode()).decode()
                    if self.headers.get("Authorization") != f"Basic {expected}":
                        self.send_response(401)
                        self.send_header("WWW-Authenticate", 'Basic realm="jsonrpc"')
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                try:
                    request = json.loads(body)
                    method, params, rid = request["method"], request.get("params", []), request.get("id")
                except (ValueError, KeyError, TypeError):
                    self._reply(
                        500, {"result": None, "error": {"code": -32700, "message": "Parse error"}, "id": None}
                    )
                    return
                try:
                    result = server.call(method, params)
                except RpcError as exc:
                    status = 404 if exc.code == -32601 else 500
                    self._reply(
                        status,
                        {"result": None, "error": {"code": exc.code, "message": exc.message}, "id": rid},
                    )
                    return
                self._reply(200, {"result": result, "error": None, "id": rid})

        self._serve(Handler)
        return self
