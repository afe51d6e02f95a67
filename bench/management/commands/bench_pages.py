"""Benchmark of every portal page and API route a curator uses, at 10,000 and at 1,000,000 artworks in one run
(``make bench-pages``; issue 17).

For each size: the catalogue is grown to that size (:mod:`bench.pages_catalogue`: COPY, seconds per 100k rows), the
vector indexes rebuilt, the tables vacuumed and analysed, the map layout computed (the box selection's route reads
it); then one gunicorn worker serves the project
(:mod:`bench.timed_wsgi` adds the server's own time as ``Server-Timing``) and one client asks each route a few times
to warm up, then ``--requests`` times. It prints per route the server-side p50 and p95, the page size, and at the
end both sizes side by side with the ratio of their p95 and the goal: p95 at 1M at most twice the p95 at 10k, and at
most 250 ms. Deep pages are asked as a curator reaches them with keyset pagination: the page whose cursor is the
work at that position (page 2,000 of the catalogue, page 5,000 of the API; the last pages of a smaller catalogue).

The load average is printed beside every size: on a shared machine other work inflates every figure.
Only on a database named ``*bench*`` (``make bench-pages`` sets ``ARTSITE_DATABASE_NAME=artsite_bench_pages``),
whose catalogue it empties.
"""

from __future__ import annotations

import http.client
import importlib
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.auth.models import Group
from django.contrib.sessions.backends.db import SessionStore
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.urls import reverse
from pgvector.django import HnswIndex
from rest_framework.authtoken.models import Token

from bench import pages_catalogue
from bench.classify_client import free_port, server_stop
from catalogue.models import Artwork, ArtworkType, MapPoint, Prediction
from catalogue.selectors.artworks import artworks_with_prediction, keyset_cursor
from catalogue.services.maps import map_layout_compute
from inference.loader import get_classifier
from inference.models import ModelVersion
from inference.services import model_ensure_active

BENCH_USER = "bench-pages"
GOAL_RATIO = 2.0
GOAL_MS = 250.0
PAGE = 24  # the portal's and the API's page size
WARM_UP = 2


@dataclass
class RouteResult:
    name: str
    url: str
    p50_ms: float
    p95_ms: float
    bytes: int
    status: int
    samples: list[float] = field(default_factory=list)


@dataclass
class SizeRun:
    size: int
    load_average: tuple[float, float, float]
    load_s: float
    index_s: float
    routes: list[RouteResult] = field(default_factory=list)


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
            help="Measure the catalogue as it is (one size: the one given), without loading or building anything: "
            "to measure again after an interrupted run.",
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
        call_command("migrate", interactive=False, verbosity=0)
        # The server runs without DEBUG, as in production: its pages name the hashed static files, as `make run` does.
        call_command("collectstatic", interactive=False, verbosity=0)
        version = model_ensure_active()
        if version is None:
            raise CommandError("No model version: the benchmark needs the active model's embeddings.")
        self.out(f"Database {name}; model {version.version}; {os.cpu_count()} CPUs")
        if options["measure_only"]:
            run = SizeRun(size=sizes[-1], load_average=os.getloadavg(), load_s=0.0, index_s=0.0)
            self.out(f"\n== {run.size:,} artworks as loaded (load average {run.load_average[0]:.1f})")
            run.routes = self._measure(run.size, options["requests"])
            self._write(options["json"], [run])
            return
        anchors, classes = self._anchors(version.version)
        pages_catalogue.catalogue_reset()
        pages_catalogue.stage_create()
        runs, loaded = [], 0
        for size in sizes:
            started = time.perf_counter()
            self._vector_indexes_drop()  # rebuilt after the load: far faster than growing them row by row
            pages_catalogue.catalogue_extend(
                anchors=anchors, classes=classes, version_id=version.pk, start=loaded, stop=size
            )
            pages_catalogue.label_check_seed()
            load_s, loaded = time.perf_counter() - started, size
            index_s = self._indexes_rebuild(self._vector_index_definitions(options["hnsw_ef_construction"]))
            layout_s = self._map_layout(version)
            run = SizeRun(size=size, load_average=os.getloadavg(), load_s=load_s, index_s=index_s)
            self.out(
                f"\n== {size:,} artworks: loaded in {load_s:.0f} s, vector indexes rebuilt and analysed in "
                f"{index_s:.0f} s, map layout computed in {layout_s:.0f} s (load average "
                f"{run.load_average[0]:.1f} {run.load_average[1]:.1f} {run.load_average[2]:.1f} on "
                f"{os.cpu_count()} CPUs)"
            )
            run.routes = self._measure(size, options["requests"])
            runs.append(run)
        self._summary(runs)
        self._write(options["json"], runs)

    def _write(self, path: Path | None, runs: list[SizeRun]) -> None:
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps([asdict(r) for r in runs], indent=2))
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

    def _map_layout(self, version: Any) -> float:
        """The active version's map layout, as the product computes it in the background (the map page and the
        catalogue's box selection read it)."""
        started = time.perf_counter()
        map_layout_compute(version=version)
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE catalogue_mappoint")
        return time.perf_counter() - started

    # --- the routes -------------------------------------------------------------------------------------------

    def _map_box(self) -> str:
        """A box around the middle of the map holding about 3 % of the works (the central fifth by x, then the
        central sixth of those by y), as a curator drags it: ``x0,y0,x1,y1``, or empty without a layout."""
        points = MapPoint.objects.filter(layout__model_version__status=ModelVersion.Status.ACTIVE)
        xy = np.array(list(points.values_list("x", "y")), dtype=np.float64)
        if len(xy) == 0:
            return ""
        x0, x1 = np.quantile(xy[:, 0], [0.4, 0.6])
        inside = xy[(xy[:, 0] >= x0) & (xy[:, 0] <= x1), 1]
        y0, y1 = np.quantile(inside, [5 / 12, 7 / 12])
        return f"{x0:.6f},{y0:.6f},{x1:.6f},{y1:.6f}"

    def _routes(self, size: int) -> list[tuple[str, list[str], bool]]:
        """(name, URLs to cycle through, API?) for each route."""
        listing = artworks_with_prediction().order_by("-created_at", "-id")
        portal_deep = min(2000 * PAGE, size - 2 * PAGE)
        api_deep = min(5000 * PAGE, size - 2 * PAGE)
        portal_row = listing[portal_deep - 1]
        api_row = listing[api_deep - 1]
        rng = np.random.default_rng(5)  # the same works at every size
        ready = Artwork.objects.filter(status=Artwork.Status.READY)
        picks = sorted(int(i) for i in rng.integers(1, min(size, 10_000), 12))
        works = list(ready.filter(pk__in=picks).values_list("pk", flat=True))[:5]
        types = {t.pk: t.slug for t in ArtworkType.objects.all()}
        own = dict(artworks_with_prediction().filter(pk__in=works).values_list("pk", "effective_type_id"))
        title = Artwork.objects.get(pk=works[0]).title
        artist = Artwork.objects.get(pk=works[0]).artist  # one of a few: a word in a seventh of the catalogue
        catalogue = reverse("catalogue:artwork-list")
        api = reverse("api-artwork-list")
        box = self._map_box()
        return [
            ("catalogue /", [catalogue], False),
            (
                f"catalogue page {portal_deep // PAGE + 1:,} (keyset)",
                [f"{catalogue}?cursor={keyset_cursor(listing, portal_row)}"],
                False,
            ),
            ("catalogue filtered by type", [f"{catalogue}?type=painting"], False),
            ("catalogue search by title", [f"{catalogue}?{urlencode({'search': title})}"], False),
            ("catalogue search, common word", [f"{catalogue}?{urlencode({'search': artist})}"], False),
            ("catalogue map box (3 % of works)", [f"{catalogue}?{urlencode({'map_box': box})}"], False),
            ("review queue (lowest confidence)", [reverse("catalogue:review")], False),
            ("review queue by entropy", [f"{reverse('catalogue:review')}?order=entropy"], False),
            ("review queue by margin", [f"{reverse('catalogue:review')}?order=margin"], False),
            ("mislabels queue", [reverse("catalogue:mislabels")], False),
            ("quality", [reverse("catalogue:quality")], False),
            ("map", [reverse("catalogue:map")], False),
            ("Models page", [reverse("catalogue:models")], False),
            ("API list", [api], True),
            (
                f"API page {api_deep // PAGE + 1:,} (keyset)",
                [f"{api}?cursor={keyset_cursor(listing, api_row)}"],
                True,
            ),
            ("API filtered by type", [f"{api}?type=painting"], True),
            ("API search by title", [f"{api}?{urlencode({'search': title})}"], True),
            ("API similar", [reverse("api-artwork-similar", args=[pk]) for pk in works], True),
            (
                "API similar with type",
                [f"{reverse('api-artwork-similar', args=[pk])}?type={types[own[pk]]}" for pk in works],
                True,
            ),
            ("artwork page", [reverse("catalogue:artwork-detail", args=[pk]) for pk in works], False),
        ]

    def _measure(self, size: int, requests: int) -> list[RouteResult]:
        session, token = self._credentials()
        port = free_port()
        server = self._server_start(port)
        results = []
        try:
            self._wait_ready(port, token, server)
            client = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            for name, urls, is_api in self._routes(size):
                headers = (
                    {"Authorization": f"Token {token}"} if is_api else {"Cookie": f"sessionid={session}"}
                )
                samples, status, size_bytes = [], 0, 0
                for n in range(WARM_UP + requests):
                    url = urls[n % len(urls)]
                    status, size_bytes, server_ms = _get(client, url, headers)
                    if n >= WARM_UP:
                        samples.append(server_ms)
                result = RouteResult(
                    name=name,
                    url=urls[0],
                    p50_ms=float(np.percentile(samples, 50)),
                    p95_ms=float(np.percentile(samples, 95)),
                    bytes=size_bytes,
                    status=status,
                    samples=samples,
                )
                results.append(result)
                self.out(
                    f"  {name:<36} p50 {result.p50_ms:8.1f} ms  p95 {result.p95_ms:8.1f} ms  "
                    f"{result.bytes / 1024:7.1f} KB  HTTP {status}"
                )
        finally:
            server_stop(server)
        return results

    def _credentials(self) -> tuple[str, str]:
        """A curator's session (the portal) and token (the API)."""
        user, _ = get_user_model().objects.get_or_create(username=BENCH_USER)
        user.groups.add(Group.objects.get(name="Curators"))
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
                if _get(client, "/api/v1/types/", {"Authorization": f"Token {token}"})[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise CommandError("gunicorn did not answer in time; see var/bench-pages/gunicorn.log")

    # --- report -----------------------------------------------------------------------------------------------

    def _summary(self, runs: list[SizeRun]) -> None:
        if len(runs) < 2:
            return
        small, large = runs[0], runs[-1]
        self.out(
            f"\nSummary: server-side p95 (p50) in ms, {small.size:,} vs {large.size:,} artworks; goal: p95 at "
            f"{large.size:,} <= {GOAL_RATIO:g}x at {small.size:,} and <= {GOAL_MS:g} ms. Load average "
            f"{small.load_average[0]:.1f} / {large.load_average[0]:.1f} on {os.cpu_count()} CPUs."
        )
        self.out(
            f"{'route':<36} {'small p95 (p50)':>17} {'large p95 (p50)':>17} {'ratio':>6} {'KB':>13}  goal"
        )
        met = 0
        for a, b in zip(small.routes, large.routes, strict=True):
            ratio = b.p95_ms / a.p95_ms if a.p95_ms else float("inf")
            ok = ratio <= GOAL_RATIO and b.p95_ms <= GOAL_MS
            met += ok
            self.out(
                f"{b.name:<36} {a.p95_ms:8.1f} ({a.p50_ms:6.1f}) {b.p95_ms:8.1f} ({b.p50_ms:6.1f}) {ratio:6.2f} "
                f"{a.bytes / 1024:6.1f}/{b.bytes / 1024:6.1f}  {'MET' if ok else 'MISSED'}"
            )
        self.out(f"{met} of {len(large.routes)} routes meet the goal.")


def _get(client: http.client.HTTPConnection, url: str, headers: dict[str, str]) -> tuple[int, int, float]:
    """(status, body bytes, server-side ms from Server-Timing)."""
    client.request("GET", url, headers=headers)
    response = client.getresponse()
    body = response.read()
    timing = response.getheader("Server-Timing") or "app;dur=nan"
    server_ms = float(timing.split("dur=", 1)[1].split(",", 1)[0])
    return response.status, len(body), server_ms
