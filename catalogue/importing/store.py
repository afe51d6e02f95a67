"""Handing batches to the catalogue: every row and file of an import is written by the import services
(``catalogue.services.imports``); this module turns items into what they take, and books what they did."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from django.db import transaction

from catalogue.importing.classifiers import ServingModels
from catalogue.importing.results import DUPLICATE_ACCESSION, ImportFailed
from catalogue.importing.sources import ImportItem, title_from_filename
from catalogue.importing.tally import Tally
from catalogue.models import NearDuplicatePair
from catalogue.services.classification import classification_enqueue
from catalogue.services.imports import (
    ArtworkDraft,
    BatchConflicting,
    DraftConflict,
    artwork_drafts_check,
    artworks_create_batch,
    artworks_predictions_store,
)
from catalogue.services.near_duplicates import near_duplicates_find

WRITERS = 4  # threads writing images and thumbnails through the storage backend (I/O: disk or S3)
BROKER_DOWN = "The broker could not be reached: some artworks stay pending until the workers' sweep."


def artwork_draft(item: ImportItem) -> ArtworkDraft:
    """What a checked item becomes in the catalogue: metadata from its manifest row, else a title from its file
    name; the label from its folder or row, with where it came from for the audit trail."""
    checked = item.checked
    assert checked is not None, "only checked items are stored"
    candidate, row = item.candidate, item.candidate.row
    return ArtworkDraft(
        sha256=item.sha256,
        data=item.data,
        extension=checked.decoded.extension,
        width=checked.decoded.width,
        height=checked.decoded.height,
        thumbnail=item.thumbnail,
        color_histogram=item.histogram,
        title=(row.title if row else "") or title_from_filename(candidate.path.name),
        artist=row.artist if row else "",
        date=row.date if row else "",
        accession_number=(row.accession if row else "") or None,
        description=row.description if row else "",
        curator_type=candidate.artwork_type,
        label_note=f"Type given at import ({candidate.label_origin}).",
        phash=item.hashes.phash if item.hashes else None,
        phash_turns=item.hashes.turns if item.hashes else (),
    )


class BatchWriter:
    """Stores a run's batches through the import services: new artworks (ready with their predictions when the
    run classifies, else pending) and the pending ones of an interrupted run; queues them for the workers when
    asked. Use as a context manager: the file-writing threads stop with it."""

    def __init__(self, *, tally: Tally, models: ServingModels, classify: bool) -> None:
        self.tally = tally
        self.models = models
        self.classify = classify
        self._file_writers = ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="import-write")

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file_writers.shutdown(wait=True, cancel_futures=True)

    def drop_conflicts(self, items: list[ImportItem]) -> list[ImportItem]:
        """The authoritative duplicate check before the model runs: the items whose file or accession number is
        catalogued already are skipped; returns the others."""
        conflicts = artwork_drafts_check(drafts=[artwork_draft(item) for item in items])
        for index, conflict in conflicts.items():
            self._skip_conflict(items[index], conflict)
        return [item for index, item in enumerate(items) if index not in conflicts]

    def store_new(self, items: list[ImportItem]) -> list[int]:
        """Store new artworks (their predictions ready, when the run classifies); returns their ids. Items that a
        concurrent upload stored meanwhile are skipped as duplicates."""
        if not items:
            return []
        predictions = self.models.predictions(items) if self.classify else []
        try:
            created = artworks_create_batch(
                drafts=[artwork_draft(item) for item in items],
                predictions=predictions,
                file_writers=self._file_writers,
            )
        except BatchConflicting as exc:
            raise ImportFailed(str(exc)) from None
        for index, conflict in created.conflicts.items():
            self._skip_conflict(items[index], conflict)
        stored = [items[index] for index in created.artworks]
        ids = [artwork.pk for artwork in created.artworks.values()]
        self.tally.imported(stored, ids)
        # Other photos of works already catalogued (or of this run's): counted in the report, listed for triage.
        self.tally.result.near_duplicates += near_duplicates_find(
            artwork_ids=ids, found_by=NearDuplicatePair.Found.IMPORT
        )
        if self.classify:
            self.tally.predicted(stored, self.models.active_types(stored))
            self.tally.result.classified += len(stored)
        return ids

    def store_resumed(self, items: list[ImportItem]) -> list[int]:
        """Artworks an interrupted run stored and left pending: their predictions, and ready (when the run
        classifies; else they are only counted, to be queued). Returns their ids."""
        ids = [item.existing[0] for item in items if item.existing]
        if not ids:
            return []
        result = self.tally.result
        if self.classify:
            artworks_predictions_store(artwork_ids=ids, predictions=self.models.predictions(items))
            self.tally.predicted(items, self.models.active_types(items))
            result.classified += len(ids)
        result.resumed += len(ids)
        result.candidates += len(ids)
        return ids

    def queue(self, ids: list[int]) -> None:
        """Send committed artworks to the workers (or count them left pending when the broker is down)."""
        if ids:
            transaction.on_commit(lambda: self._send(ids))  # at once: the rows were committed just before

    def _send(self, ids: list[int]) -> None:
        result = self.tally.result
        if classification_enqueue(artwork_ids=ids):
            result.queued += len(ids)
        else:
            result.left_pending += len(ids)
            if BROKER_DOWN not in result.warnings:
                result.warnings.append(BROKER_DOWN)

    def _skip_conflict(self, item: ImportItem, conflict: DraftConflict) -> None:
        if conflict.artwork_id is not None:
            self.tally.skip_duplicate(item, conflict.artwork_id)
            return
        row = item.candidate.row
        where = f"manifest line {row.line}: " if row else ""
        self.tally.skip(
            item,
            DUPLICATE_ACCESSION,
            f"{where}accession number {conflict.accession_number} is already used by another artwork.",
        )
