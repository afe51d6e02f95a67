"""The Django admin: ``artworks`` (the catalogue, relabelling, the audit trail, types) and ``model_versions`` (the
Models page: which version serves, activation)."""

from catalogue.admin import artworks, model_versions

__all__ = ["artworks", "model_versions"]
