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

from catalogue.models import Artwork, ArtworkType, LabelCorrection
from catalogue.services.classification import classification_enqueue
from catalogue.services.explanations import explanation_files
from catalogue.services.labels import provenance_given
from inference.preprocessing import DecodedImage, ImageRejected, decode_image

logger = logging.getLogger(__name__)


HISTOGRAM_BINS = 32


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
    _refuse_duplicates(sha256=checked.sha256, accession_number=accession_number)

    decoded = checked.decoded
    artwork = Artwork(
        title=title[:300],
        artist=(artist or "").strip()[:300],
        date=(date or "").strip()[:100],
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


def artwork_update(*, artwork: Artwork, **fields: Any) -> Artwork:
    """Change an artwork's metadata (title, artist, date, accession number, description)."""
    allowed = {"title", "artist", "date", "accession_number", "description"}
    unknown = set(fields) - allowed
    if unknown:
        raise ArtworkRejected(f"Unknown field(s): {', '.join(sorted(unknown))}.", field=sorted(unknown)[0])
    if "title" in fields and not (fields["title"] or "").strip():
        raise ArtworkRejected("A title is required.", field="title", reason="missing_title")
    if "accession_number" in fields:
        fields["accession_number"] = (fields["accession_number"] or "").strip() or None
        number = fields["accession_number"]
        if number and Artwork.objects.filter(accession_number=number).exclude(pk=artwork.pk).exists():
            raise ArtworkRejected(
                f"Accession number {number} is already used by another artwork.",
                field="accession_number",
                reason="duplicate_accession",
            )
    for name, value in fields.items():
        setattr(artwork, name, value if value is not None or name == "accession_number" else "")
    artwork.save(update_fields=[*fields, "updated_at"])
    return artwork


def artwork_delete(*, artwork: Artwork) -> None:
    """Delete an artwork, its predictions and audit trail, and — once the delete is committed — its files (image,
    thumbnail, explanation maps)."""
    names = [n for n in (artwork.image.name, artwork.thumbnail.name) if n]
    names += explanation_files(sha256=artwork.sha256)
    artwork.delete()
    transaction.on_commit(lambda: stored_files_delete(names))
