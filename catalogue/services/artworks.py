"""Storing artworks: the upload checks (size, format, pixel count, truncation, duplicates), the stored image and
thumbnail, metadata edits and deletes.

Uploads are checked completely *before* anything is written, and a failure after the file is stored removes the file
again, so there is never a file without its row nor a row without its file. Classification is enqueued with
``transaction.on_commit`` so the worker never sees an uncommitted row.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from PIL import Image

from catalogue.models import (
    ACCESSION_MAX_LENGTH,
    ARTIST_MAX_LENGTH,
    DATE_MAX_LENGTH,
    DESCRIPTION_MAX_LENGTH,
    TITLE_MAX_LENGTH,
    Artwork,
    ArtworkDeletion,
    ArtworkType,
    BulkEdit,
    LabelCorrection,
)
from catalogue.perceptual_hash import image_hashes
from catalogue.services.agreement import agreement_counts_invalidate
from catalogue.services.classification import classification_enqueue
from catalogue.services.explanations import explanation_files
from catalogue.services.history import artwork_changes_record
from catalogue.services.labels import provenance_given
from inference.preprocessing import DecodedImage, ImageRejected, decode_image

logger = logging.getLogger(__name__)


HISTOGRAM_BINS = 32
# Every text field and its limit (catalogue/models.py), checked here for every writer.
TEXT_LIMITS = {
    "title": TITLE_MAX_LENGTH,
    "artist": ARTIST_MAX_LENGTH,
    "date": DATE_MAX_LENGTH,
    "accession_number": ACCESSION_MAX_LENGTH,
    "description": DESCRIPTION_MAX_LENGTH,
    "notes": DESCRIPTION_MAX_LENGTH,
}


class ArtworkRejected(Exception):
    """The upload cannot be stored; ``str(exc)`` is the message for the curator, ``field`` the form field."""

    def __init__(self, message: str, *, field: str = "image", reason: str = "invalid") -> None:
        super().__init__(message)
        self.field = field
        self.reason = reason


class DuplicateArtwork(ArtworkRejected):
    """The same file (by sha256) is already in the catalogue."""

    def __init__(self, existing: Artwork) -> None:
        super().__init__(
            f"This image is already in the catalogue as “{existing.title}” (#{existing.pk}).",
            reason="duplicate",
        )
        self.existing = existing


@dataclass(frozen=True)
class CheckedImage:
    """An upload that passed every check: its bytes, hash and decoded pixels."""

    data: bytes
    sha256: str
    decoded: DecodedImage


def image_check(*, data: bytes, draft: int | None = None) -> CheckedImage:
    """Decode and check an image against the upload limits. Raises :class:`ArtworkRejected`.

    ``draft`` (the import): decode a large JPEG at a reduced scale, no smaller than ``draft`` pixels a side, when
    only the thumbnail and the model input are needed (see :func:`inference.preprocessing.decode_image`).
    """
    try:
        decoded = decode_image(
            data,
            max_bytes=settings.ARTSITE_MAX_UPLOAD_BYTES,
            max_pixels=settings.ARTSITE_MAX_IMAGE_PIXELS,
            draft=draft,
        )
    except ImageRejected as exc:
        raise ArtworkRejected(str(exc), reason=exc.reason) from None
    return CheckedImage(data=data, sha256=hashlib.sha256(data).hexdigest(), decoded=decoded)


def read_upload(file: IO[bytes], *, max_bytes: int | None = None) -> bytes:
    """Read an uploaded file, refusing it as soon as it is larger than the limit (never reads a huge file whole)."""
    limit = settings.ARTSITE_MAX_UPLOAD_BYTES if max_bytes is None else max_bytes
    size = getattr(file, "size", None)
    if size is not None and size > limit:
        raise ArtworkRejected(
            f"The file is {size / 1e6:.1f} MB; the limit is {limit / 1e6:.0f} MB.", reason="too_large"
        )
    if hasattr(file, "seek"):
        file.seek(0)
    data = file.read(limit + 1)
    if len(data) > limit:
        raise ArtworkRejected(f"The file is larger than the {limit / 1e6:.0f} MB limit.", reason="too_large")
    return data


def display_name(*, sha256: str) -> str:
    """Where an artwork's display copy is stored (content-addressed, like the image itself)."""
    return f"display/{sha256[:2]}/{sha256}.jpg"


def artwork_display(*, artwork: Artwork) -> str:
    """The stored name of the artwork's display copy, made from the original on first use: at most
    ``ARTSITE_DISPLAY_SIZE`` pixels a side, upright, re-encoded as a JPEG that carries no metadata (no EXIF, so no
    GPS position, camera serial or owner's name). Pages and the API show this copy; the original is for curators.
    """
    name = display_name(sha256=artwork.sha256)
    if default_storage.exists(name):
        return name
    with artwork.image.open("rb") as handle:
        data = handle.read()
    side = int(settings.ARTSITE_DISPLAY_SIZE)
    image = decode_image(data, draft=side).image.copy()
    image.thumbnail((side, side), Image.Resampling.LANCZOS, reducing_gap=2.0)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=88, optimize=True)  # no exif=, icc_profile=: nothing but pixels
    stored = default_storage.save(name, ContentFile(out.getvalue()))
    if stored != name:  # another request made it meanwhile: keep that one
        stored_files_delete([stored])
    return name


def thumbnail_bytes(image: Image.Image, *, size: int | None = None) -> bytes:
    """A JPEG thumbnail that fits in a ``size``-pixel square."""
    side = size or settings.ARTSITE_THUMBNAIL_SIZE
    thumb = image.copy()
    thumb.thumbnail((side, side), Image.Resampling.LANCZOS, reducing_gap=2.0)
    out = io.BytesIO()
    thumb.save(out, format="JPEG", quality=85, optimize=True)
    return out.getvalue()


def color_histogram(image: Image.Image) -> dict[str, list[float]]:
    """Share of pixels per intensity bin for each RGB channel (computed on a small copy: it is a picture)."""
    small = image.copy()
    small.thumbnail((256, 256))
    pixels = np.asarray(small, dtype=np.uint8).reshape(-1, 3)
    result = {}
    for index, channel in enumerate("rgb"):
        counts = np.bincount(pixels[:, index] // (256 // HISTOGRAM_BINS), minlength=HISTOGRAM_BINS)
        result[channel] = [round(float(c), 5) for c in counts / max(1, len(pixels))]
    return result


def artwork_create(
    *,
    data: bytes,
    title: str,
    artist: str = "",
    date: str = "",
    accession_number: str | None = None,
    description: str = "",
    uploaded_by: Any = None,
    checked: CheckedImage | None = None,
    curator_type: ArtworkType | None = None,
    label_source: str = LabelCorrection.Source.IMPORT,
    enqueue: bool = True,
) -> Artwork:
    """Store an image and its metadata as a pending artwork and queue its classification.

    Raises :class:`ArtworkRejected` (bad file, bad metadata) or :class:`DuplicateArtwork`; in either case nothing
    has been written.
    """
    checked = checked or image_check(data=data)
    title = (title or "").strip()
    if not title:
        raise ArtworkRejected("A title is required.", field="title", reason="missing_title")
    accession_number = (accession_number or "").strip() or None
    text_lengths_check(
        title=title, artist=artist, date=date, accession_number=accession_number, description=description
    )
    _refuse_duplicates(sha256=checked.sha256, accession_number=accession_number)

    decoded = checked.decoded
    hashes = image_hashes(
        decoded.image
    )  # near-duplicates are found against these (catalogue/perceptual_hash.py)
    artwork = Artwork(
        title=title,
        artist=(artist or "").strip(),
        date=(date or "").strip(),
        accession_number=accession_number,
        description=description or "",
        sha256=checked.sha256,
        width=decoded.width,
        height=decoded.height,
        file_size=len(checked.data),
        color_histogram=color_histogram(decoded.image),
        uploaded_by=uploaded_by if getattr(uploaded_by, "pk", None) else None,
        curator_type=curator_type,
        label_provenance=provenance_given(curator_type=curator_type, source=label_source),
        phash=hashes.phash,
        phash_turns=list(hashes.turns),
    )
    stored: list[str] = []
    try:
        with transaction.atomic():
            artwork.image.save(f"upload.{decoded.extension}", ContentFile(checked.data), save=False)
            stored.append(str(artwork.image.name))
            artwork.thumbnail.save("thumb.jpg", ContentFile(thumbnail_bytes(decoded.image)), save=False)
            stored.append(str(artwork.thumbnail.name))
            artwork.save()
            if curator_type is not None:
                LabelCorrection.objects.create(
                    artwork=artwork,
                    from_type=None,
                    to_type=curator_type,
                    user=artwork.uploaded_by,
                    source=label_source,
                    note="Type given at import."
                    if label_source == LabelCorrection.Source.IMPORT
                    else "Type given at upload.",
                )
                # No moved-embedding row yet: the work has no prediction; its first one (prediction_store) writes it.
            if enqueue:
                artwork_ids = [artwork.pk]
                transaction.on_commit(lambda: classification_enqueue(artwork_ids=artwork_ids))
    except IntegrityError:
        stored_files_delete(stored)
        # Another request stored the same file (or accession number) a moment ago.
        _refuse_duplicates(sha256=checked.sha256, accession_number=accession_number)
        raise
    except BaseException:
        stored_files_delete(stored)
        raise
    return artwork


def text_lengths_check(**fields: str | None) -> None:
    """Refuse a text field longer than its limit (:data:`TEXT_LIMITS`) with a message naming the field."""
    for name, value in fields.items():
        limit = TEXT_LIMITS[name]
        if value is not None and len(value) > limit:
            label = name.replace("_", " ").capitalize()
            raise ArtworkRejected(
                f"{label} is {len(value):,} characters long; the limit is {limit:,}.",
                field=name,
                reason="too_long",
            )


def _refuse_duplicates(*, sha256: str, accession_number: str | None) -> None:
    """Raise :class:`DuplicateArtwork` if the file is catalogued, :class:`ArtworkRejected` if the accession number
    is taken."""
    existing = Artwork.objects.filter(sha256=sha256).first()
    if existing is not None:
        raise DuplicateArtwork(existing) from None
    if accession_number and Artwork.objects.filter(accession_number=accession_number).exists():
        raise ArtworkRejected(
            f"Accession number {accession_number} is already used by another artwork.",
            field="accession_number",
            reason="duplicate_accession",
        ) from None


def stored_files_delete(names: Iterable[str]) -> None:
    """Delete stored files (image, thumbnail) through the storage backend; a file that cannot be deleted is logged,
    never raised: callers use this to clean up after a failed write."""
    for name in names:
        try:
            default_storage.delete(name)
        except OSError:
            logger.warning("could not delete stored file %s", name, exc_info=True)


#: The metadata a curator edits (every edit is recorded in the artwork's history).
METADATA_FIELDS = ("title", "artist", "date", "accession_number", "description", "notes")


def artwork_update(
    *,
    artwork: Artwork,
    source: str,
    user: Any = None,
    bulk_edit: BulkEdit | None = None,
    note: str = "",
    **fields: Any,
) -> Artwork:
    """Change an artwork's metadata (title, artist, date, accession number, description, notes) and record each
    changed field in its history (old -> new, who, ``source``, the bulk edit it belongs to), in one transaction."""
    unknown = set(fields) - set(METADATA_FIELDS)
    if unknown:
        raise ArtworkRejected(f"Unknown field(s): {', '.join(sorted(unknown))}.", field=sorted(unknown)[0])
    if "title" in fields and not (fields["title"] or "").strip():
        raise ArtworkRejected("A title is required.", field="title", reason="missing_title")
    text_lengths_check(**fields)
    if "accession_number" in fields:
        fields["accession_number"] = (fields["accession_number"] or "").strip() or None
        number = fields["accession_number"]
        if number and Artwork.objects.filter(accession_number=number).exclude(pk=artwork.pk).exists():
            raise ArtworkRejected(
                f"Accession number {number} is already used by another artwork.",
                field="accession_number",
                reason="duplicate_accession",
            )
    fields = {
        name: value if value is not None or name == "accession_number" else ""
        for name, value in fields.items()
    }
    with transaction.atomic():
        locked = Artwork.objects.select_for_update().get(pk=artwork.pk)
        changes = {name: (getattr(locked, name), value) for name, value in fields.items()}
        changes = {name: pair for name, pair in changes.items() if pair[0] != pair[1]}
        for name, (_, value) in changes.items():
            setattr(locked, name, value)
            setattr(artwork, name, value)
        if changes:
            locked.save(update_fields=[*changes, "updated_at"])
            artwork_changes_record(
                artwork=locked, changes=changes, user=user, source=source, bulk_edit=bulk_edit, note=note
            )
    return artwork


def artwork_delete(*, artwork: Artwork, deleted_by: Any = None) -> ArtworkDeletion:
    """Delete an artwork, its predictions and — once the delete is committed — its files (image, thumbnail,
    display copy, explanation maps). What stays: a deletion record (who, when, the row's fields) and the label
    history, which now points at that record. Returns the record."""
    names = [n for n in (artwork.image.name, artwork.thumbnail.name) if n]
    names += [display_name(sha256=artwork.sha256)]
    names += explanation_files(sha256=artwork.sha256)
    with transaction.atomic():
        deletion = ArtworkDeletion.objects.create(
            artwork_pk=artwork.pk,
            title=artwork.title,
            sha256=artwork.sha256,
            snapshot=_snapshot(artwork),
            deleted_by=deleted_by if getattr(deleted_by, "pk", None) else None,
        )
        LabelCorrection.objects.filter(artwork=artwork).update(deletion=deletion)
        artwork.delete()
        agreement_counts_invalidate()  # a labelled work's predictions were counted against its label
    transaction.on_commit(lambda: stored_files_delete(names))
    return deletion


def _snapshot(artwork: Artwork) -> dict[str, Any]:
    """The artwork's own fields as JSON (what a deletion record keeps)."""
    return {
        "title": artwork.title,
        "artist": artwork.artist,
        "date": artwork.date,
        "accession_number": artwork.accession_number,
        "description": artwork.description,
        "label": artwork.curator_type.slug if artwork.curator_type is not None else None,
        "label_provenance": artwork.label_provenance,
        "image": artwork.image.name,
        "width": artwork.width,
        "height": artwork.height,
        "file_size": artwork.file_size,
        "uploaded_by": artwork.uploaded_by_id,
        "created_at": artwork.created_at.isoformat() if artwork.created_at else None,
    }
