"""Classifying artworks: queueing them for the workers, running every serving model version on them, storing the
predictions and embeddings, and the sweep that re-sends what the broker lost.

If the broker is down an artwork simply stays pending and the sweep (``requeue_pending``) sends it later.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from celery import current_app
from django.conf import settings
from django.db import DatabaseError, connections, transaction
from django.db.models import Case, F, Q, When
from django.utils import timezone

from catalogue.models import Artwork, ArtworkType, Prediction, prediction_uncertainty
from catalogue.selectors.artworks import artwork_types
from catalogue.selectors.similarity import SimilarWork, embedding_nearest
from catalogue.services.agreement import agreement_counts_invalidate
from catalogue.services.maps import map_points_place
from catalogue.services.moved_embeddings import moved_embeddings_sync
from catalogue.services.near_duplicates import near_duplicates_enqueue
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


def classification_claimant() -> str:
    """A name for one claim: the host and process (for a curator reading the admin) and a random part, so two
    tasks of one process never mistake each other's claims."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def classification_claim(*, claimant: str, artwork_ids: Sequence[int] = (), limit: int = 1) -> list[int]:
    """Claim up to ``limit`` works waiting for classification: ``artwork_ids`` first, then the oldest others
    (``limit`` 1 with one id: that work only). Waiting means pending, or processing with a lease that ran out
    (its worker died). Rows another transaction holds are skipped (``FOR UPDATE SKIP LOCKED``), so concurrent
    workers never claim the same work; a claimed work is ``processing``, held for ``ARTSITE_CLAIM_LEASE_SECONDS``
    and renewed by :class:`ClaimLease`. Returns the ids claimed, in claim order."""
    now = timezone.now()
    waiting = Q(status=Artwork.Status.PENDING) | Q(status=Artwork.Status.PROCESSING, claim_expires_at__lt=now)
    first = list(artwork_ids)
    rows = Artwork.objects.select_for_update(skip_locked=True, of=("self",)).filter(waiting)
    if limit <= len(first):
        rows = rows.filter(pk__in=first)
    with transaction.atomic():
        ids = list(
            rows.order_by(Case(When(pk__in=first, then=0), default=1), "pk").values_list("pk", flat=True)[
                :limit
            ]
            if first
            else rows.order_by("pk").values_list("pk", flat=True)[:limit]
        )
        if ids:
            Artwork.objects.filter(pk__in=ids).update(
                status=Artwork.Status.PROCESSING,
                claimed_by=claimant,
                claim_expires_at=now + timedelta(seconds=settings.ARTSITE_CLAIM_LEASE_SECONDS),
                attempts=F("attempts") + 1,
                updated_at=now,
            )
    return ids


def classification_held_until(*, artwork_id: int) -> datetime | None:
    """When another claim on a work that is being classified runs out (None: the work is not held). A redelivered
    message waits for that instead of being dropped: its worker may have died holding the work."""
    return (
        Artwork.objects.filter(
            pk=artwork_id, status=Artwork.Status.PROCESSING, claim_expires_at__isnull=False
        )
        .values_list("claim_expires_at", flat=True)
        .first()
    )


def classification_claims_release(*, claimant: str, error: str = "") -> int:
    """End a claimant's claims that did not finish: back to pending for another try, or ``failed`` with
    ``error``. Returns how many."""
    status = Artwork.Status.FAILED if error else Artwork.Status.PENDING
    return Artwork.objects.filter(claimed_by=claimant, status=Artwork.Status.PROCESSING).update(
        status=status, error=error[:2000], claimed_by="", claim_expires_at=None, updated_at=timezone.now()
    )


class ClaimLease:
    """Keeps a claim alive while its works are classified: a thread renews the lease every third of it, so a
    live worker never loses a long batch (a cold model load, a slow storage) while a dead one's lease runs out
    within ``ARTSITE_CLAIM_LEASE_SECONDS`` and the sweep hands its works on."""

    def __init__(self, *, claimant: str) -> None:
        self.claimant = claimant
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{claimant}", daemon=True)

    def __enter__(self) -> ClaimLease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _renew(self) -> None:
        lease = settings.ARTSITE_CLAIM_LEASE_SECONDS
        try:
            while not self._stop.wait(lease / 3):
                try:
                    Artwork.objects.filter(claimed_by=self.claimant, status=Artwork.Status.PROCESSING).update(
                        claim_expires_at=timezone.now() + timedelta(seconds=lease)
                    )
                except DatabaseError:  # the database is restarting: the next renewal may get through
                    logger.warning("could not renew the claim %s", self.claimant, exc_info=True)
        finally:
            connections.close_all()  # this thread's own connection


def artwork_classify(*, artwork_id: int) -> Artwork | None:
    """Classify and embed one artwork with every serving model version; idempotent (a work that is ready, or
    held by another worker, is left as it is). Permanent problems end as ``failed`` with the reason; anything
    else propagates, and the work goes back to pending."""
    claimant = classification_claimant()
    try:
        artworks_classify_claimed(claimant=claimant, artwork_ids=[artwork_id], limit=1)
    except BaseException:
        classification_claims_release(claimant=claimant)
        raise
    return Artwork.objects.filter(pk=artwork_id).first()


def artworks_classify_claimed(
    *, claimant: str, artwork_ids: Sequence[int] = (), limit: int | None = None
) -> list[int]:
    """Claim the given works and, up to ``limit`` (default ``ARTSITE_CLASSIFY_BATCH``), every other work waiting,
    then classify them all in one model call per serving version. Returns the ids that ended ready.

    Each work is written only if this claimant still holds it, in one transaction: a worker that lost its lease
    (stalled past it) writes nothing, so no work is ever classified twice at once, and a prediction is stored once
    per work and version. On an exception the claims stay: the caller releases or fails them
    (:func:`classification_claims_release`).
    """
    versions = model_versions_serving()
    ids = classification_claim(
        claimant=claimant, artwork_ids=artwork_ids, limit=limit or settings.ARTSITE_CLASSIFY_BATCH
    )
    if not ids:
        return []
    if not versions:
        classification_claims_release(
            claimant=claimant, error="No model version is active; ask an administrator."
        )
        return []
    with ClaimLease(claimant=claimant):
        try:
            classifiers = [(version, get_classifier(version.version)) for version in versions]
        except ModelUnavailable as exc:
            classification_claims_release(claimant=claimant, error=str(exc))
            return []
        draft = max([settings.ARTSITE_THUMBNAIL_SIZE, *(c.input_size for _, c in classifiers)])
        images = stored_images_decode(artworks=Artwork.objects.filter(pk__in=ids), draft=draft)
        for artwork_id, image in images.items():
            if isinstance(image, str):
                artwork_fail(artwork_id=artwork_id, error=image)
        decoded = {i: image for i, image in images.items() if not isinstance(image, str)}
        done = set(
            Prediction.objects.filter(artwork_id__in=decoded).values_list("artwork_id", "model_version_id")
        )
        outputs = []
        for version, classifier in classifiers:
            todo = [i for i in decoded if (i, version.pk) not in done]
            probabilities, embeddings = classifier.predict_images([decoded[i] for i in todo])
            outputs.append((version, classifier.classes, todo, probabilities, embeddings))
    return _classified_store(claimant=claimant, outputs=outputs)


def _classified_store(
    *, claimant: str, outputs: Sequence[tuple[Any, Sequence[str], list[int], Any, Any]]
) -> list[int]:
    """Store a batch's predictions and mark its works ready: only the works this claimant still holds."""
    now = timezone.now()
    with transaction.atomic():
        held = set(
            Artwork.objects.select_for_update()
            .filter(claimed_by=claimant, status=Artwork.Status.PROCESSING)
            .values_list("pk", flat=True)
        )
        for version, classes, todo, probabilities, embeddings in outputs:
            keep = [n for n, artwork_id in enumerate(todo) if artwork_id in held]
            if keep:
                prediction_store(
                    artwork_ids=[todo[n] for n in keep],
                    model_version=version,
                    classes=classes,
                    probabilities=probabilities[keep],
                    embeddings=embeddings[keep],
                )
        Artwork.objects.filter(pk__in=held).update(
            status=Artwork.Status.READY,
            error="",
            processed_at=now,
            updated_at=now,
            claimed_by="",
            claim_expires_at=None,
        )
    near_duplicates_enqueue(
        artwork_ids=sorted(held)
    )  # other photos of the same work, now that they are embedded
    return sorted(held)


def stored_images_decode(*, artworks: Iterable[Artwork], draft: int | None) -> dict[int, Any]:
    """Read the artworks' stored images through the storage backend (a folder, S3) and decode them, several at
    once (the reads wait on storage, the decoding releases the GIL): {artwork id: RGB image, or the reason it
    cannot be read}. ``draft`` as for the import (:func:`inference.preprocessing.decode_image`), so an uploaded
    work and an imported one get the same model input."""

    def one(artwork: Artwork) -> tuple[int, Any]:
        try:
            with artwork.image.open("rb") as handle:
                data = handle.read()
            return artwork.pk, decode_image(data, draft=draft).image
        except (ImageRejected, OSError, ValueError) as exc:
            return artwork.pk, f"The stored image cannot be read: {exc}"

    pool = ThreadPoolExecutor(max_workers=settings.ARTSITE_CLASSIFY_READERS)
    try:
        return dict(pool.map(one, list(artworks)))
    finally:
        # Normally every read is done here. When the task's soft time limit interrupts the batch, the reads not
        # yet started are dropped and the one under way is not waited for: the batch ends at once, failed with
        # the reason, instead of after every remaining image (a `with` block would wait for them all).
        pool.shutdown(wait=False, cancel_futures=True)


def prediction_store(
    *,
    artwork_ids: Sequence[int],
    model_version: Any,
    classes: Sequence[str],
    probabilities: np.ndarray,
    embeddings: np.ndarray,
) -> list[Prediction]:
    """Write (or overwrite) one model version's predictions for a batch of artworks in one statement, with the map
    points and the moved works' embeddings that follow from them, in one transaction."""
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
                **prediction_uncertainty(probs),
            )
        )
    with transaction.atomic():
        # The works locked before their predictions, in id order (as the sync locks them): locking them only in the
        # sync, after the prediction rows, could deadlock with a worker that holds a work and writes its prediction.
        list(
            Artwork.objects.select_for_update(no_key=True)
            .filter(pk__in=artwork_ids)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        stored = Prediction.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["artwork", "model_version"],
            update_fields=["predicted_type", "confidence", "probabilities", "embedding", "entropy", "margin"],
        )
        agreement_counts_invalidate(artwork_ids=artwork_ids)  # only when one of them is labelled
        map_points_place(
            model_version=model_version, artwork_ids=artwork_ids
        )  # the map takes new works in at once
        # A labelled work whose new prediction is another type is a moved work of this version (and one whose
        # prediction now agrees with its label is not any more).
        moved_embeddings_sync(artwork_ids=artwork_ids)
    return stored


def artwork_fail(*, artwork_id: int, error: str) -> Artwork | None:
    """Mark an artwork failed with a reason a curator can read (it can be retried)."""
    Artwork.objects.filter(pk=artwork_id).update(
        status=Artwork.Status.FAILED,
        error=error[:2000],
        claimed_by="",
        claim_expires_at=None,
        updated_at=timezone.now(),
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


def artworks_requeue_pending(*, pending_after_seconds: int | None = None) -> int:
    """The sweep (a beat task every ``ARTSITE_SWEEP_SECONDS``): hand on the works whose claim ran out (their
    worker died) and send every work pending for ``pending_after_seconds`` (default
    ``ARTSITE_PENDING_GRACE_SECONDS``: its own message may still be on its way), e.g. stored while the broker
    was down. One message per batch is enough, as a task claims a batch of waiting works. Returns the number of
    works sent; safe at any time (a claim is taken once)."""
    now = timezone.now()
    grace = settings.ARTSITE_PENDING_GRACE_SECONDS if pending_after_seconds is None else pending_after_seconds
    with transaction.atomic():
        # Rows a live worker is writing stay locked and are skipped.
        expired = list(
            Artwork.objects.select_for_update(skip_locked=True)
            .filter(status=Artwork.Status.PROCESSING)
            .filter(Q(claim_expires_at__lt=now) | Q(claim_expires_at__isnull=True))
            .values_list("pk", flat=True)
        )
        Artwork.objects.filter(pk__in=expired).update(
            status=Artwork.Status.PENDING, claimed_by="", claim_expires_at=None
        )
    stuck = list(
        Artwork.objects.filter(status=Artwork.Status.PENDING)
        .filter(Q(updated_at__lte=now - timedelta(seconds=grace)) | Q(pk__in=expired))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if stuck and classification_enqueue(artwork_ids=stuck[:: settings.ARTSITE_CLASSIFY_BATCH]):
        # Touch them so the next sweep does not send them again while they wait in the queue.
        Artwork.objects.filter(pk__in=stuck, status=Artwork.Status.PENDING).update(updated_at=now)
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


def image_classify(*, image: Any, k: int = 5, type_slug: str | None = None) -> ImageClassification:
    """Classify a decoded RGB ``PIL.Image`` with the active model version and find the k most similar ready works
    (of the effective type ``type_slug`` when given).

    Stores nothing. Raises ``inference.registry.ModelUnavailable`` when no version is active or it cannot load.
    """

    version = model_version_active()
    if version is None:
        raise ModelUnavailable("(none)", "no model version is active")
    classifier = get_classifier(version.version)
    started = time.perf_counter()
    probabilities, embeddings = classifier.predict_images([image])
    predicted = time.perf_counter()
    similar = embedding_nearest(embedding=embeddings[0], version=version, k=k, type_slug=type_slug)
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
