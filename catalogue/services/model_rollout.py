"""Rolling a model version out to the catalogue without downtime: re-embed every artwork with it in the
background, then switch at once (:func:`inference.services.model_version_set_active`).

New uploads are classified with both versions meanwhile, and pages and the API keep using the current version
until the switch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from celery import current_app
from django.conf import settings
from django.db import transaction

from catalogue.models import Artwork
from catalogue.services.classification import artwork_fail, prediction_store, stored_images_decode
from inference.loader import get_classifier
from inference.models import ModelVersion
from inference.services import model_version_check_servable, model_version_set_active

logger = logging.getLogger(__name__)

#: The task is sent by name: these services must not import the tasks module that calls them.
REEMBED_TASK = "catalogue.tasks.reembed_catalogue"


REEMBED_BATCH = 64


@dataclass(frozen=True)
class ReembedProgress:
    version: str
    done: int
    total: int

    @property
    def remaining(self) -> int:
        return self.total - self.done


def model_reembed_progress(*, version: ModelVersion) -> ReembedProgress:
    """How many ready artworks already have this version's prediction and embedding."""
    ready = Artwork.objects.filter(status=Artwork.Status.READY)
    done = ready.filter(predictions__model_version=version).count()
    return ReembedProgress(version=version.version, done=done, total=ready.count())


def model_activate(*, version: ModelVersion, enqueue: bool = True) -> ModelVersion:
    """Make ``version`` the serving model without downtime.

    If every ready artwork already has its predictions (a fresh catalogue, or re-activating a previous version),
    it switches at once. Otherwise the version is marked *embedding*: the workers re-embed the catalogue in batches
    (new uploads are classified with both versions meanwhile) while pages and the API keep using the current
    version, and the switch happens in one transaction when the last artwork is done.
    """
    # Refuse a version whose folder has gone, or that cannot serve (no model.tflite with a passing check on its
    # card), before any re-embedding starts.
    model_version_check_servable(version=version.version)
    if version.is_active:
        return version
    if model_reembed_progress(version=version).remaining == 0:
        return model_version_set_active(version=version)
    with transaction.atomic():
        ModelVersion.objects.filter(status=ModelVersion.Status.EMBEDDING).exclude(pk=version.pk).update(
            status=ModelVersion.Status.AVAILABLE
        )
        version.status = ModelVersion.Status.EMBEDDING
        version.save(update_fields=["status"])
        if enqueue:
            version_id = version.pk
            transaction.on_commit(lambda: model_reembed_enqueue(version_id=version_id))
    return version


def model_reembed_enqueue(*, version_id: int) -> None:
    """Queue the next re-embedding batch of a version being rolled out (logged, not raised, if the broker is down:
    ``activate_model --here`` or another activation picks it up)."""
    try:
        current_app.send_task(REEMBED_TASK, args=[version_id], retry=False)
    except Exception:
        logger.warning("broker unreachable: re-embedding of version %s not queued", version_id, exc_info=True)


def model_reembed_batch(*, version: ModelVersion, batch_size: int = REEMBED_BATCH) -> ReembedProgress:
    """Embed the next batch of ready artworks that lack ``version``'s prediction; switch when none is left.

    Idempotent and safe to run concurrently with uploads. An artwork whose stored image cannot be read is marked
    failed (it would otherwise block the switch forever).
    """
    version.refresh_from_db()
    if version.status != ModelVersion.Status.EMBEDDING:
        return model_reembed_progress(version=version)  # cancelled by another activation, or already active
    classifier = get_classifier(version.version)
    todo = list(
        Artwork.objects.filter(status=Artwork.Status.READY)
        .exclude(predictions__model_version=version)
        .order_by("pk")[:batch_size]
    )
    # Read through the storage backend (a folder or S3), several at once, decoded as the import and the worker do.
    decoded = stored_images_decode(
        artworks=todo, draft=max(settings.ARTSITE_THUMBNAIL_SIZE, classifier.input_size)
    )
    ids, images = [], []
    for artwork_id, image in decoded.items():
        if isinstance(image, str):
            artwork_fail(artwork_id=artwork_id, error=image)
        else:
            ids.append(artwork_id)
            images.append(image)
    if ids:
        probabilities, embeddings = classifier.predict_images(images)
        prediction_store(
            artwork_ids=ids,
            model_version=version,
            classes=classifier.classes,
            probabilities=probabilities,
            embeddings=embeddings,
        )
    progress = model_reembed_progress(version=version)
    if progress.remaining == 0:
        with transaction.atomic():
            locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
            if locked.status == ModelVersion.Status.EMBEDDING:
                model_version_set_active(version=locked)
    return progress
