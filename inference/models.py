"""The registry of model versions in the database: which exist, their cards, which one serves."""

from __future__ import annotations

from django.db import models


class ModelVersion(models.Model):
    class Status(models.TextChoices):
        AVAILABLE = "available", "Available"
        EMBEDDING = "embedding", "Re-embedding the catalogue"
        ACTIVE = "active", "Active"

    version = models.CharField(max_length=100, unique=True)
    path = models.CharField(max_length=500, help_text="Folder holding model.keras and card.json.")
    card = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.AVAILABLE)
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=models.Q(is_active=True), name="one_active_model_version"
            ),
        ]

    def __str__(self) -> str:
        return self.version

    @property
    def metrics(self) -> dict:
        return dict(self.card.get("metrics", {}))
