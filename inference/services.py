"""Writes to the model registry: registering version folders, choosing the active version, and the serving check
(a version serves only as its TFLite copy, and only once that copy's agreement with model.keras is on its card).

Activating a version *for the catalogue* (re-embedding every artwork first, without downtime) is the catalogue's
business: :mod:`catalogue.services.model_rollout`.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from inference import loader, registry, tflite
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


def model_ensure_active() -> ModelVersion | None:
    """Make sure some version is active: sync the folders, then activate the default if none is."""
    model_versions_sync()
    active = ModelVersion.objects.active().first()
    if active is not None:
        return active
    name = registry.default_version_name()
    if name is None:
        logger.warning("no model version found in %s", settings.ARTSITE_MODEL_DIRS)
        return None
    version = ModelVersion.objects.filter(version=name).first()
    if version is None:
        logger.warning("the default model %r has no folder in %s", name, settings.ARTSITE_MODEL_DIRS)
        return None
    try:
        return model_version_set_active(version=version)
    except registry.ModelUnavailable as exc:
        logger.error("the default model cannot be activated: %s", exc)
        return None


def model_version_check_servable(*, version: str) -> None:
    """Raise :class:`~inference.registry.ModelUnavailable` unless ``version``'s folder holds a ``model.tflite``
    whose check against model.keras, recorded on its card, passed (:func:`inference.tflite.check_problem`)."""
    folder = registry.find_version(version)
    try:
        card = registry.read_card(folder)
    except ValueError as exc:
        raise registry.ModelUnavailable(version, str(exc)) from None
    problem = tflite.check_problem(folder, card)
    if problem is not None:
        raise registry.ModelUnavailable(version, f"it cannot be activated: {problem}")


def model_version_set_active(*, version: ModelVersion) -> ModelVersion:
    """Switch the serving version at once (callers make sure its embeddings are complete). Refuses a version that
    cannot serve (:func:`model_version_check_servable`)."""
    model_version_check_servable(version=version.version)
    with transaction.atomic():
        ModelVersion.objects.active().exclude(pk=version.pk).update(status=ModelVersion.Status.AVAILABLE)
        version.status = ModelVersion.Status.ACTIVE
        version.activated_at = timezone.now()
        version.save(update_fields=["status", "activated_at"])
    return version


def model_version_check(*, version: str, record: bool = False) -> dict[str, Any]:
    """Measure again how closely ``version``'s TFLite copy (through the serving runtime) follows its model.keras
    (through TensorFlow) on :func:`~inference.tflite.verification_inputs`, against the card's limits; returns the
    ``serving.check`` block. With ``record``, the block goes on the card (and MODEL_CARD.md) and the registry is
    synced. Needs the training requirements (TensorFlow). Raises :class:`~inference.registry.ModelUnavailable`."""
    folder = registry.find_version(version)
    reference = loader.load_classifier(folder, backend="keras")
    copy = loader.load_classifier(folder, backend="tflite")
    images = tflite.verification_inputs(reference.input_size)
    figures = tflite.agreement(*reference.predict_arrays(images), *copy.predict_arrays(images))
    card = registry.read_card(folder)
    result = tflite.check(
        figures,
        tflite.tolerance(card),
        sha256=tflite.file_sha256(folder / tflite.TFLITE_FILE),
        by="check_model",
    )
    if record:
        registry.rewrite_card(folder, {**card, "serving": {**(card.get("serving") or {}), "check": result}})
        model_versions_sync()
    return result
