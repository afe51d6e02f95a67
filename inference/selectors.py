"""Reads of the model registry in the database."""

from __future__ import annotations

from inference.models import ModelVersion


def model_version_active() -> ModelVersion | None:
    """The version whose predictions and embeddings the pages and the API show."""
    return ModelVersion.objects.active().first()


def model_versions_serving() -> list[ModelVersion]:
    """Versions a new artwork must be classified with: the active one, and one being rolled out (re-embedding)."""
    return list(
        ModelVersion.objects.active() | ModelVersion.objects.filter(status=ModelVersion.Status.EMBEDDING)
    )
