"""The collection map at 100k and 1M works: computing the layout (PCA fitted on a sample, every work placed in
SQL), and the binary the page downloads (its size raw and gzipped, the server's time to build it and to serve it
from the cache or answer 304).

Runs on a bench database only (``make bench-map``: artsite_bench_map): it empties the catalogue and fills it with
synthetic clustered embeddings through a binary COPY (the layout's cost does not depend on what the vectors mean).
"""

from __future__ import annotations

import gzip
import os
import time
from typing import Any

import numpy as np
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.test import Client

from bench.pgcopy import stage_create, stage_load
from catalogue.models import EMBEDDING_DIMENSIONS, Artwork, ArtworkType, MapLayout
from catalogue.services.maps import map_layout_compute, map_points_build

CHUNK = 50_000


class Command(BaseCommand):
    help = (
        "Collection-map benchmark: layout time, binary size and server time at each catalogue size, on synthetic "
        "clustered embeddings in a bench database (it empties the catalogue)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--sizes",
            default="100000,1000000",
            help=f"Catalogue sizes, ascending, multiples of {CHUNK} (default 100000,1000000).",
        )
        parser.add_argument(
            "--clusters", type=int, default=40, help="Clusters in the embeddings (default 40)."
        )
        parser.add_argument("--repeat", type=int, default=5, help="Requests timed per case (default 5).")
        parser.add_argument("--seed", type=int, default=7, help="Random seed (default 7).")

    def handle(self, *args: Any, **options: Any) -> None:
        name = connection.settings_dict["NAME"]
        if "bench" not in name:
            raise CommandError(
                f"Refusing to run on database {name!r}: it empties the catalogue. Use make bench-map."
            )
        sizes = sorted(int(s) for s in options["sizes"].split(",") if s.strip())
        if not sizes or any(s % CHUNK for s in sizes):
            raise CommandError(f"--sizes must be multiples of {CHUNK}.")
        call_command("migrate", interactive=False, verbosity=0)
        from inference.services import model_ensure_active  # noqa: PLC0415  same lazy import as the other benches

        version = model_ensure_active()
        if version is None:
            raise CommandError("No model version is registered.")
        self.version = version
        rng = np.random.default_rng(options["seed"])
        self.centres = rng.normal(size=(options["clusters"], EMBEDDING_DIMENSIONS)).astype(np.float32)
        self.seed = options["seed"]
        self.type_ids = np.array([t.pk for t in ArtworkType.objects.order_by("pk")], dtype=np.int64)
        self._reset()
        loaded = 0
        for size in sizes:
            started = time.perf_counter()
            for index in range(loaded // CHUNK, size // CHUNK):
                self._load_chunk(index)
            loaded = size
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE catalogue_artwork")
                cursor.execute("ANALYZE catalogue_prediction")
            self.out(f"\n{size:,} works loaded in {time.perf_counter() - started:.0f} s  [{self._load()}]")
            self._measure(size, options["repeat"])

    def out(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    @staticmethod
    def _load() -> str:
        return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())

    def _reset(self) -> None:
        MapLayout.objects.all().delete()
        with connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE catalogue_labelcorrection, catalogue_prediction, catalogue_artwork RESTART IDENTITY CASCADE"
            )
            # The map never searches by similarity: no HNSW index to maintain while loading.
            cursor.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'catalogue_prediction' "
                "AND indexdef LIKE '%USING hnsw%'"
            )
            for (index,) in cursor.fetchall():
                cursor.execute(f'DROP INDEX IF EXISTS "{index}"')
            stage_create(cursor)

    def _load_chunk(self, index: int) -> None:
        rng = np.random.default_rng([self.seed, index])
        cluster = rng.integers(0, len(self.centres), size=CHUNK)
        vectors = (
            self.centres[cluster] + rng.normal(size=(CHUNK, EMBEDDING_DIMENSIONS)).astype(np.float32) * 0.6
        )
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        predicted = self.type_ids[cluster % len(self.type_ids)]
        curated = np.where(
            rng.random(CHUNK) < 0.3, self.type_ids[rng.integers(0, len(self.type_ids), CHUNK)], -1
        )
        ids = np.arange(index * CHUNK + 1, (index + 1) * CHUNK + 1, dtype=np.int64)
        with connection.cursor() as cursor:
            stage_load(
                cursor,
                ids=ids,
                types=predicted,
                curated=curated,
                vectors=vectors,
                version_id=self.version.pk,
                provenance=Artwork.Provenance.IMPORTED,
            )
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('catalogue_artwork', 'id'), (SELECT max(id) FROM catalogue_artwork))"
            )

    def _measure(self, size: int, repeat: int) -> None:
        layout = map_layout_compute(version=self.version)
        self.out(
            f"  layout: {layout.seconds:.1f} s for {layout.placed:,} works (fitted on {layout.sample_size:,}; "
            f"explained {layout.explained_variance[0]:.1%} + {layout.explained_variance[1]:.1%})  [{self._load()}]"
        )
        builds = []
        for _ in range(repeat):
            started = time.perf_counter()
            layout = map_points_build(layout=layout)
            builds.append(time.perf_counter() - started)
        raw = len(gzip.decompress(bytes(layout.points_gzip)))
        packed = len(layout.points_gzip)
        self.out(
            f"  binary: {raw / 1e6:.2f} MB raw, {packed / 1e6:.2f} MB gzipped "
            f"({raw / layout.points_count:.1f} / {packed / layout.points_count:.2f} bytes a work); "
            f"built in the background (query + gzip) in p50 {np.median(builds) * 1000:.0f} ms, "
            f"max {max(builds) * 1000:.0f} ms  [{self._load()}]"
        )
        etag = f'"{layout.points_key}"'
        client = Client(SERVER_NAME="localhost")
        user, _ = get_user_model().objects.get_or_create(username="bench-map")
        client.force_login(user)
        url = f"/map/points/{self.version.version}/"
        for label, headers in (
            ("cached, gzipped", {"HTTP_ACCEPT_ENCODING": "gzip"}),
            ("304", {"HTTP_IF_NONE_MATCH": etag}),
        ):
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                response = client.get(url, **headers)
                times.append(time.perf_counter() - started)
            self.out(
                f"  request ({label}): {response.status_code}, p50 {np.median(times) * 1000:.1f} ms, "
                f"max {max(times) * 1000:.1f} ms"
            )
        start = time.perf_counter()
        response = client.get("/", {"map_box": "-0.05,-0.05,0.05,0.05"})
        self.out(
            f"  catalogue filtered by a small map box: {response.status_code} in "
            f"{(time.perf_counter() - start) * 1000:.0f} ms  [{self._load()}]"
        )
