"""Reads of artworks: the catalogue list and its filters, an artwork's prediction, type and history, counts.

The pages and the API always show the *active* model version's predictions; predictions of other versions stay in
the database (a model swap switches at once, and back, without recomputing).
"""

from __future__ import annotations

from typing import Any

from django.db.models import (
    Case,
    Count,
    IntegerField,
    QuerySet,
    Value,
    When,
)

from catalogue.models import Artwork, ArtworkType, Prediction
from inference.models import ModelVersion
from inference.selectors import model_version_active


def artwork_types() -> list[ArtworkType]:
    return list(ArtworkType.objects.all())


def artwork_type_by_slug(slug: str) -> ArtworkType | None:
    """Find a type by slug or name, case-insensitively, accepting singular and plural ("drawing", "Paintings")."""
    key = (slug or "").strip().lower()
    if not key:
        return None
    for t in ArtworkType.objects.all():
        names = {t.slug, t.name.lower()}
        forms = names | {n.rstrip("s") for n in names} | {n + "s" for n in names}
        if key in forms or key.rstrip("s") in forms:
            return t
    return None


def artworks_with_prediction(version: ModelVersion | None = None) -> QuerySet[Any]:
    """Artworks annotated with the active version's prediction (or ``version``'s) and their effective type.

    Annotations: ``pred_type_id``, ``pred_confidence``, ``pred_probabilities``, ``effective_type_id``
    (:meth:`catalogue.models.ArtworkQuerySet.with_prediction`).
    """
    version = version if version is not None else model_version_active()
    return Artwork.objects.with_prediction(version.pk if version is not None else None).select_related(
        "curator_type"
    )


def artwork_effective_type(*, artwork: Artwork) -> ArtworkType | None:
    """The curator's type if set, else the active model's prediction (:func:`catalogue.models.effective_type`)."""
    type_id = (
        artworks_with_prediction().filter(pk=artwork.pk).values_list("effective_type_id", flat=True).first()
    )
    return ArtworkType.objects.filter(pk=type_id).first() if type_id is not None else None


def artwork_prediction(*, artwork: Artwork, version: ModelVersion | None = None) -> Prediction | None:
    version = version if version is not None else model_version_active()
    if version is None:
        return None
    return (
        Prediction.objects.select_related("predicted_type", "model_version")
        .filter(artwork=artwork, model_version=version)
        .first()
    )


def catalogue_counts() -> dict[str, int]:
    """How many artworks there are in each status."""
    counts = {status: 0 for status, _ in Artwork.Status.choices}
    for row in Artwork.objects.values("status").order_by().annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    counts["total"] = sum(counts.values())
    return counts


def artworks_unfinished(*, limit: int = 200) -> QuerySet[Artwork]:
    """Failed, pending and processing artworks (the jobs a curator may retry), failed first, oldest first."""
    order = {Artwork.Status.FAILED: 0, Artwork.Status.PROCESSING: 1, Artwork.Status.PENDING: 2}
    rank = Case(*(When(status=s, then=Value(r)) for s, r in order.items()), output_field=IntegerField())
    return (
        Artwork.objects.filter(status__in=list(order))
        .annotate(status_rank=rank)
        .order_by("status_rank", "updated_at", "id")[:limit]
    )
