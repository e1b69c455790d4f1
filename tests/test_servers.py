"""The stand-in servers' own plumbing: a wake-up with no connection to accept must not hang the server
thread (a test's teardown then waited for ever in ``shutdown()``)."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler

import pytest

from tests.servers import LoopbackServer


class _Hello(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = b"hello"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_accept_without_a_connection_returns() -> None:
    with LoopbackServer(_Hello) as server:
        # What serve_forever does when its selector reported a connection that has gone since.
        worker = threading.Thread(target=server._handle_request_noblock, daemon=True)
        worker.start()
        worker.join(5)
        assert not worker.is_alive()


def test_it_serves_and_stops() -> None:
    with LoopbackServer(_Hello) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        host, port = server.server_address[:2]
        with urllib.request.urlopen(f"http://{host}:{port}/", timeout=5) as reply:
            assert reply.read() == b"hello"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/", method="PUT"), timeout=5)
        assert err.value.code == 501
        server.shutdown()
        thread.join(5)
        assert not thread.is_alive()
