"""A loopback HTTP server that answers every request, but byte by byte: headers at once, then one byte
of the body every ``interval`` seconds (a slow or overloaded calendar, TSA or node, or one that
means to hold its clients). Each read gets a byte well within any socket timeout, so only a limit on
the whole request stops a client."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler

from tests.servers import Served


class SlowServer(Served):
    def __init__(self, interval: float = 0.2, length: int = 100_000) -> None:
        self.interval = interval
        self.length = length
        self.requests = 0
        self._stop = threading.Event()

    def start(self) -> SlowServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _trickle(self) -> None:
                server.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(server.length))
                self.end_headers()
                try:
                    for _ in range(server.length):
                        self.wfile.write(b"\0")
                        self.wfile.flush()
                        if server._stop.wait(server.interval):
                            return
                except OSError:  # the client gave up
                    return

            do_GET = _trickle
            do_POST = _trickle

        self._serve(Handler)
        return self

    def stop(self) -> None:
        self._stop.set()  # ends the answers still trickling
        super().stop()
