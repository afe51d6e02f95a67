"""The "Models" page of the admin: every registered model version, its card's metrics, and which one serves.

Read-only on purpose: versions come from their folders. The one write is the "activate" action (superusers), which
calls ``catalogue.services.model_rollout.model_activate``: the catalogue is re-embedded in the background and the switch happens
when it is complete; the page shows the progress (catalogue coverage) meanwhile.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from catalogue.admin.artworks import ReadOnlyAdminMixin
from catalogue.services.model_rollout import model_activate, model_reembed_progress
from inference.models import ModelVersion
from inference.registry import ModelUnavailable
from inference.services import model_versions_sync


def _metric(value: Any, *, percent: bool = True) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, int | float):
        return f"{100 * value:.1f}%" if percent else f"{value:.3f}"
    return str(value)


SHOWN_METRICS = {"accuracy", "macro_f1", "ece", "n", "evaluated_on", "per_type"}


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    # Read-only: versions are registered from their folders, and predictions and embeddings hang on them.
    list_display = (
        "version",
        "status",
        "architecture",
        "accuracy",
        "macro_f1",
        "ece",
        "evaluated_on",
        "prediction_count",
        "created_at",
        "activated_at",
    )
    list_filter = ("status",)
    search_fields = ("version",)
    fields = (
        "version",
        "status",
        "activated_at",
        "created_at",
        "path",
        "architecture",
        "accuracy",
        "macro_f1",
        "ece",
        "evaluated_on",
        "prediction_count",
        "catalogue_coverage",
        "per_type_metrics",
        "card_details",
    )
    readonly_fields = fields
    actions = ("activate",)

    def sync_on_list(self, request: HttpRequest) -> None:
        model_versions_sync()  # a version trained since the last visit shows up at once

    @admin.action(
        description="Activate the selected version (re-embeds the catalogue, then switches)",
        permissions=["activate"],
    )
    def activate(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", messages.ERROR)
            return
        version = queryset.get()
        try:
            version = model_activate(version=version)
        except ModelUnavailable as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        if version.is_active:
            self.message_user(request, f"{version.version} is active.", messages.SUCCESS)
        else:
            self.message_user(
                request,
                f"Re-embedding the catalogue with {version.version}; pages keep the current version until it is "
                "done, then switch. Reload this page to follow the progress.",
                messages.INFO,
            )

    def has_activate_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser)

    def get_queryset(self, request: HttpRequest) -> QuerySet[ModelVersion]:
        return super().get_queryset(request).annotate(n_predictions=Count("predictions"))

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        self.sync_on_list(request)
        return super().changelist_view(request, {"title": "Models", **(extra_context or {})})

    @admin.display(description="architecture")
    def architecture(self, obj: ModelVersion) -> str:
        return str(obj.card.get("architecture", "–"))

    @admin.display(description="accuracy")
    def accuracy(self, obj: ModelVersion) -> str:
        return _metric(obj.metrics.get("accuracy"))

    @admin.display(description="macro F1")
    def macro_f1(self, obj: ModelVersion) -> str:
        return _metric(obj.metrics.get("macro_f1"))

    @admin.display(description="ECE")
    def ece(self, obj: ModelVersion) -> str:
        return _metric(obj.metrics.get("ece"), percent=False)

    @admin.display(description="evaluated on")
    def evaluated_on(self, obj: ModelVersion) -> str:
        metrics = obj.metrics
        n = metrics.get("n")
        where = metrics.get("evaluated_on") or ""
        return f"{n} images {where}".strip() if n else (where or "–")

    @admin.display(description="predictions", ordering="n_predictions")
    def prediction_count(self, obj: ModelVersion) -> int:
        return int(getattr(obj, "n_predictions", obj.predictions.count()))

    @admin.display(description="per type (card)")
    def per_type_metrics(self, obj: ModelVersion) -> SafeString | str:
        per_type = obj.metrics.get("per_type") or {}
        if not per_type:
            return "–"
        rows = format_html_join(
            "",
            "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    slug,
                    _metric(m.get("precision")),
                    _metric(m.get("recall")),
                    _metric(m.get("f1")),
                    m.get("support", "–"),
                )
                for slug, m in per_type.items()
            ),
        )
        return format_html(
            "<table><tr><th>type</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>{}</table>",
            rows,
        )

    @admin.display(description="catalogue embedded")
    def catalogue_coverage(self, obj: ModelVersion) -> str:
        progress = model_reembed_progress(version=obj)
        return f"{progress.done} of {progress.total} ready works have this version's prediction and embedding"

    @admin.display(description="card")
    def card_details(self, obj: ModelVersion) -> SafeString | str:
        # Everything on the card the columns above do not show (e.g. a gold-set comparison from retraining).
        shown = {k: v for k, v in obj.card.items() if k not in {"metrics", "path"}}
        shown.update({f"metrics.{k}": v for k, v in obj.metrics.items() if k not in SHOWN_METRICS})
        if not shown:
            return "–"
        return format_html_join(
            "", "<div><code>{}</code>: {}</div>", ((k, str(v)[:300]) for k, v in shown.items())
        )
