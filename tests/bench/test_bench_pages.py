"""bench_pages: its routes answer on a small catalogue seeded as the benchmark seeds (after its setup step, which is
idempotent), the first-byte timing of the WSGI wrapper, the Server-Timing parsing, and the side-by-side table of two
sizes, also from separate runs (--baseline). Nothing here times anything: the benchmark itself does."""

from __future__ import annotations

import json
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from rest_framework.authtoken.models import Token

from bench import pages_catalogue
from bench.management.commands.bench_pages import Command, server_timings
from bench.pages_report import RouteResult, SizeRun, comparison_lines, runs_combine, runs_load
from bench.pages_routes import pages_routes
from bench.pages_setup import BULK_EDIT_NOTE, pages_setup_ensure
from bench.timed_wsgi import timed
from catalogue.models import (
    EMBEDDING_DIMENSIONS,
    Artwork,
    ArtworkChange,
    ArtworkType,
    BulkEdit,
    MapLayout,
    MapPoint,
    NearDuplicatePair,
    Prediction,
)
from tests.conftest import CLASSES

# --- the routes on a small bench catalogue --------------------------------------------------------------------------


def _anchors() -> pages_catalogue.Anchors:
    rng = np.random.default_rng(3)
    embeddings = rng.normal(size=(64, EMBEDDING_DIMENSIONS)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    types = {t.slug: t.pk for t in ArtworkType.objects.all()}
    return pages_catalogue.Anchors(
        probabilities=rng.dirichlet(np.ones(len(CLASSES)), 64),
        embeddings=embeddings,
        class_type_ids=np.array([types[c] for c in CLASSES], dtype=np.int64),
    )


@pytest.fixture
def bench_catalogue(active_model):
    """2,500 works seeded as bench_pages seeds them (chunks of 500 instead of 10,000), with the label check; its
    vector indexes dropped for the load and built after it, as the command does (the test's transaction puts the
    originals back)."""
    command = Command()
    pages_catalogue.catalogue_reset()
    pages_catalogue.stage_create()
    command._vector_indexes_drop()
    pages_catalogue.catalogue_extend(
        anchors=_anchors(), classes=CLASSES, version_id=active_model.pk, start=0, stop=2500, chunk=500
    )
    pages_catalogue.label_check_seed()
    with connection.cursor() as cursor:
        cursor.execute(
            "SET CONSTRAINTS ALL IMMEDIATE"
        )  # the deferred foreign-key checks, before an index build
        for definition in command._vector_index_definitions(None):
            cursor.execute(definition)
    return active_model


def _state(version):
    layout = MapLayout.objects.get(model_version=version)
    return {
        "computed_at": layout.computed_at,
        "points": MapPoint.objects.filter(layout=layout).count(),
        "pairs": NearDuplicatePair.objects.count(),
        "bulk_edits": BulkEdit.objects.count(),
        "changes": ArtworkChange.objects.count(),
    }


@pytest.mark.django_db
def test_every_route_answers_200_after_the_setup(bench_catalogue, curator, client):
    version = bench_catalogue
    assert Artwork.objects.count() == 2500
    setup = pages_setup_ensure(version=version, user=curator)

    # The setup made what the newer routes read, through the product's services.
    layout = MapLayout.objects.get(model_version=version)
    assert layout.status == MapLayout.Status.READY
    assert (
        MapPoint.objects.filter(layout=layout).count()
        == Prediction.objects.filter(model_version=version).count()
    )
    assert NearDuplicatePair.objects.filter(status=NearDuplicatePair.Status.OPEN).exists()
    assert BulkEdit.objects.filter(values__note=BULK_EDIT_NOTE, changed__gt=0).count() == 1
    history = ArtworkChange.objects.filter(artwork_ref=setup.history_artwork_id)
    assert set(history.values_list("field", flat=True)) == {"date", "notes", "description"}

    # A second setup finds everything there and changes nothing (the map layout is not computed again).
    before = _state(version)
    again = pages_setup_ensure(version=version, user=curator)
    assert _state(version) == before
    assert again.history_artwork_id == setup.history_artwork_id
    assert "ready already" in again.steps[0].done

    routes = pages_routes(size=2500, version=version, setup=setup)
    names = [r.name for r in routes]
    assert len(names) == len(set(names))
    for expected in ("map points (binary)", "export CSV", "IIIF manifest", "near-duplicates", "bulk edits"):
        assert expected in names
    client.force_login(curator)
    token = Token.objects.get_or_create(user=curator)[0].key
    for route in routes:
        extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in route.headers.items()}
        if route.api:
            extra["HTTP_AUTHORIZATION"] = f"Token {token}"
        for url in route.urls:
            if route.post is not None:
                body, content_type = route.post
                response = client.generic("POST", url, body, content_type=content_type, **extra)
            else:
                response = client.get(url, **extra)
            assert response.status_code == 200, (route.name, url, response.status_code)
            if route.stream:
                # Read to the end: the test client closes the response then without ending the test's transaction.
                lines = b"".join(response.streaming_content).splitlines()
                assert lines[0].startswith(b"path,title,") and len(lines) > 1, route.name
            elif route.name == "map points (binary)":
                assert response.content[:4] == b"AMP1"
                ready = Prediction.objects.filter(model_version=version, artwork__status=Artwork.Status.READY)
                assert int(response["X-Map-Points"]) == ready.count()
            else:
                assert response.content, route.name


@pytest.mark.django_db
def test_bench_pages_refuses_a_database_not_named_for_it():
    with pytest.raises(CommandError, match="bench"):
        call_command("bench_pages", "--sizes", "10000", "--measure-only", stdout=StringIO())


# --- the first byte of a streamed answer ---------------------------------------------------------------------------


def _streaming_app(events, chunks):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/csv")])
        events.append("view returned")

        class Body:
            def __iter__(self):
                for chunk in chunks:
                    events.append(f"made {chunk!r}")
                    yield chunk

            def close(self):
                events.append("closed")

        return Body()

    return app


def _call(app, headers=None):
    started = []

    def start_response(status, response_headers, exc_info=None):
        started.append((status, dict(response_headers)))
        app.events.append("headers sent")

    body = timed(app)({"REQUEST_METHOD": "GET", **(headers or {})}, start_response)
    return body, started


def _app(chunks):
    events: list[str] = []
    app = _streaming_app(events, chunks)
    app.events = events  # type: ignore[attr-defined]
    return app


def test_the_headers_wait_for_the_first_chunk_and_carry_its_time():
    app = _app([b"", b"path,title\r\n", b"1,a\r\n", b"2,b\r\n"])
    body, started = _call(app)
    out = b"".join(body)
    assert out == b"path,title\r\n1,a\r\n2,b\r\n"  # passed on unchanged
    # The server gets the headers once the first non-empty chunk exists, not before.
    assert app.events.index("headers sent") == app.events.index("made b'path,title\\r\\n'") + 1
    assert app.events[-1] == "closed"
    timings = server_timings(started[0][1]["Server-Timing"])
    assert set(timings) == {"app", "first"}
    assert 0 <= timings["app"] <= timings["first"]


def test_asked_for_two_chunks_it_times_the_first_row_too():
    app = _app([b"path,title\r\n", b"1,a\r\n", b"2,b\r\n"])
    body, started = _call(app, {"HTTP_X_BENCH_CHUNKS": "2"})
    first = next(iter(body))
    assert first == b"path,title\r\n"
    assert app.events.index("headers sent") == app.events.index("made b'1,a\\r\\n'") + 1
    timings = server_timings(started[0][1]["Server-Timing"])
    assert timings["app"] <= timings["first"] <= timings["second"]
    body.close()  # a client that drops the connection: the application's body is closed all the same
    assert app.events[-1] == "closed" and "made b'2,b\\r\\n'" not in app.events


def test_a_body_shorter_than_asked_is_timed_to_its_end():
    app = _app([b"only\r\n"])
    body, started = _call(app, {"HTTP_X_BENCH_CHUNKS": "2"})
    assert b"".join(body) == b"only\r\n"
    assert set(server_timings(started[0][1]["Server-Timing"])) == {"app", "first", "second"}


def test_server_timings_reads_each_measure_by_name():
    # The map's points send their own Server-Timing; the server joins both headers with a comma.
    assert server_timings("build;dur=812.5, app;dur=3.25, first;dur=4, second;dur=90.5") == {
        "build": 812.5,
        "app": 3.25,
        "first": 4.0,
        "second": 90.5,
    }
    assert server_timings("") == {}
    assert server_timings("app;desc=x;dur=nope, first;dur=2") == {"first": 2.0}


# --- the side-by-side table, from one run or two ---------------------------------------------------------------------


def _route(name, p95, p50=None, status=200, kb=10):
    return RouteResult(
        name=name, url=f"/{name}", p50_ms=p50 or p95 / 2, p95_ms=p95, bytes=kb * 1024, status=status
    )


def _run(size, routes, invocation="a", load=1.0):
    return SizeRun(
        size=size,
        load_average=(load, load, load),
        load_s=0.0,
        index_s=0.0,
        routes=routes,
        measured_at="2026-12-02T10:00:00+00:00",
        invocation=invocation,
    )


SMALL = [
    _route("catalogue /", 100),
    _route("quality", 100),
    _route("map", 200),
    _route("bulk edits", 50, status=302),
    _route("catalogue page 415 (keyset)", 100),
    _route("old route", 10),
]
LARGE = [
    _route("catalogue /", 190),  # 1.9x and 190 ms: met
    _route("quality", 260),  # 2.6x and over 250 ms: missed
    _route("map", 260),  # 1.3x but over 250 ms: missed
    _route("bulk edits", 50),  # 302 at 10k: failed
    _route("catalogue page 2,001 (keyset)", 150),  # the deep page of each size: matched, met
    _route("new route", 10),
]


def _row(lines, name):
    return next(line for line in lines if line.startswith(name))


def test_the_table_sets_each_route_beside_itself_with_its_ratio_and_the_goal():
    lines = comparison_lines(_run(10_000, SMALL), _run(1_000_000, LARGE), cpus=2)
    assert " 1.90 " in _row(lines, "catalogue / ") and _row(lines, "catalogue / ").endswith("met")
    assert _row(lines, "quality").endswith("MISSED") and " 2.60 " in _row(lines, "quality")
    assert _row(lines, "map").endswith("MISSED") and " 1.30 " in _row(lines, "map")
    assert _row(lines, "bulk edits").endswith("FAILED (HTTP 302 at 10,000)")
    assert _row(lines, "catalogue page 2,001 (keyset)").endswith("met")
    assert _row(lines, "new route").endswith("only measured at 1,000,000")
    assert _row(lines, "old route").endswith("only measured at 10,000")
    assert lines[-1] == "2 of 5 routes measured at both sizes meet the goal."
    assert not any("SEPARATE" in line for line in lines)  # one invocation measured both


def test_sizes_from_separate_runs_are_compared_and_said_to_be(tmp_path):
    # A file as an earlier version wrote it: no measure, time or invocation recorded.
    earlier = tmp_path / "10k.json"
    old = [
        {
            "size": 10_000,
            "load_average": [3.5, 3.0, 2.0],
            "load_s": 12.0,
            "index_s": 3.0,
            "routes": [{k: v for k, v in vars(r).items() if k != "measure"} for r in SMALL],
        }
    ]
    earlier.write_text(json.dumps(old))
    baseline = runs_load(earlier)
    assert baseline[0].routes[0].measure == "app" and baseline[0].source == str(earlier)
    now = _run(1_000_000, LARGE, invocation="b", load=0.5)
    now.source = "this run"
    runs = runs_combine(baseline=baseline, current=[now])
    assert [r.size for r in runs] == [10_000, 1_000_000]
    lines = comparison_lines(runs[0], runs[1], cpus=2)
    note = next(line for line in lines if line.startswith("NOTE"))
    assert "SEPARATE invocations" in note and str(earlier) in note and "this run" in note
    assert "load average 3.5" in note and "load average 0.5" in note
    assert lines[-1] == "2 of 5 routes measured at both sizes meet the goal."


def test_a_size_measured_now_replaces_the_baselines_own():
    earlier = [_run(10_000, SMALL, invocation="a"), _run(1_000_000, SMALL, invocation="a")]
    now = [_run(1_000_000, LARGE, invocation="b")]
    runs = runs_combine(baseline=earlier, current=now)
    assert runs[1] is now[0] and runs[0] is earlier[0]


def test_a_file_that_is_not_results_is_refused(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"size": 1}))
    with pytest.raises(ValueError, match="not a list"):
        runs_load(path)
    path.write_text(json.dumps([{"size": 1}]))
    with pytest.raises(ValueError, match="missing"):
        runs_load(path)
