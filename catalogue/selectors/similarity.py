"""Similar works: nearest neighbours of an embedding among the catalogue's, through pgvector's HNSW indexes."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import connection
from pgvector.django import VectorField

from catalogue.models import EMBEDDING_DIMENSIONS, Artwork, MovedEmbedding, Prediction, effective_type
from catalogue.selectors.artworks import artwork_prediction, artwork_type_by_slug
from inference.models import ModelVersion

# Candidates the HNSW index hands to the filters. pgvector 0.6 has no iterative index scan: a filter (same model
# version, ready, a type) is applied *after* the index returns ef_search rows, so a selective filter can leave
# fewer than k. We ask for more candidates and fall back to an exact scan when the result is still short (0.8's
# iterative scan is switched on where the server has it: _session_prepare).
# Measured (make bench-search at 1M works, m=16, ef_construction=64, warm 5 GB of shared buffers, quiet machine,
# 2026-12-02): unfiltered recall@5 0.979 at 100, 0.983 at 160, 0.988 at 240, 0.998 at 400, p95 3.5 / 4.0 / 10.9 /
# 13.3 ms; with the query's own type p95 8.5 / 7.8-14.6 ms at 100 / 160. 160 is the smallest that keeps recall@5
# above 0.98 (the goal), at about 0.4 ms more than 100; docs/performance.md has the runs.
HNSW_EF_SEARCH = 160


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


def artwork_similar(
    *, artwork: Artwork, k: int = 5, type_slug: str | None = None, prediction: Prediction | None = None
) -> list[SimilarWork]:
    """The k works most similar to ``artwork`` by cosine distance of the active version's embeddings. A work
    photographed several times (a :class:`WorkGroup`) counts once, by its most similar photo; the artwork's own
    other photos are left out (its page shows them apart). ``prediction``: the artwork's prediction by the active
    version, when the caller has it already (None: looked up)."""
    prediction = prediction if prediction is not None else artwork_prediction(artwork=artwork)
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

    With a type T, the two halves of "effective type is T" are asked separately, in one statement (UNION ALL), and
    merged: works the model put in T that no curator moved elsewhere (the per-type partial HNSW index
    ``prediction_hnsw_<slug>`` hands out only those, so a rare type finds its k in the index instead of in an exact
    scan of the whole type), and works a curator moved into T from another type (few: scanned exactly, from the
    side table of moved works' embeddings, :class:`catalogue.models.MovedEmbedding`, which the label and prediction
    services keep exact). Their vectors sit among the type the model wrongly gave them, so for a query from that
    neighbourhood they are often the nearest works of T, and a filtered index search would miss them.

    One hand-written statement per search, its text built once per shape (:func:`_statement`): the ORM's query
    compilation and model instances cost more than PostgreSQL's search at a million works (make bench-search
    prints both).
    """
    k = max(1, min(int(k), MAX_SIMILAR))
    ef = max(HNSW_EF_SEARCH if ef_search is None else int(ef_search), 4 * k)
    params: dict[str, Any] = {
        "vector": VECTOR.get_prep_value(np.asarray(embedding, dtype=np.float32)),
        "version": version.pk,
        "ready": Artwork.Status.READY,
        "exclude": -1 if exclude_artwork_id is None else int(exclude_artwork_id),
        "k": k,
        "type": -1,
    }
    if type_slug:
        artwork_type = artwork_type_by_slug(type_slug)
        params["type"] = artwork_type.pk if artwork_type else -1
    typed = bool(type_slug)
    _session_prepare(ef)
    rows = _fetch(_statement(typed=typed, exact=False), params)
    if sum(1 for row in rows if row.indexed) < k:
        # The index's candidates left fewer than k after the filters: the indexed half again, exactly.
        exact = _fetch(_statement(typed=typed, exact=True), params)
        rows = [*exact, *(row for row in rows if not row.indexed)]
        if stats is not None:
            stats.fallbacks += 1
    rows.sort(key=lambda row: row.distance)
    return [row.work() for row in rows[:k]]


VECTOR = VectorField(dimensions=EMBEDDING_DIMENSIONS)
# The artwork's columns a similar work shows; the large ones (colour histogram, description) stay deferred.
_ARTWORK_FIELDS = [
    f for f in Artwork._meta.concrete_fields if f.attname not in ("color_histogram", "description")
]
_ARTWORK_NAMES = [f.attname for f in _ARTWORK_FIELDS]


@dataclass(frozen=True)
class _Row:
    distance: float
    indexed: bool  # from the index half (which an exact scan replaces when short)
    values: tuple[Any, ...]  # as the statement returns them

    def work(self) -> SimilarWork:
        """The similar work, made only for the rows kept: a typed search reads up to 2 k rows (k from each half)."""
        return SimilarWork(
            artwork=Artwork.from_db(connection.alias, _ARTWORK_NAMES, self.values[4:]),
            distance=self.distance,
            predicted_type_id=self.values[1],
            effective_type_id=self.values[2],
        )


@functools.cache
def _statement(*, typed: bool, exact: bool) -> str:
    """The search's SQL: the indexed half (through the HNSW index, or exactly: ordering by ``distance + 0`` is an
    expression no vector index can serve, so PostgreSQL computes the distance of every row the filters leave, found
    through the ordinary indexes), and with a type the exact half of works a curator moved into it
    (:func:`_moved_half`).

    The type id is interpolated by the driver as a literal, so the planner matches the per-type partial index."""
    columns = ", ".join(f'a."{f.column}"' for f in _ARTWORK_FIELDS)
    distance = "p.embedding <=> %(vector)s::vector"
    effective = _effective_type_sql()

    def half(indexed: bool, condition: str, by_index: bool) -> str:
        order = distance if by_index else f"({distance}) + 0"
        return (
            f"SELECT {indexed}, p.predicted_type_id, {effective}, {distance}, {columns} "
            "FROM catalogue_prediction p JOIN catalogue_artwork a ON a.id = p.artwork_id "
            "WHERE p.model_version_id = %(version)s AND a.status = %(ready)s AND p.artwork_id <> %(exclude)s "
            f"{condition} ORDER BY {order} LIMIT %(k)s"
        )

    if not typed:
        return half(True, "", not exact)
    kept = (
        "AND p.predicted_type_id = %(type)s AND (a.curator_type_id IS NULL OR a.curator_type_id = %(type)s)"
    )
    if exact:
        return half(True, kept, False)
    return f"({half(True, kept, True)}) UNION ALL ({_moved_half(columns)})"


def _moved_half(columns: str) -> str:
    """The works a curator moved into the type, nearest first, from the side table of moved works' embeddings
    (:class:`catalogue.models.MovedEmbedding`: their type there is the curator's, the effective one by the rule).

    Its distances are computed and sorted in the subquery (a few thousand rows of a small table at a million works;
    ``OFFSET 0`` keeps it a subquery), and the artworks are joined in that order by their primary key, so the
    ready check and the artwork's columns cost a lookup only for the rows read until k are found, not for every
    moved work of the type."""
    distance = "embedding <=> %(vector)s::vector"
    return (
        f"SELECT false, m.predicted_type_id, m.artwork_type_id, m.distance, {columns} "
        f"FROM (SELECT artwork_id, predicted_type_id, artwork_type_id, {distance} AS distance "
        f"FROM {MovedEmbedding._meta.db_table} WHERE model_version_id = %(version)s "
        "AND artwork_type_id = %(type)s AND artwork_id <> %(exclude)s ORDER BY distance OFFSET 0) m "
        "JOIN catalogue_artwork a ON a.id = m.artwork_id WHERE a.status = %(ready)s ORDER BY m.distance LIMIT %(k)s"
    )


def _effective_type_sql() -> str:
    """The SQL of :func:`catalogue.models.effective_type` (the one rule) over this search's tables ``p``, ``a``."""
    qs = Prediction.objects.annotate(
        effective=effective_type(curator_type="artwork__curator_type_id", predicted_type="predicted_type_id")
    ).values("effective")
    sql, _ = qs.query.sql_with_params()
    expression = sql.removeprefix("SELECT ").split(' AS "effective"', 1)[0]
    return expression.replace('"catalogue_artwork".', "a.").replace('"catalogue_prediction".', "p.")


def _fetch(sql: str, params: dict[str, Any]) -> list[_Row]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        results = cursor.fetchall()
    return [_Row(distance=float(values[3]), indexed=bool(values[0]), values=values) for values in results]


def _session_prepare(ef_search: int) -> None:
    """``hnsw.ef_search`` for this connection, set once per connection rather than per query: a SET LOCAL needs a
    transaction around each search (three more round trips than the search itself). Inside an atomic block a
    session SET would be undone by a rollback, so there it is SET LOCAL.

    With pgvector 0.8 or later (compose's image; the embedded server has 0.6), the index scan is iterative: when the
    filters drop candidates it goes on searching (``relaxed_order``: results re-sorted here) instead of coming back
    short, so the exact-scan fallback is rarely needed."""
    with connection.cursor() as cursor:
        if connection.in_atomic_block:
            cursor.execute("SET LOCAL hnsw.ef_search = %s", [int(ef_search)])
            if _iterative(cursor):
                cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            return
        key = (id(connection.connection), int(ef_search))
        if getattr(connection, "_artsite_ef_search", None) != key:
            cursor.execute("SET hnsw.ef_search = %s", [int(ef_search)])
            if _iterative(cursor):
                cursor.execute("SET hnsw.iterative_scan = relaxed_order")
            connection._artsite_ef_search = key  # type: ignore[attr-defined]


def _iterative(cursor: Any) -> bool:
    """Whether the server's pgvector has iterative index scans (0.8.0 and later); asked once per connection."""
    key = id(connection.connection)
    cached = getattr(connection, "_artsite_iterative", None)
    if cached is None or cached[0] != key:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cursor.fetchone()
        parts = tuple(int(x) for x in re.findall(r"\d+", row[0])[:2]) if row else (0, 0)
        cached = (key, parts >= (0, 8))
        connection._artsite_iterative = cached  # type: ignore[attr-defined]
    return bool(cached[1])
