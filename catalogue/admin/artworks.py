"""The Django admin for curators: the catalogue with the model's view of each work, bulk relabelling, the audit trail.

Every change of type made here goes through :func:`catalogue.services.label_correct` with ``source=ADMIN``, so it
is recorded in the audit trail like any other: the bulk actions, and the "Curator type" field of the change form
(``curator_type`` itself is not an editable form field, so a plain save can never change it silently).

What each group sees follows its permissions (migration ``catalogue/0002``): Curators (staff) can edit metadata,
relabel and reprocess; a staff user with only view permissions sees everything read-only, without actions.
Artworks are added through the portal's upload page or ``import_artworks`` (the upload service checks and stores
the files), not here; and they are not deleted here, because a plain admin delete would leave their image files
behind.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ORDER_VAR
from django.db.models import F, OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from catalogue.admin.bulk_edit_action import bulk_edit
from catalogue.filters import CONFIDENCE_BANDS, NONE, PROVENANCE_CHOICES, ArtworkFilterSet
from catalogue.models import Artwork, ArtworkType, LabelCorrection
from catalogue.selectors.artworks import artwork_types, artworks_with_prediction
from catalogue.selectors.similarity import artwork_similar
from catalogue.services.artworks import METADATA_FIELDS, artwork_update
from catalogue.services.classification import artwork_retry
from catalogue.services.labels import label_correct
from inference.models import ModelVersion


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * float(value):.0f}%"


# --- Filters: thin adapters over the catalogue's one FilterSet (catalogue/filters.py) ----------------------------


class _FilterSetFilter(admin.SimpleListFilter):
    """A list filter whose meaning is the :class:`ArtworkFilterSet` filter of the same name."""

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        filters = ArtworkFilterSet({self.parameter_name: value}, queryset=queryset)
        return filters.qs if filters.is_valid() else queryset.none()


class _TypeFilter(_FilterSetFilter):
    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(t.slug, t.name) for t in artwork_types()] + [(NONE, "None")]


class PredictedTypeFilter(_TypeFilter):
    title = "predicted type (active model)"
    parameter_name = "predicted"


class EffectiveTypeFilter(_TypeFilter):
    title = "effective type"
    parameter_name = "type"


class LabelledFilter(_FilterSetFilter):
    title = "curator label"
    parameter_name = "labelled"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Labelled by a curator"), ("no", "Not labelled")]


class ProvenanceFilter(_FilterSetFilter):
    title = "label source"
    parameter_name = "provenance"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(value), str(label)) for value, label in PROVENANCE_CHOICES]


class ConfidenceBandFilter(_FilterSetFilter):
    title = "confidence (active model)"
    parameter_name = "confidence"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, (label, _, _) in CONFIDENCE_BANDS.items()]


class ModelVersionFilter(_FilterSetFilter):
    title = "predicted by model version"
    parameter_name = "model_version"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            (v.version, f"{v.version} (active)" if v.is_active else v.version)
            for v in ModelVersion.objects.all()
        ] + [(NONE, "No model yet")]


# --- Artwork ------------------------------------------------------------------------------------------------------


class ArtworkAdminForm(forms.ModelForm):
    set_type = forms.ModelChoiceField(
        ArtworkType.objects.all(),
        required=False,
        label="Curator type",
        help_text="Setting or changing it is recorded in the type history (source: admin). "
        "Leave it as it is to keep the current label.",
    )
    type_note = forms.CharField(
        required=False,
        max_length=1000,
        label="Note",
        help_text="Why the type changed (kept in the type history).",
    )

    class Meta:
        model = Artwork
        fields = list(METADATA_FIELDS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and "set_type" in self.fields:
            self.fields["set_type"].initial = self.instance.curator_type_id


class ReadOnlyAdminMixin:
    """Shown, never written from the admin: rows that only services create (audit trail, seeded types, model
    versions registered from their folders)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class LabelCorrectionInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = LabelCorrection
    fk_name = "artwork"
    verbose_name = "type change"
    verbose_name_plural = "Type history (audit trail)"
    fields = ("created_at", "from_type", "to_type", "user", "source", "note")
    readonly_fields = fields
    ordering = ("-created_at", "-id")
    extra = 0
    can_delete = False
    show_change_link = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[LabelCorrection]:
        return super().get_queryset(request).select_related("from_type", "to_type", "user")


@admin.register(Artwork)
class ArtworkAdmin(admin.ModelAdmin):
    form = ArtworkAdminForm
    list_display = (
        "thumbnail_tag",
        "title",
        "predicted_type",
        "confidence",
        "curator_type",
        "provenance",
        "effective_type",
        "status",
        "model_version",
    )
    list_display_links = ("thumbnail_tag", "title")
    list_filter = (
        PredictedTypeFilter,
        EffectiveTypeFilter,
        "status",
        LabelledFilter,
        ProvenanceFilter,
        ConfidenceBandFilter,
        ModelVersionFilter,
    )
    search_fields = ("title",)  # shows the search box; get_search_results replaces what it does
    list_per_page = 50
    inlines = (LabelCorrectionInline,)
    actions = ("confirm_predicted_type", "reprocess", bulk_edit)
    readonly_fields = (
        "image_preview",
        "prediction_summary",
        "similar_works",
        "curator_type",
        "provenance",
        "status",
        "error",
        "attempts",
        "processed_at",
        "uploaded_by",
        "sha256",
        "width",
        "height",
        "file_size",
        "created_at",
        "updated_at",
    )

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        type_fields: tuple[str, ...] = ("curator_type",)
        if obj is not None and self.has_change_permission(request, obj):
            type_fields = ("set_type", "type_note")  # set_type starts at the current label
        return [
            (None, {"fields": ("image_preview", *METADATA_FIELDS)}),
            ("Type", {"fields": (*type_fields, "provenance", "prediction_summary", "similar_works")}),
            ("Processing", {"fields": ("status", "error", "attempts", "processed_at")}),
            (
                "File",
                {
                    "classes": ("collapse",),
                    "fields": (
                        "sha256",
                        "width",
                        "height",
                        "file_size",
                        "uploaded_by",
                        "created_at",
                        "updated_at",
                    ),
                },
            ),
        ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Artwork]:
        # The active version's prediction as annotations (one join), plus the names the list shows.
        return artworks_with_prediction().annotate(
            pred_version_id=F("pred__model_version_id"),
            pred_type_name=Subquery(
                ArtworkType.objects.filter(pk=OuterRef("pred_type_id")).values("name")[:1]
            ),
            effective_type_name=Subquery(
                ArtworkType.objects.filter(pk=OuterRef("effective_type_id")).values("name")[:1]
            ),
            pred_version_name=Subquery(
                ModelVersion.objects.filter(pk=OuterRef("pred_version_id")).values("version")[:1]
            ),
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        # The catalogue's one search (ArtworkFilterSet's ``search``), not the admin's icontains over search_fields.
        if not search_term.strip():
            return queryset, False
        filters = ArtworkFilterSet({"search": search_term}, queryset=queryset)
        if not filters.is_valid():  # too long, or a NUL character
            return queryset.none(), False
        # Ordered by rank, as in the portal and the API, unless a column was chosen (the admin orders first).
        if ORDER_VAR in request.GET:
            return filters.qs.order_by(*queryset.query.order_by), False
        return filters.qs, False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # uploads go through the upload service (portal, API, import_artworks)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a plain delete would leave the image files behind

    def view_on_site(self, obj: Artwork) -> str:
        return reverse("catalogue:artwork-detail", args=[obj.pk])

    # List columns

    @admin.display(description="")
    def thumbnail_tag(self, obj: Artwork) -> SafeString | str:
        if not obj.thumbnail:
            return ""
        return format_html(
            '<img src="{}" alt="" style="height:48px;max-width:72px;object-fit:cover">', obj.thumbnail.url
        )

    @admin.display(description="predicted type", ordering="pred_type_name")
    def predicted_type(self, obj: Artwork) -> str:
        return getattr(obj, "pred_type_name", None) or "–"

    @admin.display(description="confidence", ordering="pred_confidence")
    def confidence(self, obj: Artwork) -> str:
        return _percent(getattr(obj, "pred_confidence", None))

    @admin.display(description="label source", ordering="label_provenance")
    def provenance(self, obj: Artwork) -> str:
        if obj.curator_type_id is None:
            return "–"
        verified = " ✓ verified" if obj.label_verified else ""
        return f"{obj.get_label_provenance_display()}{verified}"

    @admin.display(description="effective type", ordering="effective_type_name")
    def effective_type(self, obj: Artwork) -> str:
        return getattr(obj, "effective_type_name", None) or "–"

    @admin.display(description="model version", ordering="pred_version_name")
    def model_version(self, obj: Artwork) -> str:
        return getattr(obj, "pred_version_name", None) or "–"

    # Change page

    @admin.display(description="image")
    def image_preview(self, obj: Artwork) -> SafeString | str:
        if not obj.pk or not obj.image:
            return "–"
        src = obj.thumbnail.url if obj.thumbnail else obj.image.url
        return format_html(
            '<a href="{}"><img src="{}" alt="{}" style="max-width:320px;max-height:320px"></a>'
            '<div class="help">{}×{} px</div>',
            obj.image.url,
            src,
            obj.title,
            obj.width,
            obj.height,
        )

    @admin.display(description="model's prediction")
    def prediction_summary(self, obj: Artwork) -> SafeString | str:
        if not obj.pk:
            return "–"
        # The active version's first, then the newest.
        predictions = sorted(
            obj.predictions.select_related("model_version", "predicted_type"),
            key=lambda p: (not p.model_version.is_active, -p.model_version.created_at.timestamp()),
        )
        if not predictions:
            return "No prediction yet." if obj.status != Artwork.Status.FAILED else f"Failed: {obj.error}"
        types = artwork_types()
        current = predictions[0]
        rows = format_html_join(
            "",
            '<tr><th style="padding-right:1em">{}</th><td style="width:220px">'
            '<div style="background:#79aec8;height:10px;width:{}%"></div></td><td>{}</td></tr>',
            (
                (
                    t.name,
                    round(100 * float(current.probabilities.get(t.slug, 0.0)), 1),
                    _percent(current.probabilities.get(t.slug, 0.0)),
                )
                for t in sorted(types, key=lambda t: -float(current.probabilities.get(t.slug, 0.0)))
            ),
        )
        others = format_html_join(
            "",
            "<li>{}: {} ({})</li>",
            (
                (p.model_version.version, p.predicted_type.name, _percent(p.confidence))
                for p in predictions[1:]
            ),
        )
        return format_html(
            "<p><strong>{}</strong>, {} confident — model {}{}</p><table>{}</table>{}",
            current.predicted_type.name,
            _percent(current.confidence),
            current.model_version.version,
            " (active)" if current.model_version.is_active else " (not the active version)",
            rows,
            format_html("<p>Other model versions:</p><ul>{}</ul>", others) if predictions[1:] else "",
        )

    @admin.display(description="five most similar works")
    def similar_works(self, obj: Artwork) -> SafeString | str:
        if not obj.pk:
            return "–"
        similar = artwork_similar(artwork=obj, k=5)
        if not similar:
            return "None yet (no embedding for the active model, or no other ready works)."
        names = {t.pk: t.name for t in artwork_types()}
        tiles = format_html_join(
            "",
            '<a href="{}" style="display:inline-block;width:110px;margin:0 8px 8px 0;vertical-align:top" '
            'title="{}"><img src="{}" alt="{}" style="width:110px;height:90px;object-fit:cover"><br>'
            "<small>{}<br>{} · {} similar</small></a>",
            (
                (
                    reverse("admin:catalogue_artwork_change", args=[s.artwork.pk]),
                    s.artwork.title,
                    s.artwork.thumbnail.url if s.artwork.thumbnail else "",
                    s.artwork.title,
                    s.artwork.title[:40],
                    names.get(s.effective_type_id, "–"),
                    _percent(s.similarity),
                )
                for s in similar
            ),
        )
        return format_html('<div class="similar-works">{}</div>', tiles)

    def save_model(self, request: HttpRequest, obj: Artwork, form: forms.ModelForm, change: bool) -> None:
        # Metadata through the service, then the type through label_correct, which writes the audit row.
        changed = {name: form.cleaned_data[name] for name in form.changed_data if name in METADATA_FIELDS}
        if changed:
            artwork_update(artwork=obj, user=request.user, source=LabelCorrection.Source.ADMIN, **changed)
        new_type = form.cleaned_data.get("set_type")
        current = Artwork.objects.values_list("curator_type_id", flat=True).get(pk=obj.pk)
        if new_type is not None and new_type.pk != current:
            label_correct(
                artwork=obj,
                to_type=new_type,
                user=request.user,
                source=LabelCorrection.Source.ADMIN,
                note=form.cleaned_data.get("type_note") or "",
            )

    # Actions

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if self.has_change_permission(request):
            # One action per type: a single click from the list, no intermediate page.
            for artwork_type in artwork_types():
                name = f"set_type_{artwork_type.slug}"
                actions[name] = (_set_type_action(artwork_type.pk), name, f"Set type to {artwork_type.name}")
        return actions

    @admin.action(description="Confirm the predicted type", permissions=["change"])
    def confirm_predicted_type(self, request: HttpRequest, queryset: QuerySet[Artwork]) -> None:
        """Adopt the active model's type as the curator label. A work a curator already labelled otherwise is left
        alone (curators outrank the model; "Set type to ..." changes it deliberately)."""
        types = {t.pk: t for t in artwork_types()}
        confirmed = unchanged = unpredicted = overruled = 0
        for artwork in queryset:
            predicted = types.get(getattr(artwork, "pred_type_id", None) or -1)
            if predicted is None:
                unpredicted += 1
            elif artwork.curator_type_id == predicted.pk:
                unchanged += 1
            elif artwork.curator_type_id is not None:
                overruled += 1
            else:
                label_correct(
                    artwork=artwork,
                    to_type=predicted,
                    user=request.user,
                    source=LabelCorrection.Source.ADMIN,
                    note="Confirmed the model's type (admin bulk action).",
                )
                confirmed += 1
        summary = _summary(confirmed, "confirmed", unchanged, unpredicted)
        if overruled:
            summary += f" {overruled} left as they are: a curator gave them another type."
        self.message_user(request, summary, messages.SUCCESS)

    @admin.action(description="Reprocess (queue classification again)", permissions=["change"])
    def reprocess(self, request: HttpRequest, queryset: QuerySet[Artwork]) -> None:
        count = 0
        for artwork in queryset:
            artwork_retry(artwork=artwork)
            count += 1
        self.message_user(request, f"{count} artwork(s) queued for classification again.", messages.SUCCESS)


def _summary(changed: int, verb: str, unchanged: int, unpredicted: int) -> str:
    parts = [f"{changed} artwork(s) {verb}"]
    if unchanged:
        parts.append(f"{unchanged} already had that type")
    if unpredicted:
        parts.append(f"{unpredicted} skipped: no prediction from the active model yet")
    return "; ".join(parts) + "."


def _set_type_action(type_id: int) -> Any:
    def set_type(modeladmin: ArtworkAdmin, request: HttpRequest, queryset: QuerySet[Artwork]) -> None:
        to_type = ArtworkType.objects.get(pk=type_id)
        changed = unchanged = 0
        for artwork in queryset:
            if artwork.curator_type_id == to_type.pk:
                unchanged += 1
                continue
            label_correct(
                artwork=artwork,
                to_type=to_type,
                user=request.user,
                source=LabelCorrection.Source.ADMIN,
                note="Set in the admin (bulk action).",
            )
            changed += 1
        modeladmin.message_user(
            request, _summary(changed, f"set to {to_type.name}", unchanged, 0), messages.SUCCESS
        )

    return set_type


# --- The audit trail and the types --------------------------------------------------------------------------------


@admin.register(LabelCorrection)
class LabelCorrectionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The audit trail, read-only for everyone: rows are written only by ``label_correct`` (and imports)."""

    list_display = ("created_at", "artwork_link", "from_type", "to_type", "user", "source", "note")
    list_filter = ("source", "to_type", "from_type", "created_at")
    search_fields = ("artwork__title", "artwork__accession_number", "user__username", "note")
    list_select_related = ("artwork", "from_type", "to_type", "user")
    date_hierarchy = "created_at"
    fields = ("artwork_link", "from_type", "to_type", "user", "source", "note", "created_at")
    readonly_fields = fields

    @admin.display(description="artwork", ordering="artwork__title")
    def artwork_link(self, obj: LabelCorrection) -> SafeString:
        if obj.artwork is None:  # the artwork was deleted; its deletion record says which it was
            deletion = obj.deletion
            return format_html("{} (deleted)", deletion.title if deletion is not None else "an artwork")
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:catalogue_artwork_change", args=[obj.artwork_id]),
            obj.artwork.title,
        )
