"""Writes to the model registry: registering version folders and choosing the active version."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from inference import registry
from inference.models import ModelVersion

logger = logging.getLogger(__name__)


def model_versions_sync() -> list[ModelVersion]:
    """Register every version folder found in ARTSITE_MODEL_DIRS (new ones added, cards refreshed)."""
    versions = []
    for card in registry.list_cards():
        name = card["version"]
        path = str(registry.find_version(name))
        version, _ = ModelVersion.objects.update_or_create(
            version=name, defaults={"path": path, "card": card}
        )
        versions.append(version)
    return versions


def default_version_name() -> str | None:
    """The version to activate on a fresh database: ARTSITE_DEFAULT_MODEL, else the shipped `DEFAULT` file."""
    if settings.ARTSITE_DEFAULT_MODEL:
        return str(settings.ARTSITE_DEFAULT_MODEL)
    marker = settings.ARTSITE_MODEL_DIRS[0] / "DEFAULT"
    if marker.exists():
        return marker.read_text().strip() or None
    cards = registry.list_cards()
    return cards[-1]["version"] if cards else None


def model_ensure_active() -> ModelVersion | None:
    """Make sure some version is active: sync the folders, then activate the default if none is."""
    model_versions_sync()
    active = ModelVersion.objects.filter(is_active=True).first()
    if active is not None:
        return active
    name = default_version_name()
    if name is None:
        logger.warning("no model version found in %s", settings.ARTSITE_MODEL_DIRS)
        return None
    version = ModelVersion.objects.filter(version=name).first()
    if version is None:
        logger.warning("the default model %r has no folder in %s", name, settings.ARTSITE_MODEL_DIRS)
        return None
    return model_version_set_active(version=version)


def model_version_set_active(*, version: ModelVersion) -> ModelVersion:
    """Switch the serving version at once (callers make sure its embeddings are complete)."""
    with transaction.atomic():
        ModelVersion.objects.filter(is_active=True).exclude(pk=version.pk).update(
            is_active=False, status=ModelVersion.Status.AVAILABLE
        )
        version.is_active = True
        version.status = ModelVersion.Status.ACTIVE
        version.activated_at = timezone.now()
        version.save(update_fields=["is_active", "status", "activated_at"])
    return version


# --- Activation: re-embed the catalogue in the background, then switch at once ----------------------------------

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
    from catalogue.models import Artwork

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
    registry.find_version(version.version)  # refuse a version whose folder has gone
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
            transaction.on_commit(lambda: _enqueue_reembed(version_id))
    return version


def _enqueue_reembed(version_id: int) -> None:
    from inference.tasks import reembed_catalogue

    try:
        reembed_catalogue.apply_async(args=[version_id], retry=False)
    except Exception:
        logger.warning("broker unreachable: re-embedding of version %s not queued", version_id, exc_info=True)


def model_reembed_batch(*, version: ModelVersion, batch_size: int = REEMBED_BATCH) -> ReembedProgress:
    """Embed the next batch of ready artworks that lack ``version``'s prediction; switch when none is left.

    Idempotent and safe to run concurrently with uploads. An artwork whose stored image cannot be read is marked
    failed (it would otherwise block the switch forever).
    """
    from catalogue.models import Artwork
    from catalogue.services.classification import artwork_fail, prediction_store
    from inference.loader import get_classifier
    from inference.preprocessing import ImageRejected, decode_image

    version.refresh_from_db()
    if version.status != ModelVersion.Status.EMBEDDING:
        return model_reembed_progress(version=version)  # cancelled by another activation, or already active
    classifier = get_classifier(version.version)
    todo = list(
        Artwork.objects.filter(status=Artwork.Status.READY)
        .exclude(predictions__model_version=version)
        .order_by("pk")[:batch_size]
    )
    ids, images = [], []
    for artwork in todo:
        try:
            with artwork.image.open("rb") as handle:
                images.append(decode_image(handle.read()).image)
            ids.append(artwork.pk)
        except (ImageRejected, OSError) as exc:
            artwork_fail(artwork_id=artwork.pk, error=f"The stored image cannot be read: {exc}")
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
