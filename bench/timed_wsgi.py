"""The project's WSGI application with the server's own time for each request in a ``Server-Timing`` header, for
``bench_pages``. Three measures, in milliseconds from the request reaching the application:

* ``app`` — to the response's headers, which Django produces once the view and its template are done (every
  middleware included). For an ordinary page the body is ready then too.
* ``first`` — to the first non-empty chunk of the body: the first byte the server can send. For a streamed response
  (an export) the view returns at once and the body is produced while it is sent, so this, not ``app``, is when the
  download starts.
* ``second`` — to the second non-empty chunk, only when the request asks for it with ``X-Bench-Chunks: 2``: for a
  CSV export, whose first chunk is its header line, this is when the first row is ready (the query's start-up
  included).

So that these can travel in a header, the headers are handed to the server only once the chunks timed are produced
(PEP 3333 allows a start_response called from the iterable, before its first chunk); the chunks themselves are
passed on unchanged. The client's round trip would add the socket and the client's own time; the load on a shared
machine inflates both.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from artsite.wsgi import application as django_application

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
CHUNKS_HEADER = "HTTP_X_BENCH_CHUNKS"


def timed(app: WsgiApp) -> WsgiApp:
    """``app`` with the ``Server-Timing`` measures above added to every response."""

    def timed_application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        held: dict[str, Any] = {}

        def hold_start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            held.update(status=status, headers=headers, exc_info=exc_info, at=time.perf_counter())
            return _no_write

        result = app(environ, hold_start_response)
        wanted = 2 if environ.get(CHUNKS_HEADER, "").strip() == "2" else 1
        return _timed_body(result, held, start_response, started=started, wanted=wanted)

    return timed_application


def _no_write(data: bytes) -> None:
    raise RuntimeError("bench.timed_wsgi does not support the write() callable (Django never uses it).")


def _timed_body(
    result: Iterable[bytes],
    held: dict[str, Any],
    start_response: Callable[..., Any],
    *,
    started: float,
    wanted: int,
) -> Iterator[bytes]:
    iterator = iter(result)
    try:
        ready: list[bytes] = []
        marks: list[float] = []
        for chunk in iterator:
            if chunk:
                ready.append(chunk)
                marks.append(time.perf_counter())
                if len(marks) == wanted:
                    break
        end = time.perf_counter()
        marks += [end] * (wanted - len(marks))  # a body with fewer chunks: its end
        if not held:
            raise RuntimeError("the application returned without calling start_response")
        timings = [("app", held["at"]), ("first", marks[0])] + ([("second", marks[1])] if wanted == 2 else [])
        value = ", ".join(f"{name};dur={(at - started) * 1000:.2f}" for name, at in timings)
        start_response(held["status"], [*held["headers"], ("Server-Timing", value)], held["exc_info"])
        yield from ready
        yield from iterator
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()  # Django's request_finished (the database connection's end) and the response's own close


application = timed(django_application)
