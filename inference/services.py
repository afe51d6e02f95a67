"""Writes to the model registry: registering version folders and choosing the active version.

Activating a version *for the catalogue* (re-embedding every artwork first, without downtime) is the catalogue's
business: :mod:`catalogue.services.model_rollout`.
"""

from __future__ import annotations

import logging

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
    return model_version_set_active(version=version)


def model_version_set_active(*, version: ModelVersion) -> ModelVersion:
    """Switch the serving version at once (callers make sure its embeddings are complete)."""
    with transaction.atomic():
        ModelVersion.objects.active().exclude(pk=version.pk).update(status=ModelVersion.Status.AVAILABLE)
        version.status = ModelVersion.Status.ACTIVE
        version.activated_at = timezone.now()
        version.save(update_fields=["status", "activated_at"])
    return version
