"""Benchmark of the bulk import (``make bench-import``): end-to-end images/s beside its two parts, measured in the
same run on the same files.

1. decode alone: read, hash, decode and check, thumbnail, colour histogram and model-size input — exactly the import's
   per-image work — in the import's pool of decoder threads, nothing stored;
2. model alone: the serving version(s) on already-decoded batches (``Classifier.predict_arrays``);
3. end to end: ``artworks_import`` into a freshly created database (decode, hash, store, thumbnail, insert,
   classify, embed, index).

The practical limit on this machine is 1 / (1/decode + 1/model): both steps compete for the same cores. The goal is
end to end >= 75 % of that limit and >= 120 images/s.

The command drops and recreates its database, so it refuses to run unless the database and the media folder are
named for it (``make bench-import`` sets ``ARTSITE_DATABASE_NAME=artsite_bench`` and
``DJANGO_MEDIA_ROOT=var/bench/media``); the developer's catalogue is never touched.
"""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalogue.importing import DEFAULT_BATCH_SIZE, ImportResult, artworks_import
from catalogue.importing.sources import (
    Candidate,
    ImportItem,
    WalkEntry,
    folder_walk,
    is_image_file,
    item_prepare,
    item_read,
)

DEFAULT_FOLDER = settings.BASE_DIR.parent / "shared" / "data" / "art-images"
GOAL_SHARE = 0.75
GOAL_RATE = 120.0
# Decoded inputs kept for the model-alone measurement (uint8; 512 x 224 x 224 x 3 is 77 MB).
MODEL_SAMPLE = 512
MODEL_SECONDS = 8.0


class Command(BaseCommand):
    help = (
        "Import benchmark: images/s end to end into a fresh database, beside decode alone and model alone measured in "
        "the same run. Drops and recreates its own database (ARTSITE_DATABASE_NAME must contain 'bench')."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "folder",
            nargs="?",
            type=Path,
            default=DEFAULT_FOLDER,
            help=f"Folder to import (default {DEFAULT_FOLDER}: train and val).",
        )
        parser.add_argument(
            "--model",
            default=None,
            help="Model version to activate (default: the version a fresh database activates).",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULT_BATCH_SIZE,
            help="Import and model batch size.",
        )
        parser.add_argument("--workers", type=int, default=None, help="Decoder threads (default: CPU cores).")
        parser.add_argument("--no-draft", action="store_true", help="Decode large JPEGs at full size.")

    def handle(self, *args: Any, **options: Any) -> None:
        from rich.console import Console

        console = Console(file=cast(IO[str], self.stdout), stderr=False)
        folder: Path = options["folder"]
        if not folder.is_dir():
            raise CommandError(f"{folder} is not a folder.")
        batch_size = options["batch_size"]
        workers = options["workers"] or os.cpu_count() or 1
        load = os.getloadavg()[0]

        console.print("Fresh database and media folder...", highlight=False)
        self._fresh_database()
        versions = self._activate(options["model"])
        classifiers = [(v, self._classifier(v.version)) for v in versions]
        sizes = sorted({c.input_size for _, c in classifiers})
        draft = None if options["no_draft"] else max(settings.ARTSITE_THUMBNAIL_SIZE, *sizes)

        files = [entry for entry in folder_walk(folder.resolve()) if is_image_file(entry[0])]
        if not files:
            raise CommandError(f"No images in {folder}.")
        for path, *_ in files:  # the page cache holds them for all three measurements alike
            path.read_bytes()

        # The parts are measured before and after the end-to-end run and averaged, so that a change in what
        # else runs on the machine meanwhile weighs on both sides of the comparison alike.
        console.print(
            f"Decode alone and model alone: {len(files)} images, {workers} threads...", highlight=False
        )
        before = self._parts(files, sizes, draft, workers, classifiers, batch_size)
        console.print("End to end...", highlight=False)
        with _Meter(database=True) as whole:
            result = artworks_import(
                folder=folder, batch_size=batch_size, workers=workers, draft=not options["no_draft"]
            )
        whole.images = result.candidates
        console.print("Decode alone and model alone again...", highlight=False)
        after = self._parts(files, sizes, draft, workers, classifiers, batch_size)
        self._check(result)
        share, end_to_end = self._table(
            console,
            title=f"Import benchmark: {folder} ({len(files)} image files)",
            parts=(before, after),
            whole=whole,
            result=result,
            classifiers=classifiers,
            workers=workers,
            batch_size=batch_size,
        )
        ok_share, ok_rate = share >= GOAL_SHARE, end_to_end >= GOAL_RATE
        console.print(
            f"Goal >= {GOAL_SHARE:.0%} of the limit: {'met' if ok_share else 'NOT met'}; "
            f"goal >= {GOAL_RATE:.0f} images/s: {'met' if ok_rate else 'NOT met'}. "
            f"Machine: {os.cpu_count()} CPU cores, load average {load:.1f} at the start, "
            f"{os.getloadavg()[0]:.1f} at the end (other processes compete for the cores: the CPU column, "
            "this process's CPU time per image, depends less on them).",
            highlight=False,
        )

    def _table(
        self,
        console: Any,
        *,
        title: str,
        parts: tuple[dict[str, _Meter], dict[str, _Meter]],
        whole: _Meter,
        result: ImportResult,
        classifiers: list[tuple[Any, Any]],
        workers: int,
        batch_size: int,
    ) -> tuple[float, float]:
        """Print the figures: each part averaged over its two measurements, the limit they set, end to end.
        Returns (end to end / limit, end to end images/s)."""
        from rich.table import Table

        before, after = parts
        decode_rate = (before["decode"].rate + after["decode"].rate) / 2
        model_rates = {
            v.version: (before[v.version].rate + after[v.version].rate) / 2 for v, _ in classifiers
        }
        model_rate = 1.0 / sum(1.0 / r for r in model_rates.values())
        end_to_end = result.candidates / whole.wall
        limit = 1.0 / (1.0 / decode_rate + 1.0 / model_rate)
        table = Table(title=title)
        table.add_column("measure")
        table.add_column("images/s", justify="right")
        table.add_column("CPU ms/image", justify="right")
        table.add_row(
            f"decode alone (read, hash, decode+check, thumbnail, histogram, resize; {workers} threads) "
            f"(before {before['decode'].rate:.1f}, after {after['decode'].rate:.1f})",
            f"{decode_rate:.1f}",
            _mean_cpu(before["decode"], after["decode"]),
        )
        for version, classifier in classifiers:
            name = version.version
            table.add_row(
                f"model alone: {name} ({classifier.input_size}px, batch {batch_size}, "
                f"XLA {'on' if classifier.jit_compiled else 'off'}) "
                f"(before {before[name].rate:.1f}, after {after[name].rate:.1f})",
                f"{model_rates[name]:.1f}",
                _mean_cpu(before[name], after[name]),
            )
        table.add_row("practical limit 1/(1/decode + 1/model)", f"{limit:.1f}", "")
        table.add_row(
            f"[bold]end to end[/] ({result.imported} imported, {result.duplicates} duplicates, "
            f"{result.unreadable_total} unreadable, {whole.wall:.1f} s)",
            f"[bold]{end_to_end:.1f}[/]",
            whole.cpu_per_image + (f" + PostgreSQL {whole.database_per_image}" if whole.database_cpu else ""),
        )
        share = end_to_end / limit
        table.add_row("end to end / limit", f"{share:.0%}", "")
        console.print(table)
        return share, end_to_end

    # -- steps --

    def _parts(
        self,
        files: list[WalkEntry],
        sizes: list[int],
        draft: int | None,
        workers: int,
        classifiers: list[tuple[Any, Any]],
        batch_size: int,
    ) -> dict[str, _Meter]:
        """Decode alone, then each serving version alone on the decoded images: a meter per part."""
        from inference.loader import BATCH_BUCKETS

        meters = {}
        with _Meter() as meter:
            samples = self._decode_alone(files, sizes, draft, workers)
        meter.images = len(files)
        meters["decode"] = meter
        for version, classifier in classifiers:
            pixels = samples[classifier.input_size]
            # Compile every padded batch shape first, unmeasured (once per process; the end-to-end run then
            # finds them ready too).
            for size in BATCH_BUCKETS:
                classifier.predict_arrays(pixels[: min(size, len(pixels))])
            with _Meter() as meter:
                meter.images = self._model_alone(classifier, pixels, batch_size)
            meters[version.version] = meter
        return meters

    def _fresh_database(self) -> None:
        import psycopg2
        from django.db import connections
        from psycopg2 import sql

        database = settings.DATABASES["default"]
        name = str(database["NAME"])
        media = Path(settings.MEDIA_ROOT)
        if "bench" not in name or "bench" not in str(media):
            raise CommandError(
                f"bench_import drops and recreates its database; the database is {name!r} and the media folder "
                f"{media}. Run it with `make bench-import` (ARTSITE_DATABASE_NAME=artsite_bench "
                "DJANGO_MEDIA_ROOT=var/bench/media) so the catalogue is never touched."
            )
        connections.close_all()
        conn = psycopg2.connect(
            dbname="postgres",
            user=database.get("USER") or None,
            password=database.get("PASSWORD") or None,
            host=database.get("HOST") or None,
            port=database.get("PORT") or None,
        )
        conn.autocommit = True
        try:
            with conn.cursor() as cursor:
                cursor.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            conn.close()
        shutil.rmtree(media, ignore_errors=True)
        call_command("migrate", interactive=False, verbosity=0)

    def _activate(self, version_name: str | None) -> list[Any]:
        from inference.models import ModelVersion
        from inference.selectors import model_versions_serving
        from inference.services import model_ensure_active, model_version_set_active

        active = model_ensure_active()
        if version_name:
            version = ModelVersion.objects.filter(version=version_name).first()
            if version is None:
                raise CommandError(f"No model version {version_name!r} in {settings.ARTSITE_MODEL_DIRS}.")
            active = model_version_set_active(version=version)
        if active is None:
            raise CommandError(
                f"No model version in {settings.ARTSITE_MODEL_DIRS}: train one first (make train)."
            )
        return model_versions_serving()

    def _classifier(self, version: str) -> Any:
        from inference.loader import ModelUnavailable, get_classifier

        try:
            return get_classifier(version)
        except ModelUnavailable as exc:
            raise CommandError(str(exc)) from exc

    def _decode_alone(
        self, files: list[WalkEntry], sizes: list[int], draft: int | None, workers: int
    ) -> dict[int, np.ndarray]:
        max_bytes = int(settings.ARTSITE_MAX_UPLOAD_BYTES)
        thumbnail_size = int(settings.ARTSITE_THUMBNAIL_SIZE)

        def work(entry: WalkEntry) -> ImportItem:
            path, rel, size, _outside = entry
            item = item_read(
                ImportItem(candidate=Candidate(path=path, rel=rel, size=size)), max_bytes=max_bytes
            )
            if item.skip is None:
                item = item_prepare(item, sizes=sizes, draft=draft, thumbnail_size=thumbnail_size)
            return item

        samples: dict[int, list[np.ndarray]] = {size: [] for size in sizes}
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for item in pool.map(work, files, chunksize=1):
                for size, pixels in item.inputs.items():
                    if len(samples[size]) < MODEL_SAMPLE:
                        samples[size].append(pixels)
                item.release()
        return {size: np.stack(arrays) for size, arrays in samples.items()}

    def _model_alone(self, classifier: Any, pixels: np.ndarray, batch_size: int) -> int:
        batches = [pixels[i : i + batch_size] for i in range(0, len(pixels), batch_size)]
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < MODEL_SECONDS:
            for batch in batches:
                classifier.predict_arrays(batch)
                done += len(batch)
        return done

    def _check(self, result: ImportResult) -> None:
        from catalogue.models import Artwork, Prediction

        ready = Artwork.objects.filter(status=Artwork.Status.READY).count()
        predictions = Prediction.objects.count()
        if ready != result.imported or predictions < result.imported:
            raise CommandError(
                f"The import reported {result.imported} artworks but {ready} are ready with {predictions} predictions."
            )


class _Meter:
    """Wall time, this process's CPU time (all threads) and, for the embedded PostgreSQL on this machine, the CPU
    time of this connection's server process."""

    def __init__(self, *, database: bool = False) -> None:
        self.database = database
        self.images = 0
        self.wall = self.cpu = self.database_cpu = 0.0

    def __enter__(self) -> _Meter:
        self._backend = _backend_pid() if self.database else None
        self._database_start = _process_cpu(self._backend)
        self._cpu_start, self._wall_start = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall_start
        self.cpu = time.process_time() - self._cpu_start
        self.database_cpu = _process_cpu(self._backend) - self._database_start

    @property
    def rate(self) -> float:
        return self.images / self.wall if self.wall else 0.0

    @property
    def cpu_per_image(self) -> str:
        return f"{self.cpu / self.images * 1000:.2f}" if self.images else ""

    @property
    def database_per_image(self) -> str:
        return f"{self.database_cpu / self.images * 1000:.2f}" if self.images else ""


def _backend_pid() -> int | None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def _process_cpu(pid: int | None) -> float:
    """User + system CPU seconds of a process on this machine (Linux /proc); 0 when it cannot be read."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _mean_cpu(*meters: _Meter) -> str:
    images = sum(m.images for m in meters)
    return f"{sum(m.cpu for m in meters) / images * 1000:.2f}" if images else ""
