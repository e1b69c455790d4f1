"""Stand-in servers the tests start on 127.0.0.1 and stop: OpenTimestamps calendar, bitcoind, RFC 3161 TSA."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self


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


class Served:
    """A stand-in server: a :class:`LoopbackServer` served from a daemon thread, its ``url``, ``stop()``
    and the with-statement. A subclass's ``start()`` builds its handler and calls :meth:`_serve`."""

    _httpd: LoopbackServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        raise NotImplementedError

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._httpd = LoopbackServer(handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
