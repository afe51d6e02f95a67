"""The project's WSGI application with the server's own time for each request in a ``Server-Timing`` header
(``app;dur=<ms>``), for ``bench_pages``: from the request reaching the application to the response's headers, which
Django sends once the view and its template are done (every middleware included). The client's round trip would add
the socket and the client's own time; the load on a shared machine inflates both."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from artsite.wsgi import application as django_application


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    started = time.perf_counter()

    def timed_start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        headers.append(("Server-Timing", f"app;dur={(time.perf_counter() - started) * 1000:.2f}"))
        return start_response(status, headers, exc_info)

    return django_application(environ, timed_start_response)
