"""The registry of model versions in the database: which exist, their cards, which one serves."""

from __future__ import annotations

from django.db import models


class ModelVersionQuerySet(models.QuerySet["ModelVersion"]):
    def active(self) -> ModelVersionQuerySet:
        return self.filter(status=ModelVersion.Status.ACTIVE)

    def active_first(self) -> ModelVersionQuerySet:
        """The active version first, then the newest."""
        is_active = models.Case(
            models.When(status=ModelVersion.Status.ACTIVE, then=models.Value(0)),
            default=models.Value(1),
            output_field=models.IntegerField(),
        )
        return self.order_by(is_active, "-created_at")


class ModelVersion(models.Model):
    class Status(models.TextChoices):
        AVAILABLE = "available", "Available"
        EMBEDDING = "embedding", "Re-embedding the catalogue"
        ACTIVE = "active", "Active"

    version = models.CharField(max_length=100, unique=True)
    path = models.CharField(max_length=500, help_text="Folder holding model.keras and card.json.")
    card = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.AVAILABLE)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    objects = ModelVersionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # The status is the one record of which version serves: at most one row may be active.
            models.UniqueConstraint(
                fields=["status"], condition=models.Q(status="active"), name="one_active_model_version"
            ),
        ]

    def __str__(self) -> str:
        return self.version

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE

    @property
    def metrics(self) -> dict:
        return dict(self.card.get("metrics", {}))

    @property
    def serving_metrics(self) -> dict:
        """The figures of what workers serve: the fast copy's (e.g. int8 TFLite) when the card has them, else the
        trained model's."""
        return {**self.metrics, **((self.card.get("serving") or {}).get("metrics") or {})}
