"""Benchmark of every portal page and API route a curator uses, at 10,000 and at 1,000,000 artworks in one run
(``make bench-pages``; issue 17).

For each size: the catalogue is grown to that size (:mod:`bench.pages_catalogue`: COPY, seconds per 100k rows), the
vector indexes rebuilt, the tables vacuumed and analysed; what the newer routes need beyond the seeded rows is made
(:mod:`bench.pages_setup`: the map layout by the product's own service, near-duplicate pairs, a bulk edit, a history;
each step idempotent and timed); then one gunicorn worker serves the project (:mod:`bench.timed_wsgi` adds the
server's own time as ``Server-Timing``) and one client asks each route (:mod:`bench.pages_routes`) a few times to warm
up, then ``--requests`` times. It prints per route the server-side p50 and p95, the page size, and at the end both
sizes side by side with the ratio of their p95 and the goal: p95 at 1M at most twice the p95 at 10k, and at most
250 ms. Deep pages are asked as a curator reaches them with keyset pagination: the page whose cursor is the work at
that position (page 2,000 of the catalogue, page 5,000 of the API; the last pages of a smaller catalogue). An export
is timed to its first byte and to its first row (it streams; the client drops the connection after the first bytes).
Every route must answer 200: one that does not is reported at once and marked FAILED in the summary.

``--measure-only`` measures the catalogue as loaded (after the same setup), and ``--baseline`` compares the sizes
measured now with those of an earlier run's ``--json`` (a 10k run and a 1M ``--measure-only`` run minutes apart; the
summary says when the sizes come from separate invocations).

The load average is printed beside every size: on a shared machine other work inflates every figure.
Only on a database named ``*bench*`` (``make bench-pages`` sets ``ARTSITE_DATABASE_NAME=artsite_bench_pages``),
whose catalogue it empties.
"""

from __future__ import annotations

import http.client
import importlib
import os
import secrets
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.auth.models import Group
from django.contrib.sessions.backends.db import SessionStore
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.utils import timezone
from pgvector.django import HnswIndex
from rest_framework.authtoken.models import Token

from bench import pages_catalogue
from bench.classify_client import free_port, server_stop
from bench.pages_report import (
    OK,
    RouteResult,
    SizeRun,
    comparison_lines,
    failures,
    runs_combine,
    runs_load,
    runs_write,
)
from bench.pages_routes import Route, pages_routes
from bench.pages_setup import PagesSetup, pages_setup_ensure
from catalogue.models import Artwork, ArtworkType, Prediction
from inference.loader import get_classifier
from inference.models import ModelVersion
from inference.services import model_ensure_active

BENCH_USER = "bench-pages"
WARM_UP = 2
#: The CSRF secret the client sends as cookie and header with a POST (any 32 letters and digits will do).
CSRF_SECRET = secrets.token_hex(16)
CHUNKS_REQUEST_HEADER = "X-Bench-Chunks"  # bench/timed_wsgi.py: time the second chunk too
STREAM_PEEK = 4096  # bytes of a streamed body read before the connection is dropped
READY_ROUTE = Route("ready", ["/api/v1/types/"], api=True)


class Command(BaseCommand):
    help = (
        "Every portal page and API route at 10k and 1M artworks (bench database): server-side p50/p95 per route, "
        "page sizes, the ratio 1M/10k and the goal (p95 at 1M <= 2x at 10k and <= 250 ms)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--sizes", default="10000,1000000", help="Catalogue sizes, ascending, multiples of 10000."
        )
        parser.add_argument(
            "--requests", type=int, default=9, help="Measured requests per route and size (default 9)."
        )
        parser.add_argument(
            "--hnsw-ef-construction",
            type=int,
            default=None,
            help="Build the vector indexes with this ef_construction instead of the model's (a lower one builds "
            "several times faster on a busy machine; make bench-search measures the shipped index).",
        )
        parser.add_argument(
            "--measure-only",
            action="store_true",
            help="Measure the catalogue as it is (one size: the one given), without loading it or building its "
            "indexes (the setup of bench/pages_setup.py still runs; it does nothing when its result is there): "
            "to measure again after an interrupted run, or with newer code.",
        )
        parser.add_argument(
            "--baseline",
            type=Path,
            default=None,
            help="An earlier run's --json: its sizes not measured now are set beside the ones measured now in the "
            "summary (p95 per size, ratio, goal met or missed), which says that they come from separate runs.",
        )
        parser.add_argument(
            "--json", type=Path, default=None, help="Also write the results to this JSON file."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name = connection.settings_dict["NAME"]
        if "bench" not in name:
            raise CommandError(
                f"Refusing to run on database {name!r}: it empties the catalogue. Use make bench-pages."
            )
        sizes = sorted(int(s) for s in options["sizes"].split(",") if s.strip())
        if not sizes or any(s % pages_catalogue.CHUNK for s in sizes):
            raise CommandError(f"--sizes must be multiples of {pages_catalogue.CHUNK}.")
        if options["measure_only"] and len(sizes) != 1:
            raise CommandError("--measure-only measures one size: the catalogue's, as loaded.")
        try:
            baseline = runs_load(options["baseline"]) if options["baseline"] else []
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        call_command("migrate", interactive=False, verbosity=0)
        # The server runs without DEBUG, as in production: its pages name the hashed static files, as `make run` does.
        call_command("collectstatic", interactive=False, verbosity=0)
        version = model_ensure_active()
        if version is None:
            raise CommandError("No model version: the benchmark needs the active model's embeddings.")
        invocation = uuid.uuid4().hex[:12]
        self.out(f"Database {name}; model {version.version}; {os.cpu_count()} CPUs; run {invocation}")
        user = self._user()
        runs: list[SizeRun] = []
        if options["measure_only"]:
            size = sizes[0]
            present = Artwork.objects.count()
            if present != size:
                self.out(f"WARNING: --sizes says {size:,} works, the catalogue holds {present:,}.")
            self.out(f"\n== {size:,} artworks as loaded (load average {os.getloadavg()[0]:.1f})")
            runs.append(self._size_measure(size, 0.0, 0.0, version, user, invocation, options["requests"]))
            self._write(options["json"], runs)
        else:
            anchors, classes = self._anchors(version.version)
            pages_catalogue.catalogue_reset()
            pages_catalogue.stage_create()
            loaded = 0
            for size in sizes:
                started = time.perf_counter()
                self._vector_indexes_drop()  # rebuilt after the load: far faster than growing them row by row
                pages_catalogue.catalogue_extend(
                    anchors=anchors, classes=classes, version_id=version.pk, start=loaded, stop=size
                )
                pages_catalogue.label_check_seed()
                load_s, loaded = time.perf_counter() - started, size
                index_s = self._indexes_rebuild(
                    self._vector_index_definitions(options["hnsw_ef_construction"])
                )
                load = os.getloadavg()
                self.out(
                    f"\n== {size:,} artworks: loaded in {load_s:.0f} s, vector indexes rebuilt and analysed in "
                    f"{index_s:.0f} s (load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on "
                    f"{os.cpu_count()} CPUs)"
                )
                runs.append(
                    self._size_measure(size, load_s, index_s, version, user, invocation, options["requests"])
                )
                # After each size: an interrupted run keeps what it measured (for --baseline).
                self._write(options["json"], runs)
        self._summary(runs_combine(baseline=baseline, current=runs), measured=runs)

    def _size_measure(
        self,
        size: int,
        load_s: float,
        index_s: float,
        version: ModelVersion,
        user: Any,
        invocation: str,
        requests: int,
    ) -> SizeRun:
        setup = self._setup(version, user)
        routes = pages_routes(size=size, version=version, setup=setup)
        run = SizeRun(
            size=size,
            load_average=os.getloadavg(),
            load_s=load_s,
            index_s=index_s,
            measured_at=timezone.now().isoformat(timespec="seconds"),
            invocation=invocation,
            setup=[asdict(step) for step in setup.steps],
            source="this run",
        )
        run.routes = self._measure(routes, requests, user)
        return run

    def _write(self, path: Path | None, runs: list[SizeRun]) -> None:
        if path:
            runs_write(path, runs)
            self.out(f"Results written to {path}")

    def out(self, text: str = "") -> None:
        self.stdout.write(text)
        self.stdout.flush()

    # --- the catalogue ----------------------------------------------------------------------------------------

    def _anchors(self, version: str) -> tuple[pages_catalogue.Anchors, list[str]]:
        from bench.pictures import synthetic_picture  # noqa: PLC0415  # PIL pictures only for this step

        classifier = get_classifier(version)
        pictures = [synthetic_picture(10_000 + i, (224, 224)) for i in range(64)]
        probabilities, embeddings = classifier.predict_images(pictures)
        type_ids = {t.slug: t.pk for t in ArtworkType.objects.all()}
        classes = list(classifier.classes)
        anchors = pages_catalogue.Anchors(
            probabilities=np.asarray(probabilities, dtype=np.float64),
            embeddings=np.asarray(embeddings, dtype=np.float32),
            class_type_ids=np.array([type_ids[c] for c in classes], dtype=np.int64),
        )
        return anchors, classes

    def _vector_indexes_drop(self) -> None:
        """Drop the HNSW indexes (global and per type) before a load."""
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'catalogue_prediction' "
                "AND indexdef LIKE '%%USING hnsw%%'"
            )
            for (index_name,) in cursor.fetchall():
                cursor.execute(f'DROP INDEX "{index_name}"')

    def _vector_index_definitions(self, ef_construction: int | None) -> list[str]:
        """The global HNSW index of the model and the per-type ones of migration 0003, with the shipped parameters
        or ``ef_construction``."""
        per_type = importlib.import_module("catalogue.migrations.0003_prediction_hnsw_per_type")
        hnsw = next(i for i in Prediction._meta.indexes if isinstance(i, HnswIndex))
        ef = int(ef_construction or hnsw.ef_construction or per_type.EF_CONSTRUCTION)
        params = f"WITH (m = {int(hnsw.m or per_type.M)}, ef_construction = {ef})"
        using = "ON catalogue_prediction USING hnsw (embedding vector_cosine_ops)"
        return [f'CREATE INDEX "{hnsw.name}" {using} {params}'] + [
            f'CREATE INDEX "{per_type.index_name(t.slug)}" {using} {params} WHERE predicted_type_id = {int(t.pk)}'
            for t in ArtworkType.objects.all()
        ]

    def _indexes_rebuild(self, definitions: list[str]) -> float:
        """The HNSW indexes built again from scratch, then VACUUM ANALYZE (the visibility map for index-only scans,
        the statistics for the estimates)."""
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute("SET max_parallel_maintenance_workers = 1")
            for definition in definitions:
                cursor.execute(definition)
            cursor.execute("RESET max_parallel_maintenance_workers")
            for table in ("catalogue_artwork", "catalogue_prediction", "catalogue_labelissue"):
                cursor.execute(f"VACUUM ANALYZE {table}")
        return time.perf_counter() - started

    # --- the routes -------------------------------------------------------------------------------------------

    def _setup(self, version: ModelVersion, user: Any) -> PagesSetup:
        """What the newer routes need beyond the seeded catalogue (bench/pages_setup.py), each step timed."""
        self.out("  setup (bench/pages_setup.py; idempotent):")
        setup = pages_setup_ensure(version=version, user=user)
        for step in setup.steps:
            self.out(f"    {step.name:<24} {step.seconds:7.1f} s  {step.done}")
        return setup

    def _measure(self, routes: list[Route], requests: int, user: Any) -> list[RouteResult]:
        session, token = self._credentials(user)
        port = free_port()
        server = self._server_start(port)
        results = []
        try:
            self._wait_ready(port, token, server)
            client = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            for route in routes:
                headers = {"Accept-Encoding": "gzip", **route.headers}  # as a browser asks (the map's points)
                if route.api:
                    headers["Authorization"] = f"Token {token}"
                else:
                    headers["Cookie"] = f"sessionid={session}; csrftoken={CSRF_SECRET}"
                if route.post is not None:
                    headers["X-CSRFToken"] = CSRF_SECRET
                if route.stream:
                    headers[CHUNKS_REQUEST_HEADER] = "2"
                samples: dict[str, list[float]] = {metric: [] for _, metric in route.measures}
                status, size_bytes, started = OK, 0, time.perf_counter()
                for n in range(WARM_UP + requests):
                    answer = _request(client, route.urls[n % len(route.urls)], headers, route)
                    size_bytes = answer.bytes
                    if answer.status != OK and status == OK:
                        status = answer.status
                        self.out(
                            f"  WARNING: {route.name} answered HTTP {answer.status}, not 200: "
                            f"{route.urls[n % len(route.urls)]}"
                        )
                    if n >= WARM_UP:
                        for metric in samples:
                            samples[metric].append(answer.timings.get(metric, float("nan")))
                for suffix, metric in route.measures:
                    result = RouteResult(
                        name=route.name + suffix,
                        url=route.urls[0],
                        p50_ms=float(np.percentile(samples[metric], 50)),
                        p95_ms=float(np.percentile(samples[metric], 95)),
                        bytes=size_bytes,
                        status=status,
                        samples=samples[metric],
                        measure=metric,
                    )
                    results.append(result)
                    kind = "KB read, then dropped" if route.stream else "KB"
                    self.out(
                        f"  {result.name:<40} p50 {result.p50_ms:8.1f} ms  p95 {result.p95_ms:8.1f} ms  "
                        f"{result.bytes / 1024:7.1f} {kind}  HTTP {status}  ({time.perf_counter() - started:.0f} s "
                        f"for {WARM_UP + requests} requests)"
                    )
        finally:
            server_stop(server)
        return results

    def _user(self) -> Any:
        """The curator the portal's session and the API's token belong to (and who makes the setup's edits)."""
        user, _ = get_user_model().objects.get_or_create(username=BENCH_USER)
        user.groups.add(Group.objects.get(name="Curators"))
        return user

    def _credentials(self, user: Any) -> tuple[str, str]:
        """The curator's session (the portal) and token (the API)."""
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        return str(session.session_key), Token.objects.get_or_create(user=user)[0].key

    def _server_start(self, port: int) -> subprocess.Popen:
        log_dir = Path(settings.VAR_DIR) / "bench-pages"
        log_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "artsite.settings.local"),
            "DJANGO_DEBUG": "0",
            "ARTSITE_DATABASE_NAME": connection.settings_dict["NAME"],
            "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        log = open(log_dir / "gunicorn.log", "wb")  # noqa: SIM115 - the server process holds it
        command = [sys.executable, "-m", "gunicorn", "bench.timed_wsgi:application", "--workers", "1"]
        return subprocess.Popen(
            [*command, "--bind", f"127.0.0.1:{port}", "--timeout", "300"],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _wait_ready(self, port: int, token: str, server: subprocess.Popen, timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise CommandError("gunicorn exited; see var/bench-pages/gunicorn.log")
            try:
                client = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                answer = _request(client, "/api/v1/types/", {"Authorization": f"Token {token}"}, READY_ROUTE)
                if answer.status == OK:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise CommandError("gunicorn did not answer in time; see var/bench-pages/gunicorn.log")

    # --- report -----------------------------------------------------------------------------------------------

    def _summary(self, runs: list[SizeRun], *, measured: list[SizeRun]) -> None:
        """The smallest size beside the largest (from this run, or the --baseline file for a size not measured
        now), and the routes that did not answer 200."""
        if len(runs) >= 2:
            self.out("")
            for line in comparison_lines(runs[0], runs[-1], cpus=os.cpu_count()):
                self.out(line)
        elif measured:
            self.out("\nOne size only: no ratio (give --baseline with an earlier run's --json to compare).")
        failed = failures(runs)
        if failed:
            self.out(f"\nWARNING: {len(failed)} route(s) did not answer 200:")
            for line in failed:
                self.out(f"  {line}")


@dataclass
class Answer:
    status: int
    bytes: int
    timings: dict[str, float] = field(default_factory=dict)  # Server-Timing measures, ms


def server_timings(header: str) -> dict[str, float]:
    """``{name: ms}`` from a ``Server-Timing`` header (several headers arrive joined by commas: the map's points
    add their own ``build``)."""
    timings = {}
    for part in header.split(","):
        name, _, params = part.strip().partition(";")
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "dur" and name:
                try:
                    timings[name.strip()] = float(value)
                except ValueError:
                    continue
    return timings


def _request(client: http.client.HTTPConnection, url: str, headers: dict[str, str], route: Route) -> Answer:
    """One request of ``route``: the whole body read, or for a streamed one its first bytes, then the connection
    dropped (the next request opens another)."""
    if route.post is not None:
        body, content_type = route.post
        client.request("POST", url, body=body, headers={**headers, "Content-Type": content_type})
    else:
        client.request("GET", url, headers=headers)
    response = client.getresponse()
    if route.stream:
        data = response.read(STREAM_PEEK)
        # The response's file holds the socket open after the connection's close: close both, so that the socket
        # is reset and the server's next write fails at once (else it streams the export on into the buffers).
        response.close()
        client.close()
    else:
        data = response.read()
    return Answer(
        status=response.status,
        bytes=len(data),
        timings=server_timings(response.getheader("Server-Timing") or ""),
    )
