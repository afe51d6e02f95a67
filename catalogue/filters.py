"""The catalogue's filters, defined once (django-filter).

:class:`ArtworkFilterSet` is what "filter the catalogue" means everywhere: the portal's catalogue page renders its
form, the API's ``GET artworks/`` reads its query parameters (and documents them in the schema), and the admin's list
filters are thin adapters over its filters. It filters a queryset annotated by
:func:`catalogue.selectors.artworks.artworks_with_prediction` (``effective_type_id``, ``pred_type_id``,
``pred_confidence``).

Types are given by slug, case-insensitively and singular or plural (``painting``, ``Paintings``), or ``none`` for works
without one (pending, or failed before any prediction).
"""

from __future__ import annotations

import math
from typing import Any

import django_filters
from django import forms
from django.db.models import Exists, OuterRef, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from catalogue.models import Artwork, ArtworkType, Prediction
from catalogue.selectors.artworks import (
    Tally,
    TypedWorks,
    artwork_type_by_slug,
    artwork_types,
    artworks_of_type,
)
from catalogue.selectors.maps import map_box_condition, map_box_count
from catalogue.selectors.search import MAX_SEARCH_LENGTH, RANK_AT_MOST, SearchResult, artworks_search
from inference.models import ModelVersion

NONE = "none"

#: Confidence bands of the active version's prediction: (label, lowest, highest — exclusive).
CONFIDENCE_BANDS = {
    "lt50": ("below 50%", 0.0, 0.5),
    "50-80": ("50–80%", 0.5, 0.8),
    "80-95": ("80–95%", 0.8, 0.95),
    "95+": ("95% and above", 0.95, 1.01),
}

#: ``provenance`` values: where the label came from (``none``: no label, the type is the model's), or ``verified``
#: (set or confirmed by a curator).
VERIFIED = "verified"
PROVENANCE_CHOICES = [
    (NONE, "No label (the model's type)"),
    *Artwork.Provenance.choices,
    (VERIFIED, "Verified (set or confirmed by a curator)"),
]

#: ``ordering`` values, as the API and the portal spell them (``-`` for descending).
ORDERING_FIELDS = (
    ("created_at", "created_at"),
    ("title", "title"),
    ("artist", "artist"),
    ("pred_confidence", "confidence"),
)


class ArtworkTypeField(forms.Field):
    """A type slug (or ``none``) that must name a type of the catalogue; cleans to the type, or ``NONE``."""

    widget = forms.Select

    def to_python(self, value: Any) -> ArtworkType | str | None:
        text = str(value or "").strip()
        if not text:
            return None
        if text.strip().lower() == NONE:
            return NONE
        artwork_type = artwork_type_by_slug(text)
        if artwork_type is None:
            choices = ", ".join(t.slug for t in artwork_types())
            # The value goes in as a parameter: a "%" in it must not be read as a format (django-filter formats).
            raise forms.ValidationError(
                "Unknown type “%(value)s”; choose one of: %(choices)s.",
                code="unknown_type",
                params={"value": text, "choices": choices},
            )
        return artwork_type


@extend_schema_field(OpenApiTypes.STR)  # the schema cannot infer a type from an annotation
class ArtworkTypeFilter(django_filters.Filter):
    """Works whose annotation ``field_name`` (a type id) is the given type, or is null for ``none``."""

    field_class = ArtworkTypeField

    def filter(self, qs: QuerySet[Any], value: Any) -> QuerySet[Any]:
        if value in (None, ""):
            return qs
        if value == NONE:
            return qs.filter(**{f"{self.field_name}__isnull": True})
        return qs.filter(**{self.field_name: value.pk})


class StrictBooleanField(forms.Field):
    """``true``/``false`` (also ``1``/``0``, ``yes``/``no``); anything else is an error, not "no filter"."""

    TRUE, FALSE = {"true", "1", "yes"}, {"false", "0", "no"}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault(
            "widget", forms.Select(choices=[("", "Any label"), ("true", "Labelled"), ("false", "Unlabelled")])
        )
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> bool | None:
        text = str(value or "").strip().lower()
        if not text:
            return None
        if text in self.TRUE | self.FALSE:
            return text in self.TRUE
        raise forms.ValidationError("Must be true or false.", code="invalid")


class StrictBooleanFilter(django_filters.Filter):
    field_class = StrictBooleanField


def validate_model_version(value: str) -> None:
    if "\x00" in value:
        return  # the field's own validator refuses NUL characters; PostgreSQL could not even compare them
    if value and value.strip().lower() != NONE and not ModelVersion.objects.filter(version=value).exists():
        raise forms.ValidationError(
            "Unknown model version “%(value)s”.", code="unknown_model_version", params={"value": value}
        )


class ArtworkFilterForm(forms.Form):
    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        low, high = data.get("min_confidence"), data.get("max_confidence")
        if low is not None and high is not None and low > high:
            self.add_error(
                "min_confidence",
                forms.ValidationError("min_confidence is larger than max_confidence.", code="invalid"),
            )
        return data


class StableOrderingFilter(django_filters.OrderingFilter):
    """Ordering with the newest id as the tie-breaker, so pages never repeat or skip a work."""

    def filter(self, qs: QuerySet[Any], value: Any) -> QuerySet[Any]:
        if not value:
            return qs
        return qs.order_by(*[self.get_ordering_value(param) for param in value], "-id")


class MapBoxField(forms.Field):
    """A box on the collection map: ``x0,y0,x1,y1`` in the active layout's units (the map page writes it)."""

    def to_python(self, value: Any) -> tuple[float, float, float, float] | None:
        text = str(value or "").strip()
        if not text:
            return None
        try:
            x0, y0, x1, y1 = (float(part) for part in text.split(","))
        except ValueError:
            raise forms.ValidationError(
                "map_box must be four numbers: x0,y0,x1,y1.", code="invalid"
            ) from None
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x0 > x1 or y0 > y1:
            raise forms.ValidationError("map_box must be finite with x0 ≤ x1 and y0 ≤ y1.", code="invalid")
        return (x0, y0, x1, y1)


@extend_schema_field(OpenApiTypes.STR)
class MapBoxFilter(django_filters.Filter):
    """Works placed inside a box on the active version's collection map (its selection, opened in the catalogue)."""

    field_class = MapBoxField

    def filter(self, qs: QuerySet[Any], value: Any) -> QuerySet[Any]:
        if not value:
            return qs
        return qs.filter(map_box_condition(box=value))


class ArtworkFilterSet(django_filters.FilterSet):
    search = django_filters.CharFilter(
        method="filter_search",
        label="Search",
        max_length=MAX_SEARCH_LENGTH,
        help_text="Words (or their beginnings) in the title, artist, accession number or description, accents "
        "ignored; typos in artists' names and accession numbers tolerated. Ranked, best first, unless `ordering` "
        f"is given or more than {RANK_AT_MOST:,} works match (then newest first; `search_ranked` says which).",
        widget=forms.TextInput(attrs={"placeholder": "Title, artist, accession no., description"}),
    )
    type = ArtworkTypeFilter(
        field_name="effective_type_id",
        method="filter_type",
        label="Type",
        help_text="Effective type: the curator's, else the active model's (slug, e.g. 'painting'; or 'none').",
    )
    predicted = ArtworkTypeFilter(
        field_name="pred_type_id",
        label="Predicted type",
        help_text="The active model's prediction (slug or 'none').",
    )
    status = django_filters.ChoiceFilter(choices=Artwork.Status.choices, empty_label="Any status")
    labelled = StrictBooleanFilter(
        method="filter_labelled",
        label="Curator label",
        help_text="true: only works a curator labelled; false: only works without a curator label.",
    )
    provenance = django_filters.ChoiceFilter(
        method="filter_provenance",
        choices=PROVENANCE_CHOICES,
        empty_label="Any label source",
        label="Label source",
        help_text="Where the label came from: none (no label: the effective type is the model's), imported "
        "(given at import), set (set by a curator), confirmed (kept by a curator after a look), or verified "
        "(set or confirmed).",
    )
    confidence = django_filters.ChoiceFilter(
        method="filter_confidence_band",
        choices=[(key, label) for key, (label, _, _) in CONFIDENCE_BANDS.items()],
        empty_label="Any confidence",
        label="Confidence",
        help_text="A band of the active model's confidence: " + ", ".join(CONFIDENCE_BANDS) + ".",
    )
    min_confidence = django_filters.NumberFilter(
        field_name="pred_confidence", lookup_expr="gte", min_value=0.0, max_value=1.0
    )
    max_confidence = django_filters.NumberFilter(
        field_name="pred_confidence", lookup_expr="lte", min_value=0.0, max_value=1.0
    )
    model_version = django_filters.CharFilter(
        method="filter_model_version",
        validators=[validate_model_version],
        help_text="Only works this model version has classified ('none': works no version has classified yet).",
    )
    ordering = StableOrderingFilter(fields=ORDERING_FIELDS, help_text="Default: -created_at.")
    map_box = MapBoxFilter(
        label="Map selection",
        help_text="Works inside a box on the collection map: x0,y0,x1,y1 in the active layout's units.",
    )

    class Meta:
        model = Artwork
        fields: list[str] = []
        form = ArtworkFilterForm

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [("", "All types"), *((t.slug, t.name) for t in artwork_types())]
        for name in ("type", "predicted"):
            self.filters[name].extra["widget"] = forms.Select(choices=choices)

    #: The search's and the type filter's outcomes once :attr:`qs` is read (``None``: not asked).
    search_result: SearchResult | None = None
    type_result: TypedWorks | None = None

    def filter_type(self, qs: QuerySet[Any], name: str, value: ArtworkType | str) -> QuerySet[Any]:
        # By the rule's condition, not the annotation: PostgreSQL can estimate it, and a rare type starts from its
        # few works (artworks_of_type).
        self.type_result = artworks_of_type(qs, type_id=None if value == NONE else getattr(value, "pk", None))
        return self.type_result.queryset

    def filter_search(self, qs: QuerySet[Any], name: str, value: str) -> QuerySet[Any]:
        # Ordered by rank; an explicit ``ordering`` (applied after this filter) replaces it, so it need not be ranked.
        result = artworks_search(queryset=qs, text=value, rank=not self.form.cleaned_data.get("ordering"))
        self.search_result = result if value.strip() else None
        return result.queryset

    @property
    def search_ranked(self) -> bool | None:
        """Whether the list is in the search's rank order: ``None`` without a search or with an explicit
        ``ordering``; ``False`` when the search matched too many works to rank (listed newest first)."""
        self.qs  # noqa: B018  # the filters run (once) and leave their outcomes
        if self.search_result is None or self.form.cleaned_data.get("ordering"):
            return None
        return self.search_result.ranked

    def count_known(self) -> Tally | None:
        """How many works the list holds, when one filter alone decides it and knows a cheaper count than counting
        the list: a search (its matches, read on the way: exact up to the ranking limit, else "more than"), a box
        on the map (its points, from the box index alone), a common type (the planner's estimate, "about").
        ``None`` otherwise: the list is to be counted."""
        self.qs  # noqa: B018  # the filters run (once) and leave their outcomes
        data = self.form.cleaned_data
        given = {name for name, value in data.items() if name != "ordering" and value not in (None, "", [])}
        if given == {"search"} and self.search_result is not None:
            return self.search_result.matches
        if given == {"map_box"}:
            return map_box_count(box=data["map_box"])
        if given == {"type"} and self.type_result is not None:
            return self.type_result.tally
        return None

    def filter_labelled(self, qs: QuerySet[Any], name: str, value: bool | None) -> QuerySet[Any]:
        return qs if value is None else qs.filter(curator_type__isnull=not value)

    def filter_provenance(self, qs: QuerySet[Any], name: str, value: str) -> QuerySet[Any]:
        if value == NONE:
            return qs.filter(curator_type__isnull=True)
        provenances = list(Artwork.VERIFIED) if value == VERIFIED else [value]
        return qs.filter(curator_type__isnull=False, label_provenance__in=provenances)

    def filter_confidence_band(self, qs: QuerySet[Any], name: str, value: str) -> QuerySet[Any]:
        _, low, high = CONFIDENCE_BANDS[value]
        return qs.filter(pred_confidence__gte=low, pred_confidence__lt=high)

    def filter_model_version(self, qs: QuerySet[Any], name: str, value: str) -> QuerySet[Any]:
        # Exists rather than a join: a join to the predictions would repeat each work once per version.
        predictions = Prediction.objects.filter(artwork=OuterRef("pk"))
        if value.strip().lower() == NONE:
            return qs.filter(~Exists(predictions))
        return qs.filter(Exists(predictions.filter(model_version__version=value)))
