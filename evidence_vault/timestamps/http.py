"""HTTP for calendars, TSAs and block sources: one opener that never follows a redirect (to a host nobody
named, or one not on the allow-list), and :func:`fetch`, which bounds a whole request by its timeout.
urllib.request is imported on the first request: importing it costs about 20 ms, which ``verify`` and
the other offline commands should not pay."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import urllib.request


@functools.cache
def opener() -> urllib.request.OpenerDirector:
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    return urllib.request.build_opener(NoRedirect())


def request(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None, method: str | None = None
) -> urllib.request.Request:
    import urllib.request

    return urllib.request.Request(url, data=data, headers=headers or {}, method=method)


@dataclass(frozen=True)
class Answer:
    """An HTTP answer, whatever its status (an error status is an answer too)."""

    status: int
    reason: str
    body: bytes


class Deadline(TimeoutError):
    """The server did not give its whole answer within the timeout (it may be sending it very slowly)."""


def fetch(req: urllib.request.Request, *, timeout: float, limit: int) -> Answer:
    """Send ``req`` and read at most ``limit + 1`` bytes of the answer, all within ``timeout`` seconds.

    A socket timeout alone bounds each read, not the request: a server that sends one byte every few
    seconds would hold a caller for hours. The request runs in a daemon thread that is given up after
    ``timeout`` seconds (:class:`Deadline`); Ctrl-C still stops the caller at once. An HTTP error status
    is returned as an :class:`Answer`; a transport failure raises ``OSError`` (urllib's ``URLError`` is
    one; a reply that is no HTTP at all becomes a ``ConnectionError`` naming what was wrong).
    """
    import http.client
    import urllib.error

    result: list[Answer] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            try:
                with opener().open(req, timeout=timeout) as resp:
                    result.append(Answer(int(resp.status), str(resp.reason), resp.read(limit + 1)))
            except urllib.error.HTTPError as exc:
                result.append(Answer(exc.code, str(exc.reason), exc.read(limit + 1)))
        except http.client.HTTPException as exc:  # BadStatusLine, IncompleteRead, ...: not OSErrors
            failure.append(ConnectionError(f"not an HTTP answer ({type(exc).__name__}: {exc})"[:200]))
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=run, name="evidence-vault-http", daemon=True)
    worker.start()
    worker.join(timeout)
    if failure:
        raise failure[0]
    if not result:
        raise Deadline(f"no complete answer within {timeout:g} s")
    return result[0]
