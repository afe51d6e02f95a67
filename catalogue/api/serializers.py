"""Input and output shapes of the API. Inputs validate requests (and name the query parameters in the schema);
outputs shape the selectors' objects. Nothing here writes: the views hand validated input to the services.

Output serializers expect in their context ``request`` (for absolute URLs), ``types`` ({type id: slug}) and,
for artworks, ``model_version`` (the active version's name or ``None``).
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from catalogue.models import (
    ACCESSION_MAX_LENGTH,
    ARTIST_MAX_LENGTH,
    DATE_MAX_LENGTH,
    DESCRIPTION_MAX_LENGTH,
    TITLE_MAX_LENGTH,
    Artwork,
    ArtworkType,
    LabelCorrection,
    LabelIssue,
)
from catalogue.selectors.artworks import artwork_type_by_slug, artwork_types
from catalogue.selectors.similarity import MAX_SIMILAR, SimilarWork
from catalogue.services.mislabels import MislabelDecision
from inference.models import ModelVersion

logger = logging.getLogger(__name__)


def _absolute(request: Any, url: str) -> str:
    return request.build_absolute_uri(url) if request is not None else url


def _file_url(request: Any, field: Any) -> str | None:
    return _absolute(request, field.url) if field and field.name else None


def _display_url(request: Any, artwork: Artwork) -> str:
    """The display copy (no EXIF or GPS), which every reader gets; the original is for curators."""
    return _absolute(request, reverse("catalogue:artwork-display", args=[artwork.pk]))


def validate_type_slug(value: str) -> ArtworkType:
    artwork_type = artwork_type_by_slug(value)
    if artwork_type is None:
        choices = ", ".join(t.slug for t in artwork_types())
        raise serializers.ValidationError(
            f"Unknown type “{value}”; choose one of: {choices}.", code="unknown_type"
        )
    return artwork_type


# --- Errors -------------------------------------------------------------------------------------------------------


class ExistingArtworkSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.URLField(help_text="The API URL of the artwork that already holds this file.")


class ErrorSerializer(serializers.Serializer):
    """The one shape of every error the API returns."""

    status = serializers.IntegerField(help_text="The HTTP status code, repeated.")
    code = serializers.CharField(
        help_text="Machine-readable reason: not_authenticated, authentication_failed, permission_denied, not_found, "
        "method_not_allowed, throttled, required, invalid, unknown_type, max_value, not_image, unsupported_format, "
        "truncated, corrupt, empty, too_large, too_many_pixels, duplicate, duplicate_accession, not_classified, "
        "model_unavailable, ..."
    )
    message = serializers.CharField(help_text="What went wrong, in words for people.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Problems per request field; empty when the error is not about a field.",
    )
    existing = ExistingArtworkSerializer(
        required=False, help_text="Only on 409 duplicate: the existing artwork."
    )


# --- Types and model versions -------------------------------------------------------------------------------------


class ArtworkTypeSerializer(serializers.ModelSerializer):
    class Meta:
        model = ArtworkType
        fields = ["slug", "name", "position"]


class ModelVersionSerializer(serializers.ModelSerializer):
    architecture = serializers.SerializerMethodField()
    input_size = serializers.SerializerMethodField()
    classes = serializers.SerializerMethodField()
    temperature = serializers.SerializerMethodField()
    metrics = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "version",
            "status",
            "is_active",
            "created_at",
            "activated_at",
            "architecture",
            "input_size",
            "classes",
            "temperature",
            "metrics",
        ]

    def get_architecture(self, obj: ModelVersion) -> str | None:
        value = obj.card.get("architecture")
        return str(value) if value is not None else None

    def get_input_size(self, obj: ModelVersion) -> int | None:
        value = obj.card.get("input_size")
        return int(value) if isinstance(value, int | float) else None

    def get_classes(self, obj: ModelVersion) -> list[str]:
        return [str(c) for c in obj.card.get("classes", [])]

    def get_temperature(self, obj: ModelVersion) -> float | None:
        value = obj.card.get("temperature")
        return float(value) if isinstance(value, int | float) else None

    @extend_schema_field(
        serializers.DictField(
            help_text="The model card's metrics as measured at training: accuracy, per-type "
            "precision and recall, calibration, latency..."
        )
    )
    def get_metrics(self, obj: ModelVersion) -> dict[str, Any]:
        return obj.metrics


# --- Artworks -----------------------------------------------------------------------------------------------------


class PredictionSerializer(serializers.Serializer):
    type = serializers.CharField(help_text="The type the model predicts (slug).")
    confidence = serializers.FloatField(help_text="The predicted type's probability.")
    probabilities = serializers.DictField(
        child=serializers.FloatField(), help_text="{type slug: probability}"
    )
    model_version = serializers.CharField()


#: How the schema shows a label's provenance (one enum wherever it appears).
PROVENANCE_FIELD = serializers.ChoiceField(choices=Artwork.Provenance.choices, allow_null=True)


class ArtworkSerializer(serializers.Serializer):
    """An artwork with the active model's prediction. Instances come from ``artworks_with_prediction``."""

    id = serializers.IntegerField(read_only=True)
    url = serializers.SerializerMethodField(help_text="This resource in the API.")
    page_url = serializers.SerializerMethodField(help_text="The artwork's page in the portal.")
    title = serializers.CharField()
    artist = serializers.CharField()
    date = serializers.CharField()
    accession_number = serializers.CharField(allow_null=True)
    description = serializers.CharField()
    image_url = serializers.SerializerMethodField(
        help_text="The display copy: at most ARTSITE_DISPLAY_SIZE pixels a side, without EXIF (no GPS)."
    )
    original_url = serializers.SerializerMethodField(
        help_text="The uploaded file as it came, metadata included: curators only."
    )
    notes = serializers.CharField(help_text="The curators' notes.")
    work_group = serializers.IntegerField(
        source="work_group_id",
        allow_null=True,
        help_text="The work this photo shows, when linked with others.",
    )
    thumbnail_url = serializers.SerializerMethodField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    file_size = serializers.IntegerField()
    sha256 = serializers.CharField()
    status = serializers.ChoiceField(choices=Artwork.Status.choices)
    error = serializers.CharField(help_text="Why the classification failed (status failed), else empty.")
    type = serializers.SerializerMethodField(
        help_text="The effective type: the curator's if set, else the active model's prediction; null while pending."
    )
    curator_type = serializers.SerializerMethodField(
        help_text="The label (given at import or by a curator), or null: then the type is the model's prediction."
    )
    label_provenance = serializers.SerializerMethodField(
        help_text="Where the label came from: imported (given at import), set (set by a curator), confirmed "
        "(kept by a curator after a look); null without a label."
    )
    label_verified = serializers.BooleanField(
        read_only=True, help_text="True when a curator set or confirmed the label (set or confirmed)."
    )
    prediction = serializers.SerializerMethodField(
        help_text="The active model version's prediction, or null."
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    processed_at = serializers.DateTimeField(allow_null=True)

    def _slug(self, type_id: int | None) -> str | None:
        return self.context["types"].get(type_id) if type_id else None

    def get_url(self, obj: Artwork) -> str:
        return _absolute(self.context.get("request"), reverse("api-artwork-detail", args=[obj.pk]))

    def get_page_url(self, obj: Artwork) -> str:
        return _absolute(self.context.get("request"), reverse("catalogue:artwork-detail", args=[obj.pk]))

    def get_image_url(self, obj: Artwork) -> str:
        return _display_url(self.context.get("request"), obj)

    def get_original_url(self, obj: Artwork) -> str:
        return _absolute(self.context.get("request"), reverse("catalogue:artwork-original", args=[obj.pk]))

    def get_thumbnail_url(self, obj: Artwork) -> str | None:
        return _file_url(self.context.get("request"), obj.thumbnail)

    def get_type(self, obj: Artwork) -> str | None:
        return self._slug(obj.effective_type_id)  # type: ignore[attr-defined]  # artworks_with_prediction

    def get_curator_type(self, obj: Artwork) -> str | None:
        return self._slug(obj.curator_type_id)

    @extend_schema_field(PROVENANCE_FIELD)
    def get_label_provenance(self, obj: Artwork) -> str | None:
        return obj.label_provenance if obj.curator_type_id is not None and obj.label_provenance else None

    @extend_schema_field(PredictionSerializer(allow_null=True))
    def get_prediction(self, obj: Artwork) -> dict[str, Any] | None:
        type_id = getattr(obj, "pred_type_id", None)
        if type_id is None:
            return None
        return {
            "type": self._slug(type_id),
            "confidence": obj.pred_confidence,  # type: ignore[attr-defined]
            "probabilities": obj.pred_probabilities,  # type: ignore[attr-defined]
            "model_version": self.context.get("model_version"),
        }


class ArtworkAcceptedSerializer(ArtworkSerializer):
    """The upload's answer (202): the stored artwork, pending; poll ``url`` until ``status`` is ready or failed."""


class ArtworkCreateSerializer(serializers.Serializer):
    image = serializers.FileField(help_text="JPEG, PNG, WebP or TIFF.")
    title = serializers.CharField(max_length=TITLE_MAX_LENGTH)
    artist = serializers.CharField(max_length=ARTIST_MAX_LENGTH, required=False, allow_blank=True, default="")
    date = serializers.CharField(max_length=DATE_MAX_LENGTH, required=False, allow_blank=True, default="")
    accession_number = serializers.CharField(
        max_length=ACCESSION_MAX_LENGTH, required=False, allow_blank=True, allow_null=True
    )
    description = serializers.CharField(
        max_length=DESCRIPTION_MAX_LENGTH, required=False, allow_blank=True, default=""
    )


class ArtworkUpdateSerializer(serializers.Serializer):
    """Metadata a PATCH may change; any other key is refused (rather than silently ignored)."""

    title = serializers.CharField(max_length=TITLE_MAX_LENGTH, required=False)
    artist = serializers.CharField(max_length=ARTIST_MAX_LENGTH, required=False, allow_blank=True)
    date = serializers.CharField(max_length=DATE_MAX_LENGTH, required=False, allow_blank=True)
    accession_number = serializers.CharField(
        max_length=ACCESSION_MAX_LENGTH, required=False, allow_blank=True, allow_null=True
    )
    description = serializers.CharField(max_length=DESCRIPTION_MAX_LENGTH, required=False, allow_blank=True)
    notes = serializers.CharField(max_length=DESCRIPTION_MAX_LENGTH, required=False, allow_blank=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(getattr(self.initial_data, "keys", lambda: [])()) - set(self.fields))
        if unknown:
            raise serializers.ValidationError(
                {
                    name: [f"“{name}” cannot be changed; editable: {', '.join(self.fields)}."]
                    for name in unknown
                },
                code="not_editable",
            )
        return attrs


class TypeFilterSerializer(serializers.Serializer):
    type = serializers.CharField(required=False, help_text="Only works of this effective type (slug).")

    def validate_type(self, value: str) -> ArtworkType:
        return validate_type_slug(value)


class SimilarQuerySerializer(TypeFilterSerializer):
    k = serializers.IntegerField(
        required=False,
        default=5,
        min_value=1,
        max_value=MAX_SIMILAR,
        help_text=f"How many (1 to {MAX_SIMILAR}).",
    )


class SimilarWorkSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    artist = serializers.CharField()
    type = serializers.CharField(help_text="The work's effective type (slug).")
    similarity = serializers.FloatField(help_text="Cosine similarity of the embeddings, 1 = identical.")
    url = serializers.URLField(help_text="The work in the API.")
    page_url = serializers.URLField(help_text="The work's page in the portal.")
    image_url = serializers.URLField(allow_null=True)
    thumbnail_url = serializers.URLField(allow_null=True)
    thumbnail_base64 = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="Only with ?inline=1: the JPEG thumbnail, base64-encoded (null if its file cannot be read).",
    )

    @classmethod
    def shape(
        cls, work: SimilarWork, *, request: Any, types: dict[int, str], inline: bool = False
    ) -> dict[str, Any]:
        artwork = work.artwork
        item: dict[str, Any] = {
            "id": artwork.pk,
            "title": artwork.title,
            "artist": artwork.artist,
            "type": types.get(work.effective_type_id),
            "similarity": round(work.similarity, 6),
            "url": _absolute(request, reverse("api-artwork-detail", args=[artwork.pk])),
            "page_url": _absolute(request, reverse("catalogue:artwork-detail", args=[artwork.pk])),
            "image_url": _display_url(request, artwork),
            "thumbnail_url": _file_url(request, artwork.thumbnail),
        }
        if inline:
            item["thumbnail_base64"] = _thumbnail_base64(artwork)
        return item


def _thumbnail_base64(artwork: Artwork) -> str | None:
    if not artwork.thumbnail:
        return None
    try:
        with artwork.thumbnail.open("rb") as handle:
            return base64.b64encode(handle.read()).decode("ascii")
    except OSError:
        logger.warning("thumbnail of artwork %s cannot be read", artwork.pk, exc_info=True)
        return None


class SimilarResponseSerializer(serializers.Serializer):
    artwork_id = serializers.IntegerField()
    model_version = serializers.CharField()
    k = serializers.IntegerField()
    type = serializers.CharField(allow_null=True, help_text="The type filter, or null.")
    results = SimilarWorkSerializer(many=True, help_text="Most similar first.")


class LabelInputSerializer(serializers.Serializer):
    type = serializers.CharField(help_text="The artwork's type (slug).")
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=1000)

    def validate_type(self, value: str) -> ArtworkType:
        return validate_type_slug(value)


class LabelCorrectionSerializer(serializers.ModelSerializer):
    from_type = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    to_type = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    user = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = LabelCorrection
        fields = ["id", "from_type", "to_type", "user", "source", "note", "created_at"]


class LabelResponseSerializer(serializers.Serializer):
    correction = LabelCorrectionSerializer()
    artwork = ArtworkSerializer()


# --- Possible mislabels -------------------------------------------------------------------------------------------


class MislabelSerializer(serializers.Serializer):
    """An open entry of the possible-mislabels queue: a label the newest finished label check doubts. Instances are
    :class:`LabelIssue` rows from ``mislabel_queue``."""

    artwork_id = serializers.IntegerField()
    url = serializers.SerializerMethodField(help_text="The artwork in the API.")
    page_url = serializers.SerializerMethodField(help_text="The artwork's page in the portal.")
    decide_url = serializers.SerializerMethodField(help_text="Where to POST the decision.")
    title = serializers.CharField(source="artwork.title")
    image_url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()
    label = serializers.CharField(source="label_type.slug", help_text="The doubted label (type slug).")
    label_provenance = serializers.ChoiceField(
        source="artwork.label_provenance",
        choices=Artwork.Provenance.choices,
        help_text="Where the label came from (never verified here: verified labels are not asked about).",
    )
    suggested_type = serializers.CharField(
        source="suggested_type.slug", help_text="The type the out-of-fold model prefers (slug)."
    )
    label_probability = serializers.FloatField(help_text="Out-of-fold probability of the label.")
    suggested_probability = serializers.FloatField(help_text="Out-of-fold probability of the suggested type.")
    probabilities = serializers.DictField(
        child=serializers.FloatField(), help_text="{type slug: out-of-fold probability}"
    )
    quality = serializers.FloatField(
        help_text="Label quality, 0 (surely wrong) to 1; the queue's order (lowest first)."
    )
    check_id = serializers.IntegerField(source="check_run_id", help_text="The label check that flagged it.")
    checked_at = serializers.DateTimeField(
        source="check_run.finished_at", allow_null=True, help_text="When that check finished."
    )

    def get_url(self, obj: LabelIssue) -> str:
        return _absolute(self.context.get("request"), reverse("api-artwork-detail", args=[obj.artwork_id]))

    def get_page_url(self, obj: LabelIssue) -> str:
        return _absolute(
            self.context.get("request"), reverse("catalogue:artwork-detail", args=[obj.artwork_id])
        )

    def get_decide_url(self, obj: LabelIssue) -> str:
        return _absolute(self.context.get("request"), reverse("api-mislabel-decide", args=[obj.artwork_id]))

    def get_image_url(self, obj: LabelIssue) -> str:
        return _display_url(self.context.get("request"), obj.artwork)

    def get_thumbnail_url(self, obj: LabelIssue) -> str | None:
        return _file_url(self.context.get("request"), obj.artwork.thumbnail)


class MislabelDecisionInputSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(
        choices=MislabelDecision.choices,
        help_text="keep: the label is right (it becomes confirmed, verified, and is never flagged again); "
        "suggestion: set the suggested type; type: set the type given in `type`.",
    )
    type = serializers.CharField(
        required=False, help_text="Only with decision `type`: the type to set (slug)."
    )
    note = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=1000,
        help_text="Why (kept in the audit trail).",
    )

    def validate_type(self, value: str) -> ArtworkType:
        return validate_type_slug(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["decision"] == MislabelDecision.TYPE and "type" not in attrs:
            raise serializers.ValidationError(
                {"type": ["The decision “type” needs the type to set."]}, code="required"
            )
        if attrs["decision"] != MislabelDecision.TYPE and "type" in attrs:
            raise serializers.ValidationError(
                {"type": [f"`type` goes only with the decision “type”, not “{attrs['decision']}”."]},
                code="invalid",
            )
        return attrs


# --- Classify -----------------------------------------------------------------------------------------------------


class ClassifyInputSerializer(serializers.Serializer):
    image = serializers.FileField(
        help_text="JPEG, PNG, WebP or TIFF; the same limits as uploads. Not stored."
    )


class ClassifyQuerySerializer(serializers.Serializer):
    inline = serializers.BooleanField(
        required=False,
        default=False,
        help_text="1/true: add each similar work's thumbnail as base64 (as the seed project's clients expect).",
    )


class ClassifyResultSerializer(serializers.Serializer):
    type = serializers.CharField(help_text="The predicted type (slug).")
    type_name = serializers.CharField()
    confidence = serializers.FloatField(help_text="The predicted type's probability (calibrated).")
    probabilities = serializers.DictField(
        child=serializers.FloatField(), help_text="{type slug: probability}"
    )
    model_version = serializers.CharField()
    similar = SimilarWorkSerializer(
        many=True, help_text="The most similar works in the catalogue, most similar first."
    )


# --- Exports and the seed project's /predict/ (catalogue/api/exports.py, catalogue/api/compat.py) ----------------


class ExportQuerySerializer(serializers.Serializer):
    format = serializers.ChoiceField(
        choices=["csv", "jsonl"],
        default="csv",
        help_text="csv (a header line, one column per value; `probability_<type>` per type) or jsonl (JSON lines: "
        "one object per line).",
    )


class SeedPredictionSerializer(serializers.Serializer):
    label = serializers.CharField(help_text="The predicted type (slug).")
    probability = serializers.FloatField(help_text="Its probability, rounded to two decimals.")


class SeedNeighbourSerializer(serializers.Serializer):
    base64 = serializers.CharField(help_text="The neighbour's image file, base64-encoded.")
    label = serializers.CharField(help_text="The neighbour's type (slug; its effective type).")
    position = serializers.IntegerField(help_text="1 to 5, nearest first.")


class SeedPredictResponseSerializer(serializers.Serializer):
    prediction = SeedPredictionSerializer()
    nearest_neighbors = SeedNeighbourSerializer(many=True)
