"""The Django admin: ``artworks`` (the catalogue, relabelling, the audit trail), ``types`` (the catalogue's types:
curators add them) and ``model_versions`` (the Models page: which version serves, activation)."""

from catalogue.admin import artworks, bulk_edits, model_versions, types

__all__ = ["artworks", "bulk_edits", "model_versions", "types"]
