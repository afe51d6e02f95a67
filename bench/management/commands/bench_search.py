"""Benchmark of "similar works" at scale (``make bench-search``): catalogues of 10k, 100k and 1M artworks in the real
PostgreSQL with pgvector, searched through the project's own selector, ``catalogue.selectors.embedding_nearest``.

Embeddings are realistic: the active model's embeddings of the real images in ``../shared/data/art-images``
(computed once, cached under ``var/bench-search/``), each catalogue row a copy of one of them with a little gaussian
noise, renormalised. The noise is scaled to the real embeddings' own nearest-neighbour distance, so copies of one
image form a cluster about as tight as the real collection's neighbourhoods (uniform random vectors would have no
structure, which defeats any index and says nothing about a real catalogue). Each row takes its image's predicted
type; 1 % get a curator type instead, so the type filter's OR (curator type, else predicted type) is exercised.

For each size it prints: HNSW build time and index size; latency p50/p95 of the selector; recall@5 against exact
search (numpy over every vector in the run, ties counted as hits), unfiltered and with a type filter (the query's
own type, and the rarest type); how many queries fell back to the exact scan; and whether five results always came
back. ``--ef-search`` sweeps the selector's ``ef_search`` (default ``HNSW_EF_SEARCH``); ``--index`` tries several
(m, ef_construction).

Rows go in by binary COPY into a staging table, then INSERT ... SELECT; larger sizes add rows and rebuild the index
from scratch (each build time is for the whole catalogue). Only on a database named ``*bench*`` (``make
bench-search`` sets ``ARTSITE_DATABASE_NAME=artsite_bench_search``), whose catalogue it empties.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from bench.pgcopy import stage_create, stage_load
from catalogue.models import EMBEDDING_DIMENSIONS, Artwork, ArtworkType, MovedEmbedding, Prediction
from catalogue.selectors.similarity import HNSW_EF_SEARCH, SearchStats, embedding_nearest
from catalogue.services.moved_embeddings import moved_embeddings_sync

DEFAULT_FOLDER = settings.BASE_DIR.parent / "shared" / "data" / "art-images"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff"}
INDEX_NAME = "prediction_embedding_hnsw"
CHUNK = 10_000
K = 5
GOALS = {
    100_000: {"unfiltered": (5.0, 0.98)},
    1_000_000: {"unfiltered": (10.0, 0.98), "own type": (15.0, None)},
}


@dataclass
class Measure:
    label: str
    ef_search: int
    queries: int
    p50_ms: float
    p95_ms: float
    recall: float
    short: int  # queries that got fewer than five results although five existed
    fallbacks: int  # queries answered by the exact scan after a short index result
    db_p50_ms: float = 0.0  # of that, waiting for PostgreSQL (all statements of one search)
    python_cpu_p50_ms: float = 0.0  # CPU time this process spent per search (ORM, model instances)


@dataclass
class SizeResult:
    size: int
    m: int
    ef_construction: int
    load_s: float
    build_s: float
    index_mb: float
    table_mb: float
    all_build_s: float = 0.0  # with the per-type partial indexes
    all_index_mb: float = 0.0
    measures: list[Measure] = field(default_factory=list)


class Command(BaseCommand):
    help = (
        "Similar-works benchmark: 10k/100k/1M artworks with realistic embeddings in a bench database; HNSW build time "
        "and size, selector latency p50/p95 and recall@5, unfiltered and with a type filter."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--sizes",
            default="10000,100000,1000000",
            help="Catalogue sizes, comma-separated, ascending, multiples of 10000 (default 10000,100000,1000000).",
        )
        parser.add_argument(
            "--queries", type=int, default=200, help="Measured queries per case (default 200)."
        )
        parser.add_argument(
            "--ef-search",
            default="",
            help="ef_search values to sweep, e.g. 40,64,100 (default: the selector's own value, HNSW_EF_SEARCH, only).",
        )
        parser.add_argument(
            "--index",
            default="",
            help="Index parameters to try as m:ef_construction pairs, e.g. 16:64,24:128 (default: the model's).",
        )
        parser.add_argument(
            "--images", type=Path, default=DEFAULT_FOLDER, help=f"Real images (default {DEFAULT_FOLDER})."
        )
        parser.add_argument(
            "--noise",
            type=float,
            default=0.5,
            help="Noise norm as a share of the real embeddings' median nearest-neighbour distance.",
        )
        parser.add_argument(
            "--curated", type=float, default=0.01, help="Share of rows given a curator type (0.01)."
        )
        parser.add_argument("--seed", type=int, default=7, help="Random seed (default 7).")
        parser.add_argument(
            "--maintenance-work-mem",
            default="1GB",
            help="maintenance_work_mem for the index build (default 1GB).",
        )
        parser.add_argument(
            "--parallel-workers",
            type=int,
            default=1,
            help="max_parallel_maintenance_workers for the build (default 1: two cores here).",
        )
        parser.add_argument(
            "--json", type=Path, default=None, help="Also write the results to this JSON file."
        )
        parser.add_argument(
            "--explain", action="store_true", help="Print the query plans of the selector's queries."
        )
        parser.add_argument(
            "--measure-only",
            action="store_true",
            help="Measure the catalogue an earlier run left (one size, with its indexes): no load, no build. The "
            "rows are regenerated from the same seed, so the exact answers are those of the rows in the database.",
        )

    # --- entry point ------------------------------------------------------------------------------------------

    def handle(self, *args: Any, **options: Any) -> None:
        name = connection.settings_dict["NAME"]
        if "bench" not in name:
            raise CommandError(
                f"Refusing to run on database {name!r}: it empties the catalogue. Use make bench-search."
            )
        sizes = sorted(int(s) for s in options["sizes"].split(",") if s.strip())
        if not sizes or any(s % CHUNK for s in sizes):
            raise CommandError(f"--sizes must be multiples of {CHUNK}.")
        self.options = options
        self.rng_seed = options["seed"]

        call_command("migrate", interactive=False, verbosity=0)
        from inference.services import model_ensure_active

        version = model_ensure_active()
        if version is None:
            raise CommandError(
                "No model version: train one first (make train) so the embeddings are the model's."
            )
        self.version = version
        self.out(f"Database {name}; model {version.version}; pgvector {self._pgvector_version()}")

        real, real_types = self.real_embeddings(version.version, options["images"])
        self.types = list(ArtworkType.objects.order_by("pk"))
        slugs = [t.slug for t in self.types]
        self.noise = self._noise_norm(real) * options["noise"]
        self.out(
            f"{len(real)} real embeddings; noise norm {self.noise:.4f} "
            f"({options['noise']:.2f} x median nearest-neighbour distance); "
            "types of the real images: "
            + ", ".join(f"{s} {np.mean(real_types == i):.0%}" for i, s in enumerate(slugs))
        )
        self.real, self.real_types = real, real_types

        default_params = self._model_index_params()
        index_params = [tuple(int(x) for x in p.split(":")) for p in options["index"].split(",") if p.strip()]
        index_params = index_params or [default_params]
        ef_values = [int(x) for x in options["ef_search"].split(",") if x.strip()] or [HNSW_EF_SEARCH]

        results: list[SizeResult] = []
        if options["measure_only"]:
            results.append(self._measure_loaded(sizes, ef_values))
            sizes = []
        else:
            self._reset_catalogue()
        loaded = 0
        for size in sizes:
            started = time.perf_counter()
            self._load(loaded, size)
            load_s = time.perf_counter() - started
            loaded = size
            self._analyze()
            for m, ef_construction in index_params:
                results.append(self._build_and_measure(size, m, ef_construction, load_s, ef_values))
        self._summary(results)
        if options["json"]:
            options["json"].write_text(json.dumps([asdict(r) for r in results], indent=2))
            self.out(f"Results written to {options['json']}")

    def out(self, text: str = "") -> None:
        self.stdout.write(text)
        self.stdout.flush()

    # --- embeddings -------------------------------------------------------------------------------------------

    def real_embeddings(self, version: str, folder: Path) -> tuple[np.ndarray, np.ndarray]:
        """The model's embeddings and predicted class of every real image (cached per model version and file list)."""
        from PIL import Image

        from inference.loader import get_classifier
        from inference.preprocessing import ImageRejected, decode_image

        files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise CommandError(f"No images under {folder}.")
        digest = hashlib.sha256("\n".join(str(p.relative_to(folder)) for p in files).encode()).hexdigest()[
            :12
        ]
        cache = Path(settings.VAR_DIR) / "bench-search" / f"embeddings-{version}-{digest}.npz"
        if cache.exists():
            data = np.load(cache)
            self.out(f"Embeddings from {cache}")
            return data["embeddings"], data["types"]

        classifier = get_classifier(version)
        slugs = [t.slug for t in ArtworkType.objects.order_by("pk")]
        class_to_type = np.array([slugs.index(c) for c in classifier.classes])
        embeddings, types = [], []
        batch: list[Image.Image] = []
        started = time.perf_counter()

        def flush() -> None:
            probabilities, vectors = classifier.predict_images(batch)
            embeddings.append(vectors)
            types.append(class_to_type[np.argmax(probabilities, axis=1)])
            batch.clear()

        for i, path in enumerate(files, 1):
            try:
                batch.append(decode_image(path.read_bytes(), draft=classifier.input_size).image)
            except ImageRejected:
                continue
            if len(batch) == 64:
                flush()
            if i % 512 == 0:
                self.out(f"  embedded {i}/{len(files)} images ({i / (time.perf_counter() - started):.0f}/s)")
        if batch:
            flush()
        result = np.concatenate(embeddings).astype(np.float32), np.concatenate(types).astype(np.int16)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, embeddings=result[0], types=result[1])
        self.out(
            f"Embedded {len(result[0])} images in {time.perf_counter() - started:.0f}s; cached in {cache}"
        )
        return result

    @staticmethod
    def _noise_norm(real: np.ndarray) -> float:
        sims = real @ real.T
        np.fill_diagonal(sims, -np.inf)
        nearest = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * sims.max(axis=1)))
        return float(np.median(nearest))

    def chunk(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows index*CHUNK+1 .. (index+1)*CHUNK: (vectors, predicted type index, curator type index or -1).
        Seeded per chunk, so a larger catalogue extends a smaller one with the same rows."""
        rng = np.random.default_rng([self.rng_seed, index])
        base = rng.integers(0, len(self.real), size=CHUNK)
        noise = rng.normal(size=(CHUNK, EMBEDDING_DIMENSIONS)).astype(np.float32)
        noise *= self.noise / np.sqrt(EMBEDDING_DIMENSIONS)
        vectors = self.real[base] + noise
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        predicted = self.real_types[base].astype(np.int64)
        curated = np.full(CHUNK, -1, dtype=np.int64)
        pick = rng.random(CHUNK) < self.options["curated"]
        curated[pick] = (predicted[pick] + rng.integers(1, len(self.types), size=int(pick.sum()))) % len(
            self.types
        )
        return vectors.astype(np.float32), predicted, curated

    def vectors(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Every vector of a catalogue of ``size`` rows (row i has artwork id i+1) and each row's effective type."""
        parts = [self.chunk(i) for i in range(size // CHUNK)]
        vectors = np.concatenate([p[0] for p in parts])
        effective = np.concatenate([np.where(p[2] >= 0, p[2], p[1]) for p in parts])
        return vectors, effective

    # --- loading ----------------------------------------------------------------------------------------------

    def _reset_catalogue(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE catalogue_labelcorrection, catalogue_prediction, catalogue_artwork RESTART IDENTITY CASCADE"
            )
            stage_create(cursor)

    def _load(self, start: int, stop: int) -> None:
        type_ids = np.array([t.pk for t in self.types], dtype=np.int64)
        self._drop_vector_indexes()  # rebuilt from scratch after the load: faster than growing them row by row
        started = time.perf_counter()
        for index in range(start // CHUNK, stop // CHUNK):
            vectors, predicted, curated = self.chunk(index)
            ids = np.arange(index * CHUNK + 1, (index + 1) * CHUNK + 1, dtype=np.int64)
            self._copy_stage(
                ids,
                type_ids[predicted],
                np.where(curated >= 0, type_ids[np.maximum(curated, 0)], -1),
                vectors,
            )
            done = (index + 1) * CHUNK
            if done % 100_000 == 0 or done == stop:
                rate = (done - start) / (time.perf_counter() - started)
                self.out(f"  loaded {done:,} rows ({rate:,.0f} rows/s)")
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('catalogue_artwork', 'id'), (SELECT max(id) FROM catalogue_artwork))"
            )
        # The rows went in by COPY, past the services: the moved works' embeddings of the whole catalogue at once.
        moved_embeddings_sync(artwork_ids=None)

    def _copy_stage(
        self, ids: np.ndarray, types: np.ndarray, curated: np.ndarray, vectors: np.ndarray
    ) -> None:
        with connection.cursor() as cursor:
            stage_load(
                cursor,
                ids=ids,
                types=types,
                curated=curated,
                vectors=vectors,
                version_id=self.version.pk,
                provenance=Artwork.Provenance.SET,
            )

    def _analyze(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE catalogue_artwork")
            cursor.execute("ANALYZE catalogue_prediction")
            cursor.execute(f"ANALYZE {MovedEmbedding._meta.db_table}")

    # --- index and measurements -------------------------------------------------------------------------------

    def _model_index_params(self) -> tuple[int, int]:
        index = next(i for i in Prediction._meta.indexes if i.name == INDEX_NAME)
        return int(index.m), int(index.ef_construction)

    def _pgvector_version(self) -> str:
        with connection.cursor() as cursor:
            cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            row = cursor.fetchone()
        return row[0] if row else "?"

    def _drop_vector_indexes(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'catalogue_prediction' AND indexdef LIKE '%USING hnsw%'"
            )
            for (name,) in cursor.fetchall():
                cursor.execute(f'DROP INDEX IF EXISTS "{name}"')

    def _build(self, m: int, ef_construction: int) -> tuple[float, float, float, float]:
        """The global index and the per-type partial ones (migration 0003), with these parameters.
        Returns (global build s, all builds s, all HNSW MB, table with every index MB)."""
        self._drop_vector_indexes()
        params = f"WITH (m = {int(m)}, ef_construction = {int(ef_construction)})"
        with connection.cursor() as cursor:
            cursor.execute("SET maintenance_work_mem = %s", [self.options["maintenance_work_mem"]])
            cursor.execute("SET max_parallel_maintenance_workers = %s", [self.options["parallel_workers"]])
            started = time.perf_counter()
            cursor.execute(
                f"CREATE INDEX {INDEX_NAME} ON catalogue_prediction USING hnsw (embedding vector_cosine_ops) {params}"
            )
            global_s = time.perf_counter() - started
            for artwork_type in self.types:
                cursor.execute(
                    f'CREATE INDEX "prediction_hnsw_{artwork_type.slug}" ON catalogue_prediction '
                    f"USING hnsw (embedding vector_cosine_ops) {params} WHERE predicted_type_id = {int(artwork_type.pk)}"
                )
            all_s = time.perf_counter() - started
            cursor.execute("RESET maintenance_work_mem")
            cursor.execute("RESET max_parallel_maintenance_workers")
            cursor.execute(
                "SELECT pg_relation_size(%s), coalesce(sum(pg_relation_size(indexrelid)), 0), "
                "pg_total_relation_size('catalogue_prediction') FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_am a ON a.oid = c.relam WHERE i.indrelid = 'catalogue_prediction'::regclass AND a.amname = 'hnsw'",
                [INDEX_NAME],
            )
            global_bytes, all_bytes, table_bytes = (float(x) for x in cursor.fetchone())
        self.global_index_mb = global_bytes / 2**20
        return global_s, all_s, all_bytes / 2**20, table_bytes / 2**20

    def _measure_loaded(self, sizes: list[int], ef_values: list[int]) -> SizeResult:
        """--measure-only: the catalogue as an earlier run left it, which must be that run's rows and indexes."""
        if len(sizes) != 1:
            raise CommandError("--measure-only measures one size: the catalogue's, as loaded.")
        size = sizes[0]
        rows = Prediction.objects.filter(model_version=self.version).count()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*), coalesce(sum(pg_relation_size(indexrelid)), 0), "
                "coalesce(sum(pg_relation_size(indexrelid)) FILTER (WHERE c.relname = %s), 0), "
                "pg_total_relation_size('catalogue_prediction') FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_am a ON a.oid = c.relam WHERE i.indrelid = 'catalogue_prediction'::regclass AND a.amname = 'hnsw'",
                [INDEX_NAME],
            )
            indexes, all_bytes, global_bytes, table_bytes = cursor.fetchone()
        if rows != size or not global_bytes:
            raise CommandError(
                f"--measure-only needs the {size:,}-row catalogue of an earlier run with its HNSW index; "
                f"the database holds {rows:,} predictions and {indexes} HNSW indexes."
            )
        m, ef_construction = self._model_index_params()
        self.global_index_mb = float(global_bytes) / 2**20
        self.out(
            f"\n== {size:,} artworks as loaded ({indexes} HNSW indexes, {float(all_bytes) / 2**20:,.0f} MB)"
        )
        result = SizeResult(
            size=size,
            m=m,
            ef_construction=ef_construction,
            load_s=0.0,
            build_s=0.0,
            index_mb=self.global_index_mb,
            table_mb=float(table_bytes) / 2**20,
            all_index_mb=float(all_bytes) / 2**20,
        )
        return self._measure_size(result, ef_values)

    def _build_and_measure(
        self, size: int, m: int, ef_construction: int, load_s: float, ef_values: list[int]
    ) -> SizeResult:
        self.out(f"\n== {size:,} artworks: HNSW m={m}, ef_construction={ef_construction}")
        build_s, all_build_s, all_index_mb, table_mb = self._build(m, ef_construction)
        self.out(
            f"  build: global index {build_s:.1f}s ({self.global_index_mb:,.0f} MB); with the 5 per-type partial "
            f"indexes {all_build_s:.1f}s ({all_index_mb:,.0f} MB); predictions with every index {table_mb:,.0f} MB"
        )
        result = SizeResult(
            size=size,
            m=m,
            ef_construction=ef_construction,
            load_s=load_s,
            build_s=build_s,
            index_mb=self.global_index_mb,
            table_mb=table_mb,
            all_build_s=all_build_s,
            all_index_mb=all_index_mb,
        )
        return self._measure_size(result, ef_values)

    def _measure_size(self, result: SizeResult, ef_values: list[int]) -> SizeResult:
        size = result.size
        load = os.getloadavg()
        self.out(
            f"  load average {load[0]:.1f} on {os.cpu_count()} CPUs before the measures "
            "(other work on the machine inflates every figure)"
        )
        vectors, effective = self.vectors(size)
        rng = np.random.default_rng([self.rng_seed, size, 99])
        queries = rng.choice(size, size=self.options["queries"] + 20, replace=False)  # 20 warm-up queries
        counts = np.bincount(effective, minlength=len(self.types))
        rare = int(np.argmin(counts))
        self.out(
            "  rows per effective type: "
            + ", ".join(f"{t.slug} {counts[i]:,}" for i, t in enumerate(self.types))
        )
        cases = [("unfiltered", None), ("own type", "own"), (f"rare type ({self.types[rare].slug})", rare)]
        if self.options["explain"]:
            own = self.types[int(effective[queries[0]])].slug
            self._explain(vectors[queries[0]], int(queries[0]) + 1, [own, self.types[rare].slug])
        reference = self._reference()
        result.measures.append(reference)
        self.out(
            f"  reference: SELECT 1 round trip   p50 {reference.p50_ms:6.2f} ms  p95 {reference.p95_ms:6.2f} ms  "
            "(what the machine's load adds to any query, measured now)"
        )
        for ef in ef_values:
            for label, case in cases:
                measure = self._measure(label, ef, vectors, effective, queries, case)
                result.measures.append(measure)
                self.out(
                    f"  ef_search {ef:>4} {label:<28} p50 {measure.p50_ms:6.2f} ms  p95 {measure.p95_ms:6.2f} ms  "
                    f"recall@5 {measure.recall:.4f}  exact fallbacks {measure.fallbacks}/{measure.queries}  "
                    f"short {measure.short}  (p50: in PostgreSQL {measure.db_p50_ms:.2f} ms, "
                    f"Python CPU {measure.python_cpu_p50_ms:.2f} ms)"
                )
        return result

    def _measure(
        self, label: str, ef: int, vectors: np.ndarray, effective: np.ndarray, queries: np.ndarray, case: Any
    ) -> Measure:
        type_of = {}
        for row in (int(r) for r in queries):
            type_of[row] = None if case is None else int(effective[row]) if case == "own" else int(case)
        truth = _exact_answers(vectors, effective, [int(r) for r in queries[20:]], type_of)
        time.sleep(1.0)  # let numpy's worker threads go idle

        in_db = [0.0]

        def timed(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            started = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                in_db[0] += time.perf_counter() - started

        stats = SearchStats()
        times, db_times, cpu_times, found_ids = [], [], [], {}
        with connection.execute_wrapper(timed):
            for n, row in enumerate(int(r) for r in queries):
                type_index = type_of[row]
                slug = self.types[type_index].slug if type_index is not None else None
                in_db[0] = 0.0
                cpu_started, started = time.process_time(), time.perf_counter()
                found = embedding_nearest(
                    embedding=vectors[row],
                    version=self.version,
                    k=K,
                    type_slug=slug,
                    exclude_artwork_id=row + 1,
                    ef_search=ef,
                    stats=stats if n >= 20 else None,  # the warm-up's fallbacks are not counted
                )
                elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
                if n < 20:
                    continue  # warm-up
                times.append(elapsed * 1000)
                db_times.append(in_db[0] * 1000)
                cpu_times.append(cpu * 1000)
                found_ids[row] = [w.artwork.pk - 1 for w in found]

        hits = sum(sum(1 for i in found_ids[row] if i in truth[row][0]) for row in found_ids)
        short = sum(1 for row in found_ids if len(found_ids[row]) < min(K, truth[row][1]))
        measured = len(times)
        return Measure(
            label=label,
            ef_search=ef,
            queries=measured,
            p50_ms=float(np.percentile(times, 50)),
            p95_ms=float(np.percentile(times, 95)),
            recall=hits / (K * measured),
            short=short,
            fallbacks=stats.fallbacks,
            db_p50_ms=float(np.percentile(db_times, 50)),
            python_cpu_p50_ms=float(np.percentile(cpu_times, 50)),
        )

    def _reference(self) -> Measure:
        """The same-run reference (STYLE 14): the time of the cheapest possible query through the same connection."""
        times = []
        with connection.cursor() as cursor:
            for n in range(self.options["queries"] + 20):
                started = time.perf_counter()
                cursor.execute("SELECT 1")
                cursor.fetchone()
                if n >= 20:
                    times.append((time.perf_counter() - started) * 1000)
        return Measure(
            label="reference: SELECT 1",
            ef_search=0,
            queries=len(times),
            p50_ms=float(np.percentile(times, 50)),
            p95_ms=float(np.percentile(times, 95)),
            recall=1.0,
            short=0,
            fallbacks=0,
        )

    def _explain(self, vector: np.ndarray, artwork_id: int, slugs: list[str]) -> None:
        """The plans of the statements the selector itself runs (captured as it searches, then run again under
        EXPLAIN ANALYZE): unfiltered and with each type in ``slugs``. A typed search should show the type's partial
        HNSW index (``prediction_hnsw_<slug>``) for the kept half, and the moved half reading the side table and
        joining the artworks only for the rows it returns."""
        for slug in (None, *slugs):
            searches = self._search_statements(vector, artwork_id, slug)
            with connection.cursor() as cursor:
                for sql, params in searches:
                    cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", params)
                    plan = "\n".join(row[0] for row in cursor.fetchall())
                    plan = re.sub(r"'\[[^\]]*\]'::vector", "'[...]'::vector", plan)
                    self.out(f"  plan ({slug or 'unfiltered'}):\n    " + plan.replace("\n", "\n    "))

    def _search_statements(
        self, vector: np.ndarray, artwork_id: int, slug: str | None
    ) -> list[tuple[str, Any]]:
        """The vector search statements (with their parameters) one call of the selector runs."""
        captured: list[tuple[str, Any]] = []

        def capture(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            if "<=>" in sql:
                captured.append((sql, params))
            return execute(sql, params, many, context)

        with connection.execute_wrapper(capture):
            embedding_nearest(
                embedding=vector, version=self.version, k=K, type_slug=slug, exclude_artwork_id=artwork_id
            )
        return captured

    # --- summary ----------------------------------------------------------------------------------------------

    def _summary(self, results: list[SizeResult]) -> None:
        self.out(
            "\nSummary (latency through catalogue.selectors.embedding_nearest, k=5; recall@5 vs exact search)"
        )
        header = f"{'size':>10} {'m':>3} {'efc':>4} {'build s':>8} {'index MB':>9} {'ef':>4}  {'case':<28} {'p50 ms':>7} {'p95 ms':>7} {'recall@5':>8} {'db p50':>7} {'cpu p50':>7}  goal"
        self.out(header)
        for r in results:
            for mm in r.measures:
                goal = ""
                if mm.label in GOALS.get(r.size, {}):
                    p95_goal, recall_goal = GOALS[r.size][mm.label]
                    ok = mm.p95_ms <= p95_goal and (recall_goal is None or mm.recall >= recall_goal)
                    goal = f"p95 <= {p95_goal:g} ms" + (f", recall >= {recall_goal}" if recall_goal else "")
                    goal += ": MET" if ok else ": MISSED"
                self.out(
                    f"{r.size:>10,} {r.m:>3} {r.ef_construction:>4} {r.build_s:>8.1f} {r.index_mb:>9,.0f} {mm.ef_search:>4}  "
                    f"{mm.label:<28} {mm.p50_ms:>7.2f} {mm.p95_ms:>7.2f} {mm.recall:>8.4f} {mm.db_p50_ms:>7.2f} "
                    f"{mm.python_cpu_p50_ms:>7.2f}  {goal}"
                )


def _exact_answers(
    vectors: np.ndarray, effective: np.ndarray, rows: list[int], type_of: dict[int, int | None]
) -> dict[int, tuple[set[int], int]]:
    """For each query row, the rows at or within the fifth-nearest distance (ties count as hits) and how many rows
    qualify at all; computed before the timed searches, in batches (numpy's threads must not compete with them)."""
    truth: dict[int, tuple[set[int], int]] = {}
    for start in range(0, len(rows), 16):
        batch = rows[start : start + 16]
        distances = 1.0 - vectors[batch] @ vectors.T
        for n, row in enumerate(batch):
            d = distances[n]
            d[row] = np.inf
            if type_of[row] is not None:
                d = np.where(effective == type_of[row], d, np.inf)
            available = int(np.isfinite(d).sum())
            kth = np.partition(d, K - 1)[K - 1] if available >= K else np.inf
            truth[row] = (set(np.flatnonzero(d <= kth + 1e-5).tolist()) if available else set(), available)
        del distances
    return truth
