"""Stand-in servers the tests start on 127.0.0.1 and stop: OpenTimestamps calendar, bitcoind, RFC 3161 TSA."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackServer(ThreadingHTTPServer):
    """A threading HTTP server on 127.0.0.1 (a free port) whose listening socket never blocks.

    ``serve_forever`` accepts a connection only after its selector reports one, but a blocking
    ``accept`` can still wait if that connection went away in between; the server thread then never
    sees ``shutdown()``, and a test hung in its fixture's teardown. Non-blocking, such an ``accept``
    fails (``get_request``'s ``OSError`` is ignored) and the loop goes on. Connections it accepts stay
    blocking, as handlers expect.
    """

    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)

    def server_activate(self) -> None:
        super().server_activate()
        self.socket.setblocking(False)
