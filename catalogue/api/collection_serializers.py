"""Serializers of the history, bulk edits and near-duplicates endpoints (catalogue/api/collection_views.py)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from catalogue.models import ArtworkChange, ArtworkType, BulkEdit, NearDuplicatePair
from catalogue.services.bulk_edits import BULK_EDIT_MAX, BULK_FIELDS


class ArtworkChangeSerializer(serializers.ModelSerializer):
    """One change of an artwork: the field, its value before and after (a type is ``{type, provenance}``)."""

    artwork = serializers.IntegerField(source="artwork_ref")
    user = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    old_value = serializers.JSONField(allow_null=True)
    new_value = serializers.JSONField(allow_null=True)

    class Meta:
        model = ArtworkChange
        fields = [
            "id",
            "artwork",
            "field",
            "old_value",
            "new_value",
            "user",
            "source",
            "bulk_edit",
            "note",
            "created_at",
        ]


class BulkEditSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    undone_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    values = serializers.JSONField(help_text="What was set: artist, date, type (slug), note (appended).")
    selection = serializers.JSONField(help_text="{filter: {...}} or {ids: [...]}")
    undo_result = serializers.JSONField(
        help_text="{restored: n, skipped: [{artwork, field, reason}]} once undone."
    )

    class Meta:
        model = BulkEdit
        fields = [
            "id",
            "user",
            "source",
            "values",
            "selection",
            "count",
            "changed",
            "created_at",
            "undone_at",
            "undone_by",
            "undo_result",
        ]


class BulkValuesSerializer(serializers.Serializer):
    artist = serializers.CharField(max_length=BULK_FIELDS["artist"], required=False, allow_blank=True)
    date = serializers.CharField(max_length=BULK_FIELDS["date"], required=False, allow_blank=True)
    type = serializers.SlugRelatedField(slug_field="slug", queryset=ArtworkType.objects.all(), required=False)
    note = serializers.CharField(max_length=BULK_FIELDS["note"], required=False)


class BulkEditInputSerializer(serializers.Serializer):
    """The works (``ids``, or ``filter``: the artworks list's own query parameters) and what to set on them."""

    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),  # a bigint id
        required=False,
        max_length=BULK_EDIT_MAX,
        allow_empty=False,
    )
    filter = serializers.DictField(child=serializers.CharField(), required=False)
    set = BulkValuesSerializer()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("ids" in attrs) == ("filter" in attrs):
            raise serializers.ValidationError({"ids": ["Give either `ids` or `filter`."]}, code="selection")
        return attrs


class NearDuplicatePairSerializer(serializers.ModelSerializer):
    artwork_a = serializers.IntegerField(source="artwork_a_id")
    artwork_b = serializers.IntegerField(source="artwork_b_id")
    decided_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = NearDuplicatePair
        fields = [
            "id",
            "artwork_a",
            "artwork_b",
            "hash_distance",
            "similarity",
            "alignment",
            "found_by",
            "status",
            "decided_by",
            "decided_at",
            "created_at",
        ]


class NearDuplicateDecisionSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(
        choices=[NearDuplicatePair.Status.SAME, NearDuplicatePair.Status.DIFFERENT],
        help_text="same: photos of one work (linked); different: remembered, never proposed again.",
    )


class ScanQueuedSerializer(serializers.Serializer):
    status = serializers.CharField(help_text="“queued”: the search runs in the background.")
