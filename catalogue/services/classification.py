"""Classifying artworks: queueing them for the workers, running every serving model version on them, storing the
predictions and embeddings, and the sweep that re-sends what the broker lost.

If the broker is down an artwork simply stays pending and the sweep (``requeue_pending``) sends it later.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from catalogue.models import Artwork, ArtworkType, Prediction
from catalogue.selectors.artworks import artwork_types
from catalogue.selectors.similarity import SimilarWork, embedding_nearest
from catalogue.services.maps import map_points_place
from inference.loader import get_classifier
from inference.models import ModelVersion
from inference.preprocessing import ImageRejected, decode_image
from inference.registry import ModelUnavailable
from inference.selectors import model_version_active, model_versions_serving

logger = logging.getLogger(__name__)

#: Sent by name: these services must not import the tasks module that calls them (``catalogue/tasks.py``).
CLASSIFY_TASK = "catalogue.tasks.classify_artwork"


def classification_enqueue(*, artwork_ids: Sequence[int]) -> bool:
    """Send the artworks to the workers. Returns False (and logs) when the broker cannot be reached: the artworks
    stay pending and the periodic sweep sends them when the broker is back."""
    try:
        for artwork_id in artwork_ids:
            current_app.send_task(CLASSIFY_TASK, args=[artwork_id], retry=False)
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
    stored = Prediction.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["artwork", "model_version"],
        update_fields=["predicted_type", "confidence", "probabilities", "embedding"],
    )
    map_points_place(
        model_version=model_version, artwork_ids=artwork_ids
    )  # the map takes new works in at once
    return stored


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


# --- Classifying an image that is not stored (the API's classify/) -------------------------------------------


@dataclass(frozen=True)
class ImageClassification:
    """What the active model says of an image that is not in the catalogue (the API's ``classify/``)."""

    version: ModelVersion
    predicted_type: ArtworkType
    confidence: float
    probabilities: dict[str, float]  # {type slug: probability}, in the model card's class order
    similar: list[SimilarWork]
    timings: dict[str, float]  # seconds spent in "model" and "search" (the API reports them in Server-Timing)
    type_slugs: dict[int, str]  # {type id: slug} of every type, to name the similar works' types


def image_classify(*, image: Any, k: int = 5) -> ImageClassification:
    """Classify a decoded RGB ``PIL.Image`` with the active model version and find the k most similar ready works.

    Stores nothing. Raises ``inference.registry.ModelUnavailable`` when no version is active or it cannot load.
    """

    version = model_version_active()
    if version is None:
        raise ModelUnavailable("(none)", "no model version is active")
    classifier = get_classifier(version.version)
    started = time.perf_counter()
    probabilities, embeddings = classifier.predict_images([image])
    predicted = time.perf_counter()
    similar = embedding_nearest(embedding=embeddings[0], version=version, k=k)
    searched = time.perf_counter()
    probs = {slug: float(p) for slug, p in zip(classifier.classes, probabilities[0], strict=True)}
    best = max(probs, key=probs.__getitem__)
    types = {t.slug: t for t in artwork_types()}
    if best not in types:
        raise ModelUnavailable(
            version.version, f"it predicts the type {best!r}, which the catalogue does not have"
        )
    return ImageClassification(
        version=version,
        predicted_type=types[best],
        confidence=probs[best],
        probabilities=probs,
        similar=similar,
        timings={"model": predicted - started, "search": searched - predicted},
        type_slugs={t.pk: slug for slug, t in types.items()},
    )
