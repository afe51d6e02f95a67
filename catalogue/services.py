"""Every write to the catalogue. Views, API, admin, commands and tasks call these; nothing else writes rows.

Uploads are checked completely *before* anything is written (size, format, pixel count, truncation, duplicates),
and a failure after the file is stored removes the file again, so there is never a file without its row nor a
row without its file. Classification is enqueued with ``transaction.on_commit`` so the worker never sees an
uncommitted row; if the broker is down the artwork simply stays pending and the sweep (``requeue_pending``)
sends it later.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import IO, Any

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from PIL import Image

from catalogue.models import Artwork, ArtworkType, LabelCorrection, Prediction
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


# --- Upload ---------------------------------------------------------------------------------------------------


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
    existing = Artwork.objects.filter(sha256=checked.sha256).first()
    if existing is not None:
        raise DuplicateArtwork(existing)
    if accession_number and Artwork.objects.filter(accession_number=accession_number).exists():
        raise ArtworkRejected(
            f"Accession number {accession_number} is already used by another artwork.",
            field="accession_number",
            reason="duplicate_accession",
        )

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
                    note="Type given at import.",
                )
            if enqueue:
                artwork_ids = [artwork.pk]
                transaction.on_commit(lambda: classification_enqueue(artwork_ids=artwork_ids))
    except IntegrityError:
        _delete_files(stored)
        # Another request stored the same file (or accession number) a moment ago.
        existing = Artwork.objects.filter(sha256=checked.sha256).first()
        if existing is not None:
            raise DuplicateArtwork(existing) from None
        raise ArtworkRejected(
            f"Accession number {accession_number} is already used by another artwork.",
            field="accession_number",
            reason="duplicate_accession",
        ) from None
    except BaseException:
        _delete_files(stored)
        raise
    return artwork


def _delete_files(names: Iterable[str]) -> None:
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
    """Delete an artwork, its predictions and audit trail, and — once the delete is committed — its files."""
    names = [n for n in (artwork.image.name, artwork.thumbnail.name) if n]
    artwork.delete()
    transaction.on_commit(lambda: _delete_files(names))


# --- Classification -------------------------------------------------------------------------------------------


def classification_enqueue(*, artwork_ids: Sequence[int]) -> bool:
    """Send the artworks to the workers. Returns False (and logs) when the broker cannot be reached: the artworks
    stay pending and the periodic sweep sends them when the broker is back."""
    from inference.tasks import classify_artwork

    try:
        for artwork_id in artwork_ids:
            classify_artwork.apply_async(args=[artwork_id], retry=False)
    except Exception:  # kombu raises OperationalError, redis ConnectionError, socket errors...
        logger.warning(
            "broker unreachable; %d artwork(s) stay pending until the sweep", len(artwork_ids), exc_info=True
        )
        return False
    return True


def artwork_classify(*, artwork_id: int) -> Artwork | None:
    """Classify and embed one artwork with every serving model version; idempotent.

    Permanent problems (the stored image cannot be decoded, the model is missing or corrupt) end as ``failed``
    with the reason; anything else propagates so the task retries.
    """
    from inference.loader import ModelUnavailable, get_classifier
    from inference.selectors import model_versions_serving

    versions = model_versions_serving()
    artwork = Artwork.objects.filter(pk=artwork_id).first()
    if artwork is None:
        return None  # deleted while queued: nothing to do
    done = set(artwork.predictions.values_list("model_version_id", flat=True))
    if artwork.status == Artwork.Status.READY and all(v.pk in done for v in versions):
        return artwork
    if not versions:
        return artwork_fail(artwork_id=artwork.pk, error="No model version is active; ask an administrator.")
    Artwork.objects.filter(pk=artwork.pk).update(
        status=Artwork.Status.PROCESSING, attempts=artwork.attempts + 1, updated_at=timezone.now()
    )
    try:
        with artwork.image.open("rb") as handle:
            data = handle.read()
        image = decode_image(data).image
    except (ImageRejected, OSError) as exc:
        return artwork_fail(artwork_id=artwork.pk, error=f"The stored image cannot be read: {exc}")
    for version in versions:
        if version.pk in done:
            continue
        try:
            classifier = get_classifier(version.version)
        except ModelUnavailable as exc:
            return artwork_fail(artwork_id=artwork.pk, error=str(exc))
        probabilities, embeddings = classifier.predict_images([image])
        prediction_store(
            artwork_ids=[artwork.pk],
            model_version=version,
            classes=classifier.classes,
            probabilities=probabilities,
            embeddings=embeddings,
        )
    Artwork.objects.filter(pk=artwork.pk).update(
        status=Artwork.Status.READY, error="", processed_at=timezone.now(), updated_at=timezone.now()
    )
    artwork.refresh_from_db()
    return artwork


def prediction_store(
    *,
    artwork_ids: Sequence[int],
    model_version: Any,
    classes: Sequence[str],
    probabilities: np.ndarray,
    embeddings: np.ndarray,
) -> list[Prediction]:
    """Write (or overwrite) one model version's predictions for a batch of artworks in one statement."""
    types = {t.slug: t for t in ArtworkType.objects.all()}
    rows = []
    for artwork_id, probs, embedding in zip(artwork_ids, probabilities, embeddings, strict=True):
        best = int(np.argmax(probs))
        rows.append(
            Prediction(
                artwork_id=artwork_id,
                model_version=model_version,
                predicted_type=types[classes[best]],
                confidence=float(probs[best]),
                probabilities={slug: round(float(p), 6) for slug, p in zip(classes, probs, strict=True)},
                embedding=np.asarray(embedding, dtype=np.float32),
            )
        )
    return Prediction.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["artwork", "model_version"],
        update_fields=["predicted_type", "confidence", "probabilities", "embedding"],
    )


def artwork_fail(*, artwork_id: int, error: str) -> Artwork | None:
    """Mark an artwork failed with a reason a curator can read (it can be retried)."""
    Artwork.objects.filter(pk=artwork_id).update(
        status=Artwork.Status.FAILED, error=error[:2000], updated_at=timezone.now()
    )
    return Artwork.objects.filter(pk=artwork_id).first()


def artwork_retry(*, artwork: Artwork) -> Artwork:
    """Send a failed (or stuck) artwork through classification again."""
    artwork.status = Artwork.Status.PENDING
    artwork.error = ""
    artwork.save(update_fields=["status", "error", "updated_at"])
    artwork_ids = [artwork.pk]
    transaction.on_commit(lambda: classification_enqueue(artwork_ids=artwork_ids))
    return artwork


def artworks_requeue_pending(*, pending_after_seconds: int = 60) -> int:
    """Send again every artwork left pending (the broker was down) or processing for longer than a task may run
    (its worker died). Returns the number sent. Safe at any time: the task is idempotent."""
    now = timezone.now()
    processing_after = settings.CELERY_TASK_TIME_LIMIT + 30
    stuck = list(
        Artwork.objects.filter(
            Q(status=Artwork.Status.PENDING, updated_at__lt=now - timedelta(seconds=pending_after_seconds))
            | Q(status=Artwork.Status.PROCESSING, updated_at__lt=now - timedelta(seconds=processing_after))
        ).values_list("pk", flat=True)
    )
    if stuck and classification_enqueue(artwork_ids=stuck):
        # Touch them so the next sweep does not send them again while they wait in the queue.
        Artwork.objects.filter(pk__in=stuck).update(updated_at=now)
        return len(stuck)
    return 0


# --- Curation -------------------------------------------------------------------------------------------------


def label_correct(
    *, artwork: Artwork, to_type: ArtworkType, user: Any = None, source: str, note: str = ""
) -> LabelCorrection:
    """Set the curator's type on an artwork and record it in the audit trail (from → to, who, where, why)."""
    from catalogue.selectors import artwork_effective_type

    with transaction.atomic():
        locked = Artwork.objects.select_for_update().get(pk=artwork.pk)
        from_type = artwork_effective_type(artwork=locked)
        locked.curator_type = to_type
        locked.save(update_fields=["curator_type", "updated_at"])
        correction = LabelCorrection.objects.create(
            artwork=locked,
            from_type=from_type,
            to_type=to_type,
            user=user if getattr(user, "pk", None) else None,
            source=source,
            note=note or "",
        )
    artwork.curator_type = to_type
    return correction


# --- Accounts -------------------------------------------------------------------------------------------------


def curator_ensure(*, username: str, password: str) -> tuple[Any, bool]:
    """Make sure a curator account exists (staff, in the Curators group). Returns (user, created)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(username=username, defaults={"is_staff": True})
    if created:
        user.set_password(password)
        user.save()
    user.groups.add(Group.objects.get(name="Curators"))
    return user, created
