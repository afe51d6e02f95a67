"""Batch-shaped writes for the bulk import (``catalogue.importing``): a batch of checked and decoded images becomes
stored files and rows in one go, with the guarantees of a single upload (``artworks.artwork_create``).

The import checks every image with the upload's own checks and runs the model before it writes, so a batch arrives
here complete. Its files are written first, several at a time, under content-addressed names; then one transaction
inserts the artworks, their label audit trail and, when the batch was classified, every serving version's
predictions. A failure removes the files the batch wrote (never a file a committed row points at), so a row never
lacks its files. A kill between the files and the commit leaves files without rows, under the very names the next
run writes again.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from catalogue.models import Artwork, ArtworkType, LabelCorrection, artwork_image_path, artwork_thumbnail_path
from catalogue.services.artworks import stored_files_delete
from catalogue.services.classification import prediction_store
from catalogue.services.labels import provenance_given
from inference.models import ModelVersion

# Each attempt leaves out the drafts that conflicted with a concurrent write, so a third conflict in a row means
# something keeps writing the same files: the caller is told rather than looping.
CONFLICT_ATTEMPTS = 3


@dataclass(frozen=True)
class ArtworkDraft:
    """One new artwork of a batch, its image checked and decoded: everything its row and its files are made of."""

    sha256: str
    data: bytes  # the original file, stored as it is
    extension: str  # of the stored file, from the decoded format: jpg, png, webp, tiff
    width: int  # of the original, even when it was decoded at a reduced scale
    height: int
    thumbnail: bytes  # JPEG
    color_histogram: dict[str, list[float]]
    title: str
    artist: str = ""
    date: str = ""
    accession_number: str | None = None
    description: str = ""
    curator_type: ArtworkType | None = None
    label_note: str = ""  # the audit trail's note for ``curator_type``: where that label came from
    phash: int | None = None  # perceptual hashes (catalogue/perceptual_hash.py)
    phash_turns: tuple[int, ...] = ()


@dataclass(frozen=True)
class VersionPredictions:
    """One model version's output for a batch: row i belongs to draft (or artwork) i."""

    model_version: ModelVersion
    classes: Sequence[str]
    probabilities: np.ndarray
    embeddings: np.ndarray

    def rows(self, indices: Sequence[int]) -> VersionPredictions:
        """The same output for a subset of the batch (the drafts left once conflicts are dropped)."""
        pick = list(indices)
        return VersionPredictions(
            model_version=self.model_version,
            classes=self.classes,
            probabilities=self.probabilities[pick],
            embeddings=self.embeddings[pick],
        )


@dataclass(frozen=True)
class DraftConflict:
    """Why a draft cannot be stored: its file (by sha256) is catalogued already as ``artwork_id``, or else another
    artwork uses its ``accession_number``."""

    artwork_id: int | None = None
    accession_number: str | None = None


@dataclass(frozen=True)
class BatchCreated:
    artworks: dict[int, Artwork]  # draft index -> the artwork stored, in draft order
    conflicts: dict[int, DraftConflict]  # draft index -> why it was left out


class BatchConflicting(Exception):
    """The batch met concurrent writes of the same files or accession numbers at every attempt; nothing of it was
    stored."""


class _FileTaken(Exception):
    """A file name of the batch belongs to a row committed a moment ago (a concurrent upload of the same image)."""


def artwork_drafts_check(*, drafts: Sequence[ArtworkDraft]) -> dict[int, DraftConflict]:
    """The authoritative duplicate check, just before writing: the drafts whose file (by sha256) is catalogued
    already, or whose accession number another artwork uses (draft index -> conflict). Two queries at most."""
    existing = dict(Artwork.objects.filter(sha256__in=[d.sha256 for d in drafts]).values_list("sha256", "id"))
    accessions = [d.accession_number for d in drafts if d.accession_number]
    taken = (
        set(
            Artwork.objects.filter(accession_number__in=accessions).values_list("accession_number", flat=True)
        )
        if accessions
        else set()
    )
    conflicts = {}
    for index, draft in enumerate(drafts):
        if draft.sha256 in existing:
            conflicts[index] = DraftConflict(artwork_id=existing[draft.sha256])
        elif draft.accession_number and draft.accession_number in taken:
            conflicts[index] = DraftConflict(accession_number=draft.accession_number)
    return conflicts


def artworks_create_batch(
    *,
    drafts: Sequence[ArtworkDraft],
    predictions: Sequence[VersionPredictions] = (),
    file_writers: Executor,
    label_source: str = LabelCorrection.Source.IMPORT,
) -> BatchCreated:
    """Store a batch of new artworks: their files, then in one transaction their rows and label audit trail, and
    with ``predictions`` (every serving version's) the predictions too, the artworks ready; without, pending (for
    the workers, or a later run once a model is active).

    The drafts are expected to have passed :func:`artwork_drafts_check`. One stored by someone else since (a
    concurrent upload of the same file or accession number) shows as a conflict when the batch is written: the
    batch's files are removed, the conflicting drafts left out (``BatchCreated.conflicts``) and the rest written
    again. Raises :class:`BatchConflicting` when that happens at every attempt. ``file_writers``: the threads that
    write the files (image and thumbnail) through the storage backend; the caller keeps them for many batches.
    """
    kept = list(range(len(drafts)))
    conflicts: dict[int, DraftConflict] = {}
    for attempt in range(CONFLICT_ATTEMPTS):
        if attempt:
            found = artwork_drafts_check(drafts=[drafts[i] for i in kept])
            conflicts.update({kept[j]: conflict for j, conflict in found.items()})
            kept = [i for j, i in enumerate(kept) if j not in found]
        if not kept:
            return BatchCreated(artworks={}, conflicts=conflicts)
        try:
            artworks = _batch_store(
                drafts=[drafts[i] for i in kept],
                predictions=[version.rows(kept) for version in predictions],
                file_writers=file_writers,
                label_source=label_source,
            )
        except (IntegrityError, _FileTaken):
            continue  # the batch's files are gone again; the next attempt finds which drafts conflicted
        return BatchCreated(artworks=dict(zip(kept, artworks, strict=True)), conflicts=conflicts)
    raise BatchConflicting("The batch kept conflicting with concurrent writes; run the import again.")


def artworks_predictions_store(
    *, artwork_ids: Sequence[int], predictions: Sequence[VersionPredictions]
) -> None:
    """Store every serving version's predictions for artworks stored earlier and still pending (an interrupted
    import's), and mark them ready, in one transaction."""
    with transaction.atomic():
        _predictions_store(artwork_ids=artwork_ids, predictions=predictions)
        now = timezone.now()
        Artwork.objects.filter(pk__in=artwork_ids, status=Artwork.Status.PENDING).update(
            status=Artwork.Status.READY, error="", processed_at=now, updated_at=now
        )


def _batch_store(
    *,
    drafts: Sequence[ArtworkDraft],
    predictions: Sequence[VersionPredictions],
    file_writers: Executor,
    label_source: str,
) -> list[Artwork]:
    """One attempt at a batch. Whatever goes wrong, the files it wrote are removed before the exception leaves."""
    ready = bool(predictions)
    now = timezone.now()
    artworks = [_artwork(draft, ready=ready, now=now, label_source=label_source) for draft in drafts]
    written: list[str] = []
    try:
        _files_write(artworks=artworks, drafts=drafts, written=written, file_writers=file_writers)
        with transaction.atomic():
            Artwork.objects.bulk_create(artworks)
            LabelCorrection.objects.bulk_create(
                LabelCorrection(
                    artwork=artwork,
                    from_type=None,
                    to_type=draft.curator_type,
                    source=label_source,
                    note=draft.label_note,
                )
                for artwork, draft in zip(artworks, drafts, strict=True)
                if draft.curator_type is not None
            )
            # After the labels, in their transaction: prediction_store's sync writes the embeddings of the works
            # whose label is not the model's type (without predictions there is nothing to write yet).
            _predictions_store(artwork_ids=[artwork.pk for artwork in artworks], predictions=predictions)
    except BaseException:
        _unreferenced_files_delete(written)
        raise
    return artworks


def _artwork(draft: ArtworkDraft, *, ready: bool, now: Any, label_source: str) -> Artwork:
    artwork = Artwork(
        title=draft.title[:300],
        artist=draft.artist,
        date=draft.date,
        accession_number=draft.accession_number,
        description=draft.description,
        sha256=draft.sha256,
        width=draft.width,
        height=draft.height,
        file_size=len(draft.data),
        color_histogram=draft.color_histogram,
        curator_type=draft.curator_type,
        label_provenance=provenance_given(curator_type=draft.curator_type, source=label_source),
        status=Artwork.Status.READY if ready else Artwork.Status.PENDING,
        processed_at=now if ready else None,
        phash=draft.phash,
        phash_turns=list(draft.phash_turns),
    )
    # Content-addressed names (the model's upload_to): the same file always gets the same name, so a run that
    # repeats an interrupted one writes over its leftovers instead of beside them.
    artwork.image.name = artwork_image_path(artwork, f"upload.{draft.extension}")
    artwork.thumbnail.name = artwork_thumbnail_path(artwork, "thumb.jpg")
    return artwork


def _predictions_store(*, artwork_ids: Sequence[int], predictions: Sequence[VersionPredictions]) -> None:
    for version in predictions:
        prediction_store(
            artwork_ids=artwork_ids,
            model_version=version.model_version,
            classes=version.classes,
            probabilities=version.probabilities,
            embeddings=version.embeddings,
        )


def _files_write(
    *,
    artworks: list[Artwork],
    drafts: Sequence[ArtworkDraft],
    written: list[str],
    file_writers: Executor,
) -> None:
    """Write every image and thumbnail of the batch through the storage backend, several at a time.

    A name already taken was left by an interrupted run (its row was never committed) and may be half-written: it
    is replaced, unless a row committed meanwhile (a concurrent upload of the same image) points at it, which makes
    the draft a duplicate after all (:class:`_FileTaken`).
    """
    jobs = [
        (field_file.storage, str(field_file.name), content)
        for artwork, draft in zip(artworks, drafts, strict=True)
        for field_file, content in ((artwork.image, draft.data), (artwork.thumbnail, draft.thumbnail))
    ]
    futures = [
        file_writers.submit(_file_write_new, storage, name, content, written)
        for storage, name, content in jobs
    ]
    try:
        wait(futures)
    except BaseException:
        wait(futures)  # Ctrl-C: let the writers finish, so that the clean-up sees every file they wrote
        raise
    taken = [job for job, future in zip(jobs, futures, strict=True) if future.result() is False]
    for storage, name, content in taken:
        if Artwork.objects.filter(Q(image=name) | Q(thumbnail=name)).exists():
            raise _FileTaken(name)
        storage.delete(name)
        if not _file_write_new(storage, name, content, written):
            raise _FileTaken(name)


def _file_write_new(storage: Any, name: str, content: bytes, written: list[str]) -> bool:
    """Save ``content`` as ``name``; False (and nothing left behind) if the name is taken."""
    saved = storage.save(name, ContentFile(content))
    if saved != name:
        storage.delete(saved)
        return False
    written.append(name)  # list.append is atomic: the writer threads share this list
    return True


def _unreferenced_files_delete(names: list[str]) -> None:
    """Remove files a failed batch wrote, except any a committed row points at (a concurrent upload's)."""
    if not names:
        return
    referenced = set(Artwork.objects.filter(image__in=names).values_list("image", flat=True))
    referenced |= set(Artwork.objects.filter(thumbnail__in=names).values_list("thumbnail", flat=True))
    stored_files_delete(n for n in names if n not in referenced)
