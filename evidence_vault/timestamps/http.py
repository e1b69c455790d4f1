"""HTTP for calendars and block sources: one opener that never follows a redirect (to a host nobody
named, or one not on the allow-list). urllib.request is imported on the first request: importing it
costs about 20 ms, which ``verify`` and the other offline commands should not pay."""

from __future__ import annotations

import functools
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
