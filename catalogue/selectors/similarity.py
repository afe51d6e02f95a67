"""Similar works: nearest neighbours of an embedding among the catalogue's, through pgvector's HNSW indexes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import connection
from django.db.models import (
    Q,
    QuerySet,
    Value,
)
from pgvector.django import CosineDistance

from catalogue.models import Artwork, Prediction, effective_type
from catalogue.selectors.artworks import artwork_prediction, artwork_type_by_slug
from inference.models import ModelVersion

# Candidates the HNSW index hands to the filters. pgvector 0.6 has no iterative index scan: a filter (same model
# version, ready, a type) is applied *after* the index returns ef_search rows, so a selective filter can leave
# fewer than k. We ask for more candidates and fall back to an exact scan when the result is still short.
# Measured (make bench-search, 1M works, m=16, ef_construction=64): recall@5 0.995 at 40 and at 100 unfiltered,
# 0.993 vs 0.998 for a rare type, no latency difference within the noise; 100 keeps the margin for filters.
HNSW_EF_SEARCH = 100


MAX_SIMILAR = 50


@dataclass
class SearchStats:
    """What :func:`embedding_nearest` did, added up over the searches it is given to (the similar-works benchmark
    counts these)."""

    fallbacks: int = 0  # index results short of k, repeated as an exact scan


@dataclass(frozen=True)
class SimilarWork:
    artwork: Artwork
    distance: float
    predicted_type_id: int
    effective_type_id: int

    @property
    def similarity(self) -> float:
        return 1.0 - self.distance


def artwork_similar(*, artwork: Artwork, k: int = 5, type_slug: str | None = None) -> list[SimilarWork]:
    """The k works most similar to ``artwork`` by cosine distance of the active version's embeddings. A work
    photographed several times (a :class:`WorkGroup`) counts once, by its most similar photo; the artwork's own
    other photos are left out (its page shows them apart)."""
    prediction = artwork_prediction(artwork=artwork)
    if prediction is None:
        return []
    # Linked photos are few: asking for twice as many leaves k once they are folded (never over MAX_SIMILAR).
    nearest = embedding_nearest(
        embedding=np.asarray(prediction.embedding, dtype=np.float32),
        version=prediction.model_version,
        k=min(MAX_SIMILAR, 2 * k),
        type_slug=type_slug,
        exclude_artwork_id=artwork.pk,
    )
    return works_once(nearest, own_group=artwork.work_group_id)[:k]


def works_once(works: Sequence[SimilarWork], *, own_group: int | None = None) -> list[SimilarWork]:
    """Each work once (the first, most similar, photo of a group), without the photos of ``own_group``."""
    seen: set[int] = set() if own_group is None else {own_group}
    kept = []
    for work in works:
        group = work.artwork.work_group_id
        if group is not None:
            if group in seen:
                continue
            seen.add(group)
        kept.append(work)
    return kept


def embedding_nearest(
    *,
    embedding: Sequence[float] | np.ndarray,
    version: ModelVersion,
    k: int = 5,
    type_slug: str | None = None,
    exclude_artwork_id: int | None = None,
    ef_search: int | None = None,
    stats: SearchStats | None = None,
) -> list[SimilarWork]:
    """The k ready artworks nearest to an embedding (same model version), optionally within one effective type.

    Uses the HNSW index; if the filters leave fewer than k rows, repeats the query as an exact scan so that k come
    back whenever k exist. ``ef_search``: the candidates the index hands to the filters (default
    ``HNSW_EF_SEARCH``; never fewer than 4 k). ``stats``: counts what the search did (exact-scan fallbacks).

    With a type T, the two halves of "effective type is T" are asked separately and merged: works the model put in
    T that no curator moved elsewhere (the per-type partial HNSW index ``prediction_hnsw_<slug>`` hands out only
    those, so a rare type finds its k in the index instead of in an exact scan of the whole type), and works a
    curator moved into T from another type (few: scanned exactly). pgvector 0.6 has no iterative index scan (0.8
    has); this keeps filtered search fast, and complete when short, on both.
    """
    k = max(1, min(int(k), MAX_SIMILAR))
    vector = np.asarray(embedding, dtype=np.float32)
    ef = max(HNSW_EF_SEARCH if ef_search is None else int(ef_search), 4 * k)
    qs = Prediction.objects.filter(model_version=version, artwork__status=Artwork.Status.READY)
    if exclude_artwork_id is not None:
        qs = qs.exclude(artwork_id=exclude_artwork_id)
    if not type_slug:
        rows = _nearest_rows(qs, vector, k, ef_search=ef, stats=stats)
    else:
        artwork_type = artwork_type_by_slug(type_slug)
        type_id = artwork_type.pk if artwork_type else -1
        # Works the model put in T that no curator moved elsewhere: the partial index of T.
        kept = qs.filter(
            Q(artwork__curator_type__isnull=True) | Q(artwork__curator_type_id=type_id),
            predicted_type_id=type_id,
        )
        rows = _nearest_rows(kept, vector, k, ef_search=ef, stats=stats)
        # Works a curator moved into T from another type: scanned exactly (found through the curator_type index).
        # Their vectors sit among the type the model wrongly gave them, so for a query from that neighbourhood
        # they are often the nearest works of T, and a filtered index search would miss them. The cost grows with
        # the number of such corrections into T (make bench-search measures it).
        moved = qs.filter(artwork__curator_type_id=type_id).exclude(predicted_type_id=type_id)
        extra = _run_vector_query(moved, vector, k, exact=True)
        rows = sorted([*rows, *extra], key=lambda row: row.distance)[:k]
    return [
        SimilarWork(
            artwork=row.artwork,
            distance=float(row.distance),
            predicted_type_id=row.predicted_type_id,
            effective_type_id=row.effective_type_id,
        )
        for row in rows
    ]


def _nearest_rows(
    qs: QuerySet[Prediction], vector: np.ndarray, k: int, *, ef_search: int, stats: SearchStats | None
) -> list[Any]:
    """Through the index, and exactly when the index's candidates leave fewer than k after the filters."""
    rows = _run_vector_query(qs, vector, k, exact=False, ef_search=ef_search)
    if len(rows) < k:
        rows = _run_vector_query(qs, vector, k, exact=True)
        if stats is not None:
            stats.fallbacks += 1
    return rows


def _run_vector_query(
    qs: QuerySet[Prediction], vector: np.ndarray, k: int, *, exact: bool, ef_search: int = HNSW_EF_SEARCH
) -> list[Any]:
    """The k rows of ``qs`` nearest to ``vector``: through the HNSW index (``ef_search`` candidates), or exactly.

    Exact: ordering by ``distance + 0`` is an expression no vector index can serve, so PostgreSQL computes the
    distance of every row the filters leave (found through the ordinary indexes) and sorts them. Unlike turning
    index scans off, this keeps the btree indexes for the filters and the join.
    """
    distance: Any = CosineDistance("embedding", vector)
    if exact:
        distance = distance + Value(0.0)
    else:
        _ensure_ef_search(ef_search)
    # Only what SimilarWork carries: the artwork row (its types are ids), not the prediction's own vector and
    # probabilities (parsing five 128-float vectors costs more than the search), and no joins to the types table
    # (each join adds planning time to every search).
    ordered = (
        qs.select_related("artwork")
        .defer("embedding", "probabilities")
        .annotate(
            distance=distance,
            effective_type_id=effective_type(
                curator_type="artwork__curator_type_id", predicted_type="predicted_type_id"
            ),
        )
    )
    return list(ordered.order_by("distance")[:k])


def _ensure_ef_search(value: int) -> None:
    """``hnsw.ef_search`` for this connection, set once per connection rather than per query: a SET LOCAL needs a
    transaction around each search (three more round trips than the search itself). Inside an atomic block a
    session SET would be undone by a rollback, so there it is SET LOCAL."""
    with connection.cursor() as cursor:
        if connection.in_atomic_block:
            cursor.execute("SET LOCAL hnsw.ef_search = %s", [int(value)])
            return
        key = (id(connection.connection), int(value))
        if getattr(connection, "_artsite_ef_search", None) != key:
            cursor.execute("SET hnsw.ef_search = %s", [int(value)])
            connection._artsite_ef_search = key  # type: ignore[attr-defined]
