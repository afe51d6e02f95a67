"""Every read of the catalogue that is more than a primary-key lookup.

The pages and the API always show the *active* model version's predictions; predictions of other versions stay in
the database (a model swap switches at once, and back, without recomputing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import connection, transaction
from django.db.models import Count, F, FilteredRelation, Q, QuerySet
from django.db.models.functions import Coalesce
from pgvector.django import CosineDistance

from catalogue.models import Artwork, ArtworkType, LabelCorrection, Prediction
from inference.models import ModelVersion
from inference.selectors import model_version_active

# Candidates the HNSW index hands to the filters. pgvector 0.6 has no iterative index scan: a filter (same model
# version, ready, a type) is applied *after* the index returns ef_search rows, so a selective filter can leave
# fewer than k. We ask for more candidates and fall back to an exact scan when the result is still short.
HNSW_EF_SEARCH = 100
MAX_SIMILAR = 50


@dataclass(frozen=True)
class SimilarWork:
    artwork: Artwork
    distance: float
    predicted_type_id: int
    effective_type_id: int

    @property
    def similarity(self) -> float:
        return 1.0 - self.distance


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


def artworks_with_prediction(version: ModelVersion | None = None) -> QuerySet[Artwork]:
    """Artworks annotated with the active version's prediction and their effective type.

    Annotations: ``pred_type_id``, ``pred_confidence``, ``pred_probabilities``, ``effective_type_id``.
    """
    version = version if version is not None else model_version_active()
    version_id = version.pk if version is not None else -1
    return (
        Artwork.objects.annotate(
            pred=FilteredRelation("predictions", condition=Q(predictions__model_version_id=version_id)),
        )
        .annotate(
            pred_type_id=F("pred__predicted_type_id"),
            pred_confidence=F("pred__confidence"),
            pred_probabilities=F("pred__probabilities"),
            effective_type_id=Coalesce("curator_type_id", "pred__predicted_type_id"),
        )
        .select_related("curator_type")
    )


def artwork_list(
    *,
    type_slug: str | None = None,
    status: str | None = None,
    search: str | None = None,
    labelled: bool | None = None,
    min_confidence: float | None = None,
    max_confidence: float | None = None,
    model_version: str | None = None,
    ordering: str | None = None,
) -> QuerySet[Artwork]:
    """The catalogue, filtered. Unknown filter values filter nothing out rather than fail (the forms validate)."""
    qs = artworks_with_prediction()
    if type_slug:
        artwork_type = artwork_type_by_slug(type_slug)
        qs = qs.filter(effective_type_id=artwork_type.pk if artwork_type else -1)
    if status:
        qs = qs.filter(status=status)
    if search:
        term = search.strip()
        qs = qs.filter(Q(title__icontains=term) | Q(artist__icontains=term) | Q(accession_number__icontains=term))
    if labelled is not None:
        qs = qs.filter(curator_type__isnull=not labelled)
    if min_confidence is not None:
        qs = qs.filter(pred_confidence__gte=min_confidence)
    if max_confidence is not None:
        qs = qs.filter(pred_confidence__lte=max_confidence)
    if model_version:
        qs = qs.filter(predictions__model_version__version=model_version).distinct()
    allowed = {"created_at", "-created_at", "title", "-title", "artist", "-artist", "pred_confidence", "-pred_confidence"}
    if ordering in allowed:
        qs = qs.order_by(ordering, "-id")
    return qs


def artwork_effective_type(*, artwork: Artwork) -> ArtworkType | None:
    """The curator's type if set, else the active model's prediction."""
    if artwork.curator_type_id:
        return ArtworkType.objects.get(pk=artwork.curator_type_id)
    prediction = artwork_prediction(artwork=artwork)
    return prediction.predicted_type if prediction else None


def artwork_prediction(*, artwork: Artwork, version: ModelVersion | None = None) -> Prediction | None:
    version = version if version is not None else model_version_active()
    if version is None:
        return None
    return Prediction.objects.select_related("predicted_type", "model_version").filter(
        artwork=artwork, model_version=version
    ).first()


def artwork_similar(*, artwork: Artwork, k: int = 5, type_slug: str | None = None) -> list[SimilarWork]:
    """The k works most similar to ``artwork`` by cosine distance of the active version's embeddings."""
    prediction = artwork_prediction(artwork=artwork)
    if prediction is None:
        return []
    return embedding_nearest(
        embedding=np.asarray(prediction.embedding, dtype=np.float32),
        version=prediction.model_version,
        k=k,
        type_slug=type_slug,
        exclude_artwork_id=artwork.pk,
    )


def embedding_nearest(
    *,
    embedding: Sequence[float] | np.ndarray,
    version: ModelVersion,
    k: int = 5,
    type_slug: str | None = None,
    exclude_artwork_id: int | None = None,
) -> list[SimilarWork]:
    """The k ready artworks nearest to an embedding (same model version), optionally within one effective type.

    Uses the HNSW index; if the filters leave fewer than k rows, repeats the query as an exact scan so that k come
    back whenever k exist.
    """
    k = max(1, min(int(k), MAX_SIMILAR))
    vector = np.asarray(embedding, dtype=np.float32)
    qs = Prediction.objects.filter(model_version=version, artwork__status=Artwork.Status.READY)
    if exclude_artwork_id is not None:
        qs = qs.exclude(artwork_id=exclude_artwork_id)
    if type_slug:
        artwork_type = artwork_type_by_slug(type_slug)
        type_id = artwork_type.pk if artwork_type else -1
        qs = qs.filter(
            Q(artwork__curator_type_id=type_id) | Q(artwork__curator_type__isnull=True, predicted_type_id=type_id)
        )
    qs = (
        qs.select_related("artwork", "artwork__curator_type", "predicted_type")
        .annotate(distance=CosineDistance("embedding", vector))
        .order_by("distance")
    )
    rows = _run_vector_query(qs, k, exact=False)
    if len(rows) < k:
        rows = _run_vector_query(qs, k, exact=True)
    return [
        SimilarWork(
            artwork=row.artwork,
            distance=float(row.distance),
            predicted_type_id=row.predicted_type_id,
            effective_type_id=row.artwork.curator_type_id or row.predicted_type_id,
        )
        for row in rows
    ]


def _run_vector_query(qs: QuerySet[Prediction], k: int, *, exact: bool) -> list[Any]:
    with transaction.atomic(), connection.cursor() as cursor:
        if exact:
            # Without index scans PostgreSQL sorts every matching row by distance: exact, and cheap once the
            # filters have narrowed the rows down.
            cursor.execute("SET LOCAL enable_indexscan = off")
        else:
            cursor.execute("SET LOCAL hnsw.ef_search = %s", [max(HNSW_EF_SEARCH, 4 * k)])
        return list(qs[:k])


def artwork_label_history(*, artwork: Artwork) -> QuerySet[LabelCorrection]:
    return artwork.label_corrections.select_related("from_type", "to_type", "user")


def catalogue_counts() -> dict[str, int]:
    """How many artworks there are in each status."""
    counts = {status: 0 for status, _ in Artwork.Status.choices}
    for row in Artwork.objects.values("status").order_by().annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    counts["total"] = sum(counts.values())
    return counts

