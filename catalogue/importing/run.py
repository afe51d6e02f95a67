"""One import run: set up (manifest, models), stream the folder's items through the read-and-decode pool, batch them,
and keep one batch at the model while the batch before is stored."""

from __future__ import annotations

import os
import time
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TextIO

from django.conf import settings

from catalogue.importing.classifiers import ServingModels
from catalogue.importing.labels import TypeNames
from catalogue.importing.manifest import Manifest, manifest_read
from catalogue.importing.pipeline import MAX_BYTES_IN_FLIGHT, ReadAhead
from catalogue.importing.results import (
    BAD_MANIFEST_ROW,
    DUPLICATE_IN_RUN,
    NOT_AN_IMAGE_FILE,
    ImportEvents,
    ImportFailed,
    ImportResult,
    SkipReport,
)
from catalogue.importing.sources import ImportItem, candidates_count, folder_items, item_prepare
from catalogue.importing.store import BatchWriter
from catalogue.importing.tally import Tally
from catalogue.models import Artwork

DEFAULT_BATCH_SIZE = 64


@dataclass
class _Batch:
    items: list[ImportItem]
    resumed: list[ImportItem]  # stored by an earlier run, still pending: classify (or queue) only
    new: list[ImportItem]
    prediction: Future[None] | None


def artworks_import(
    *,
    folder: Path | str,
    manifest: Path | str | None = None,
    dry_run: bool = False,
    enqueue: bool = False,
    limit: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    draft: bool = True,
    report: TextIO | None = None,
    events: ImportEvents | None = None,
) -> ImportResult:
    """Import every image below ``folder``; see the package docstring. Returns the run's counts.

    ``enqueue``: queue classification for the Celery workers instead of classifying in-process. ``dry_run``:
    read, check and count everything, write nothing (no rows, no files, no tasks). ``limit``: consider at most
    this many image files. ``report``: an open text file that receives every skipped file as CSV
    (path, reason, detail). Raises :class:`ImportFailed` before writing anything if the run cannot start.
    """
    run = ImportRun(
        folder=Path(folder),
        manifest=Path(manifest) if manifest else None,
        dry_run=dry_run,
        enqueue=enqueue,
        limit=limit,
        batch_size=batch_size,
        workers=workers,
        draft=draft,
        report=report,
        events=events,
    )
    return run.run()


class ImportRun:
    """The state of one run. ``run()`` owns the thread pools; the main thread accepts the items in walk order,
    fills a batch, and at each full batch (:meth:`_flush`) sends it to the model and stores the batch before."""

    def __init__(
        self,
        *,
        folder: Path,
        manifest: Path | None,
        dry_run: bool,
        enqueue: bool,
        limit: int | None,
        batch_size: int,
        workers: int | None,
        draft: bool,
        report: TextIO | None,
        events: ImportEvents | None,
    ) -> None:
        if not folder.is_dir():
            raise ImportFailed(f"{folder} is not a folder.")
        if limit is not None and limit < 0:
            raise ImportFailed("--limit must be zero or more.")
        self.folder = folder.resolve()
        self.manifest_path = manifest.resolve() if manifest else None
        self.dry_run = dry_run
        self.enqueue = enqueue and not dry_run
        self.limit = limit
        self.batch_size = max(1, min(int(batch_size), 1024))
        self.workers = max(1, int(workers or os.cpu_count() or 1))
        self.use_draft = draft
        self.events = events or ImportEvents()
        self.result = ImportResult(dry_run=dry_run, enqueue=self.enqueue)
        self.report = SkipReport(report)
        self.tally = Tally(result=self.result, report=self.report, events=self.events)
        self.types = TypeNames()
        self.models = ServingModels()
        self.classify = False  # once the models are found
        report_path = getattr(report, "name", None)
        self.exclude = frozenset(
            p for p in (self.manifest_path, Path(report_path).resolve() if report_path else None) if p
        )
        self.batch: list[ImportItem] = []
        self.batch_bytes = 0
        self.batches_done = 0
        self.seen: set[bytes] = set()  # dry run only: it inserts no rows through which to find repeats
        # Hashes of the batches not committed yet (the one filling, the one at the model) -> path
        self.pending_hashes: dict[str, str] = {}
        self.in_flight: _Batch | None = None
        self.writer: BatchWriter  # made by run(), which owns its threads

    def run(self) -> ImportResult:
        started = time.perf_counter()
        try:
            with ExitStack() as stack:
                stack.enter_context(self.models)
                manifest = self._manifest()
                self._find_models()
                if self.events.total:
                    self.events.total(candidates_count(self.folder, exclude=self.exclude, limit=self.limit))
                self.writer = stack.enter_context(
                    BatchWriter(tally=self.tally, models=self.models, classify=self.classify)
                )
                pipeline = stack.enter_context(self._read_ahead())
                candidates = folder_items(
                    self.folder,
                    exclude=self.exclude,
                    limit=self.limit,
                    manifest=manifest,
                    types=self.types,
                    other_file=self._other_file,
                )
                for item in pipeline.items(candidates):
                    self._accept(item)
                self._flush(final=True)
        finally:
            self.result.model_load_seconds = self.models.load_seconds
            self.result.elapsed = time.perf_counter() - started
        return self.result

    # -- set-up --

    def _manifest(self) -> Manifest | None:
        """Read and check the manifest; its bad rows naming no image the walk will meet (missing, outside the
        folder, not an image) are reported now, the others when their file comes by."""
        if self.manifest_path is None:
            return None
        manifest = manifest_read(path=self.manifest_path, folder=self.folder, types=self.types)
        self.result.bad_rows = list(manifest.bad_rows)
        for bad in manifest.bad_rows:
            if bad.path not in manifest.bad and bad.path not in manifest.rows:
                self.report.skip(bad.path, BAD_MANIFEST_ROW, f"line {bad.line}: {bad.reason}")
        return manifest

    def _find_models(self) -> None:
        """A dry run and an asynchronous one never classify here, so they never look for a model."""
        if self.dry_run or self.enqueue:
            return
        warning = self.models.find()
        if warning:
            self.result.warnings.append(warning)
        self.result.versions = [v.model_version.version for v in self.models.versions]
        self.classify = bool(self.models.versions)

    def _read_ahead(self) -> ReadAhead:
        thumbnail_size = int(settings.ARTSITE_THUMBNAIL_SIZE)
        sizes = self.models.sizes
        # Large JPEGs decode at a reduced scale that still covers the thumbnail and every model input.
        draft = max([thumbnail_size, *sizes]) if self.use_draft else None
        return ReadAhead(
            workers=self.workers,
            batch_size=self.batch_size,
            max_bytes=int(settings.ARTSITE_MAX_UPLOAD_BYTES),
            decode=partial(item_prepare, sizes=sizes, draft=draft, thumbnail_size=thumbnail_size),
            wants_pixels=lambda item: self._needs_resume(item) and not self.enqueue,  # the workers decode it
        )

    def _other_file(self, rel: str) -> None:
        self.result.other_files += 1
        self.report.skip(rel, NOT_AN_IMAGE_FILE, "Not a JPEG, PNG, WebP or TIFF file name; not imported.")

    # -- one item --

    def _needs_resume(self, item: ImportItem) -> bool:
        """An artwork of an interrupted import: stored, never classified. Classify it (or queue it) now."""
        return (
            item.existing is not None
            and item.existing[1] == Artwork.Status.PENDING
            and not self.tally.is_ours(item.existing[0])
            and not self.dry_run
            and (self.enqueue or bool(self.models.versions))
        )

    def _accept(self, item: ImportItem) -> None:
        """Skip the item, or add it to the batch (flushed when full)."""
        if item.skip is not None:
            self.tally.skip(item, *item.skip)
            return
        if item.existing is not None and not self._needs_resume(item):
            self.tally.skip_duplicate(item, item.existing[0])
            return
        if self.dry_run:
            digest = bytes.fromhex(item.sha256)
            if digest in self.seen:
                self.tally.skip(item, DUPLICATE_IN_RUN, "The same file appears earlier in this folder.")
                return
            self.seen.add(digest)
        elif item.sha256 in self.pending_hashes:
            self.tally.skip(item, DUPLICATE_IN_RUN, f"The same file as {self.pending_hashes[item.sha256]}.")
            return
        self.pending_hashes[item.sha256] = item.candidate.rel
        self.batch.append(item)
        self.batch_bytes += len(item.data)
        if len(self.batch) >= self.batch_size or self.batch_bytes >= MAX_BYTES_IN_FLIGHT // 2:
            self._flush()

    # -- a batch --

    def _flush(self, *, final: bool = False) -> None:
        """Send the batch to the model thread, and meanwhile store the previous batch (its predictions are
        ready by then): the model runs while files and rows of the batch before are written."""
        batch, self.batch, self.batch_bytes = self.batch, [], 0
        if self.dry_run:  # nothing is resumed in a dry run: every catalogued hash was a duplicate
            self.tally.imported(batch)
            for item in batch:
                item.release()
            self.tally.advance(len(batch))
            self.pending_hashes = {}
            return
        current = None
        if batch:
            resumed = [item for item in batch if item.existing is not None]
            new = self.writer.drop_conflicts([item for item in batch if item.existing is None])
            prediction = None
            if self.classify and (resumed or new):
                # The model runs before anything is written: rows are then inserted ready, with their
                # predictions, in one transaction, so a row is never left half-done by this path.
                prediction = self.models.predict_later(resumed + new)
            current = _Batch(items=batch, resumed=resumed, new=new, prediction=prediction)
        previous, self.in_flight = self.in_flight, current
        if previous is not None:
            self._complete(previous)
        if final and self.in_flight is not None:
            last, self.in_flight = self.in_flight, None
            self._complete(last)

    def _complete(self, batch: _Batch) -> None:
        """Store a predicted batch, queue or count what stays pending, and let go of its items."""
        if batch.prediction is not None:
            batch.prediction.result()
        stored = self.writer.store_new(batch.new)
        resumed = self.writer.store_resumed(batch.resumed)
        todo = resumed + stored
        if self.enqueue:
            self.writer.queue(todo)
        elif not self.classify:
            self.result.left_pending += len(todo)
        for item in batch.items:
            # Committed now (or skipped): the database finds repeats of these from here on.
            self.pending_hashes.pop(item.sha256, None)
            item.release()
        self.tally.advance(len(todo))
        self.batches_done += 1
        if self.events.batch_done:
            self.events.batch_done(self.batches_done)
