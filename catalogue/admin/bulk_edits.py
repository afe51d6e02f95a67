"""Bulk edits, the artworks' history and near-duplicate pairs in the admin: read-only lists (only the services write
them; the bulk edit action itself is in ``bulk_edit_action.py``)."""

from __future__ import annotations

from django.contrib import admin

from catalogue.admin.artworks import ReadOnlyAdminMixin
from catalogue.models import ArtworkChange, BulkEdit, NearDuplicatePair


@admin.register(BulkEdit)
class BulkEditAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "created_at", "user", "source", "values", "count", "changed", "undone_at")
    list_filter = ("source", "created_at")


@admin.register(ArtworkChange)
class ArtworkChangeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Every artwork's history, read-only: rows are written only by the services."""

    list_display = (
        "created_at",
        "artwork_ref",
        "field",
        "old_value",
        "new_value",
        "user",
        "source",
        "bulk_edit",
    )
    list_filter = ("field", "source", "created_at")
    search_fields = ("=artwork_ref", "user__username", "note")
    list_select_related = ("user",)


@admin.register(NearDuplicatePair)
class NearDuplicatePairAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "artwork_a",
        "artwork_b",
        "hash_distance",
        "similarity",
        "alignment",
        "status",
        "found_by",
    )
    list_filter = ("status", "found_by")
    list_select_related = ("artwork_a", "artwork_b")
