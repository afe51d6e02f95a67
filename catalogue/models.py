"""Artworks, their types, the model's predictions (one per model version) and the curators' corrections."""

from __future__ import annotations

import uuid
from pathlib import PurePosixPath
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import F, FilteredRelation, Q
from django.db.models.functions import Coalesce
from pgvector.django import HnswIndex, VectorField

EMBEDDING_DIMENSIONS = 128


class ArtworkType(models.Model):
    """One of the five types; rows seeded by a migration, slugs match the model card's class names."""

    slug = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=80)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "slug"]

    def __str__(self) -> str:
        return self.name


def artwork_image_path(instance: Artwork, filename: str) -> str:
    # Content-addressed: the sha256 makes the name unique and an import that re-runs writes the same name.
    ext = PurePosixPath(filename).suffix.lower() or ".jpg"
    digest = instance.sha256 or uuid.uuid4().hex
    return f"artworks/{digest[:2]}/{digest}{ext}"


def artwork_thumbnail_path(instance: Artwork, filename: str) -> str:
    digest = instance.sha256 or uuid.uuid4().hex
    return f"thumbnails/{digest[:2]}/{digest}.jpg"


def effective_type(*, curator_type: str = "curator_type_id", predicted_type: str) -> Coalesce:
    """The rule, defined once: an artwork's *effective* type is the curator's type when there is one, else the model's
    prediction. A SQL expression over the given fields (ids), for annotations."""
    return Coalesce(curator_type, predicted_type)


class ArtworkQuerySet(models.QuerySet["Artwork"]):
    def with_prediction(self, version_id: int | None) -> models.QuerySet[Any]:
        """Annotated with one model version's prediction (none: ``version_id`` None) and the effective type:
        ``pred_type_id``, ``pred_confidence``, ``pred_probabilities``, ``effective_type_id``."""
        # QuerySet[Any]: the annotations are not model fields, and django-stubs checks lookups by field.
        return self.annotate(
            pred=FilteredRelation("predictions", condition=Q(predictions__model_version_id=version_id or -1)),
        ).annotate(
            pred_type_id=F("pred__predicted_type_id"),
            pred_confidence=F("pred__confidence"),
            pred_probabilities=F("pred__probabilities"),
            effective_type_id=effective_type(predicted_type="pred__predicted_type_id"),
        )


class Artwork(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    title = models.CharField(max_length=300)
    artist = models.CharField(max_length=300, blank=True)
    date = models.CharField(
        max_length=100, blank=True, help_text="As catalogues write it: 'c. 1650', '1890s'."
    )
    accession_number = models.CharField(max_length=100, unique=True, null=True, blank=True)
    description = models.TextField(blank=True)

    image = models.FileField(upload_to=artwork_image_path, max_length=300)
    thumbnail = models.FileField(upload_to=artwork_thumbnail_path, max_length=300, blank=True)
    sha256 = models.CharField(max_length=64, unique=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    file_size = models.PositiveBigIntegerField(default=0)
    color_histogram = models.JSONField(default=dict, blank=True, help_text="32 bins per RGB channel.")

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    processed_at = models.DateTimeField(null=True, blank=True)

    curator_type = models.ForeignKey(
        ArtworkType,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Set by a curator; once set it is the artwork's effective type.",
    )
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ArtworkQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["title"]), models.Index(fields=["artist"])]

    def __str__(self) -> str:
        return self.title


class Prediction(models.Model):
    """What one model version says of one artwork. Kept per version so a model swap needs no downtime."""

    artwork = models.ForeignKey(Artwork, on_delete=models.CASCADE, related_name="predictions")
    model_version = models.ForeignKey(
        "inference.ModelVersion", on_delete=models.CASCADE, related_name="predictions"
    )
    predicted_type = models.ForeignKey(ArtworkType, on_delete=models.PROTECT, related_name="+")
    confidence = models.FloatField()
    probabilities = models.JSONField(help_text="{type slug: probability}")
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["artwork", "model_version"], name="one_prediction_per_version"),
        ]
        indexes = [
            HnswIndex(
                name="prediction_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
            models.Index(fields=["model_version", "predicted_type"]),
            models.Index(fields=["model_version", "confidence"]),
        ]

    def __str__(self) -> str:
        return (
            f"{self.artwork_id} @ {self.model_version_id}: {self.predicted_type_id} ({self.confidence:.2f})"
        )


class LabelCorrection(models.Model):
    """The audit trail: every change of an artwork's type by a person or an import."""

    class Source(models.TextChoices):
        PORTAL = "portal", "Portal"
        REVIEW = "review", "Review queue"
        ADMIN = "admin", "Admin"
        API = "api", "API"
        IMPORT = "import", "Import"

    artwork = models.ForeignKey(Artwork, on_delete=models.CASCADE, related_name="label_corrections")
    from_type = models.ForeignKey(
        ArtworkType, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    to_type = models.ForeignKey(ArtworkType, on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source = models.CharField(max_length=20, choices=Source.choices)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.artwork_id}: {self.from_type_id} → {self.to_type_id} ({self.source})"
