"""Every read of the catalogue that is more than a primary-key lookup.

The pages and the API always show the *active* model version's predictions; predictions of other versions stay in
the database (a model swap switches at once, and back, without recomputing).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.core.files.storage import default_storage
from django.db import connection
from django.db.models import (
    BinaryField,
    Case,
    Count,
    F,
    FilteredRelation,
    FloatField,
    Func,
    IntegerField,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from pgvector.django import CosineDistance

from catalogue.models import Artwork, ArtworkType, LabelCorrection, Prediction
from inference.models import ModelVersion
from inference.selectors import model_version_active

# Candidates the HNSW index hands to the filters. pgvector 0.6 has no iterative index scan: a filter (same model
# version, ready, a type) is applied *after* the index returns ef_search rows, so a selective filter can leave
# fewer than k. We ask for more candidates and fall back to an exact scan when the result is still short.
# Measured (make bench-search, 1M works, m=16, ef_construction=64): recall@5 0.995 at 40 and at 100 unfiltered,
# 0.993 vs 0.998 for a rare type, no latency difference within the noise; 100 keeps the margin for filters.
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


def artworks_with_prediction(version: ModelVersion | None = None) -> QuerySet[Any]:
    # Typed QuerySet[Any]: the annotations below are not model fields, and django-stubs checks lookups by field.
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
) -> QuerySet[Any]:
    """The catalogue, filtered. Unknown filter values filter nothing out rather than fail (the forms validate)."""
    qs = artworks_with_prediction()
    if type_slug:
        artwork_type = artwork_type_by_slug(type_slug)
        qs = qs.filter(effective_type_id=artwork_type.pk if artwork_type else -1)
    if status:
        qs = qs.filter(status=status)
    if search:
        term = search.strip()
        qs = qs.filter(
            Q(title__icontains=term) | Q(artist__icontains=term) | Q(accession_number__icontains=term)
        )
    if labelled is not None:
        qs = qs.filter(curator_type__isnull=not labelled)
    if min_confidence is not None:
        qs = qs.filter(pred_confidence__gte=min_confidence)
    if max_confidence is not None:
        qs = qs.filter(pred_confidence__lte=max_confidence)
    if model_version:
        qs = qs.filter(predictions__model_version__version=model_version).distinct()
    allowed = {
        "created_at",
        "-created_at",
        "title",
        "-title",
        "artist",
        "-artist",
        "pred_confidence",
        "-pred_confidence",
    }
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
    return (
        Prediction.objects.select_related("predicted_type", "model_version")
        .filter(artwork=artwork, model_version=version)
        .first()
    )


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

    With a type T, the two halves of "effective type is T" are asked separately and merged: works the model put in
    T that no curator moved elsewhere (the per-type partial HNSW index ``prediction_hnsw_<slug>`` hands out only
    those, so a rare type finds its k in the index instead of in an exact scan of the whole type), and works a
    curator moved into T from another type (few: scanned exactly). pgvector 0.6 has no iterative index scan (0.8
    has); this keeps filtered search fast, and complete when short, on both.
    """
    k = max(1, min(int(k), MAX_SIMILAR))
    vector = np.asarray(embedding, dtype=np.float32)
    qs = Prediction.objects.filter(model_version=version, artwork__status=Artwork.Status.READY)
    if exclude_artwork_id is not None:
        qs = qs.exclude(artwork_id=exclude_artwork_id)
    if not type_slug:
        rows = _run_vector_query(qs, vector, k, exact=False)
        if len(rows) < k:
            rows = _run_vector_query(qs, vector, k, exact=True)
    else:
        artwork_type = artwork_type_by_slug(type_slug)
        type_id = artwork_type.pk if artwork_type else -1
        # Works the model put in T that no curator moved elsewhere: the partial index of T.
        kept = qs.filter(
            Q(artwork__curator_type__isnull=True) | Q(artwork__curator_type_id=type_id),
            predicted_type_id=type_id,
        )
        rows = _run_vector_query(kept, vector, k, exact=False)
        if len(rows) < k:
            rows = _run_vector_query(kept, vector, k, exact=True)
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
            effective_type_id=row.artwork.curator_type_id or row.predicted_type_id,
        )
        for row in rows
    ]


def _run_vector_query(qs: QuerySet[Prediction], vector: np.ndarray, k: int, *, exact: bool) -> list[Any]:
    """The k rows of ``qs`` nearest to ``vector``: through the HNSW index, or exactly.

    Exact: ordering by ``distance + 0`` is an expression no vector index can serve, so PostgreSQL computes the
    distance of every row the filters leave (found through the ordinary indexes) and sorts them. Unlike turning
    index scans off, this keeps the btree indexes for the filters and the join.
    """
    distance: Any = CosineDistance("embedding", vector)
    if exact:
        distance = distance + Value(0.0)
    else:
        _ensure_ef_search(max(HNSW_EF_SEARCH, 4 * k))
    # Only what SimilarWork carries: the artwork row (its types are ids), not the prediction's own vector and
    # probabilities (parsing five 128-float vectors costs more than the search), and no joins to the types table
    # (each join adds planning time to every search).
    ordered = qs.select_related("artwork").defer("embedding", "probabilities").annotate(distance=distance)
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


@dataclass(frozen=True)
class ImageClassification:
    """What the active model says of an image that is not in the catalogue (the API's ``classify/``)."""

    version: ModelVersion
    predicted_type: ArtworkType
    confidence: float
    probabilities: dict[str, float]  # {type slug: probability}, in the model card's class order
    similar: list[SimilarWork]
    timings: dict[str, float]  # seconds spent in "model" and "search" (the API reports them in Server-Timing)
    type_slugs: dict[int, str]  # {type id: slug} of every type, to name the similar works' types


def image_classify(*, image: Any, k: int = 5) -> ImageClassification:
    """Classify a decoded RGB ``PIL.Image`` with the active model version and find the k most similar ready works.

    Stores nothing. Raises ``inference.registry.ModelUnavailable`` when no version is active or it cannot load.
    """
    import time

    from inference.loader import get_classifier
    from inference.registry import ModelUnavailable

    version = model_version_active()
    if version is None:
        raise ModelUnavailable("(none)", "no model version is active")
    classifier = get_classifier(version.version)
    started = time.perf_counter()
    probabilities, embeddings = classifier.predict_images([image])
    predicted = time.perf_counter()
    similar = embedding_nearest(embedding=embeddings[0], version=version, k=k)
    searched = time.perf_counter()
    probs = {slug: float(p) for slug, p in zip(classifier.classes, probabilities[0], strict=True)}
    best = max(probs, key=probs.__getitem__)
    types = {t.slug: t for t in artwork_types()}
    if best not in types:
        raise ModelUnavailable(
            version.version, f"it predicts the type {best!r}, which the catalogue does not have"
        )
    return ImageClassification(
        version=version,
        predicted_type=types[best],
        confidence=probs[best],
        probabilities=probs,
        similar=similar,
        timings={"model": predicted - started, "search": searched - predicted},
        type_slugs={t.pk: slug for slug, t in types.items()},
    )


def artwork_label_history(*, artwork: Artwork) -> QuerySet[LabelCorrection]:
    return artwork.label_corrections.select_related("from_type", "to_type", "user")


def catalogue_counts() -> dict[str, int]:
    """How many artworks there are in each status."""
    counts = {status: 0 for status, _ in Artwork.Status.choices}
    for row in Artwork.objects.values("status").order_by().annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    counts["total"] = sum(counts.values())
    return counts


# --- Curation: the review queue, model-curator agreement, the collection map, training examples ---------------

REVIEW_ORDERS = {
    "confidence": "Lowest confidence first",
    "entropy": "Highest entropy first",
    "margin": "Smallest margin between the top two types first",
}


class ProbabilityEntropy(Func):
    """Shannon entropy (nats) of a ``{slug: probability}`` jsonb object: high when the model hesitates."""

    output_field = FloatField()
    template = (
        "(SELECT COALESCE(-SUM(_pe.v * LN(GREATEST(_pe.v, 1e-12))), 0) "
        "FROM (SELECT (_e.value)::float8 AS v FROM jsonb_each_text(%(expressions)s) AS _e) AS _pe)"
    )


class ProbabilityMargin(Func):
    """Top probability minus the runner-up's, from a ``{slug: probability}`` jsonb object: small when torn."""

    output_field = FloatField()
    template = (
        "(SELECT COALESCE(_pm.p[1], 0) - COALESCE(_pm.p[2], 0) FROM (SELECT array_agg((_e.value)::float8 "
        "ORDER BY (_e.value)::float8 DESC) AS p FROM jsonb_each_text(%(expressions)s) AS _e) AS _pm)"
    )


def review_queue(*, order: str = "confidence", exclude_ids: Iterable[int] = ()) -> QuerySet[Artwork]:
    """Ready artworks without a curator label, the ones the active model is least sure of first.

    ``order``: ``confidence`` (lowest top probability first), ``entropy`` (highest entropy of the probabilities
    first) or ``margin`` (smallest gap between the top two types first); anything else means ``confidence``.
    Rows carry the :func:`artworks_with_prediction` annotations plus ``pred_entropy`` and ``pred_margin``.
    """
    qs = (
        artworks_with_prediction()
        .filter(status=Artwork.Status.READY, curator_type__isnull=True, pred_type_id__isnull=False)
        .annotate(
            pred_entropy=ProbabilityEntropy("pred__probabilities"),
            pred_margin=ProbabilityMargin("pred__probabilities"),
        )
    )
    excluded = [int(pk) for pk in exclude_ids]
    if excluded:
        qs = qs.exclude(pk__in=excluded)
    if order == "entropy":
        return qs.order_by("-pred_entropy", "pred_confidence", "id")
    if order == "margin":
        return qs.order_by("pred_margin", "pred_confidence", "id")
    return qs.order_by("pred_confidence", "id")


@dataclass(frozen=True)
class TypeAgreement:
    """How the model fared on the curator-labelled works of one type."""

    artwork_type: ArtworkType
    labelled: int  # works the curators gave this type (that the model version predicted)
    agreed: int  # ... of which the model said the same
    predicted: int  # labelled works the model called this type, rightly or not

    @property
    def rate(self) -> float | None:
        """Share of the curators' works of this type the model got right (recall)."""
        return self.agreed / self.labelled if self.labelled else None

    @property
    def precision(self) -> float | None:
        return self.agreed / self.predicted if self.predicted else None


@dataclass(frozen=True)
class ModelAgreement:
    """Model versus curators on the curator-labelled works one model version has predicted.

    ``matrix[i][j]``: works the curators call ``types[i]`` that the model called ``types[j]`` (rows: curator,
    columns: model), as in the model card's confusion matrix (rows: truth, columns: prediction).
    """

    version: ModelVersion | None
    types: list[ArtworkType]
    matrix: list[list[int]]

    @property
    def compared(self) -> int:
        return sum(sum(row) for row in self.matrix)

    @property
    def agreed(self) -> int:
        return sum(self.matrix[i][i] for i in range(len(self.types)))

    @property
    def rate(self) -> float | None:
        return self.agreed / self.compared if self.compared else None

    @property
    def per_type(self) -> list[TypeAgreement]:
        return [
            TypeAgreement(
                artwork_type=t,
                labelled=sum(self.matrix[i]),
                agreed=self.matrix[i][i],
                predicted=sum(row[i] for row in self.matrix),
            )
            for i, t in enumerate(self.types)
        ]


def _agreement_counts(version_ids: Sequence[int] | None) -> dict[int, dict[tuple[int, int], int]]:
    """{version id: {(curator type id, predicted type id): works}} in one grouped query."""
    qs = Prediction.objects.filter(artwork__curator_type__isnull=False)
    if version_ids is not None:
        qs = qs.filter(model_version_id__in=list(version_ids))
    counts: dict[int, dict[tuple[int, int], int]] = {}
    rows = (
        qs.values_list("model_version_id", "artwork__curator_type_id", "predicted_type_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    for version_id, curator_type_id, predicted_type_id, n in rows:
        counts.setdefault(version_id, {})[(curator_type_id, predicted_type_id)] = n
    return counts


def _agreement(
    version: ModelVersion | None, counts: dict[tuple[int, int], int], types: list[ArtworkType]
) -> ModelAgreement:
    index = {t.pk: i for i, t in enumerate(types)}
    matrix = [[0] * len(types) for _ in types]
    for (curator_type_id, predicted_type_id), n in counts.items():
        if curator_type_id in index and predicted_type_id in index:
            matrix[index[curator_type_id]][index[predicted_type_id]] += n
    return ModelAgreement(version=version, types=types, matrix=matrix)


def model_agreement(*, version: ModelVersion | None = None) -> ModelAgreement:
    """Agreement between one model version (default: the active one) and the curators' labels."""
    version = version if version is not None else model_version_active()
    types = artwork_types()
    if version is None:
        return _agreement(None, {}, types)
    return _agreement(version, _agreement_counts([version.pk]).get(version.pk, {}), types)


def model_agreements() -> list[ModelAgreement]:
    """Agreement per model version, for every version that has predicted a curator-labelled work (the active
    version always, even with nothing to compare yet); the active version first, then the newest."""
    counts = _agreement_counts(None)
    types = artwork_types()
    versions = [
        v for v in ModelVersion.objects.order_by("-is_active", "-created_at") if v.is_active or v.pk in counts
    ]
    return [_agreement(v, counts.get(v.pk, {}), types) for v in versions]


@dataclass(frozen=True)
class ReviewProgress:
    reviewed: int  # ready works with a curator label
    remaining: int  # ready works still waiting for one (the queue)
    agreement: ModelAgreement  # the active model against the curators so far

    @property
    def total(self) -> int:
        return self.reviewed + self.remaining


def review_progress() -> ReviewProgress:
    ready = Artwork.objects.filter(status=Artwork.Status.READY)
    return ReviewProgress(
        reviewed=ready.filter(curator_type__isnull=False).count(),
        remaining=review_queue().count(),
        agreement=model_agreement(),
    )


def artworks_unfinished(*, limit: int = 200) -> QuerySet[Artwork]:
    """Failed, pending and processing artworks (the jobs a curator may retry), failed first, oldest first."""
    order = {Artwork.Status.FAILED: 0, Artwork.Status.PROCESSING: 1, Artwork.Status.PENDING: 2}
    rank = Case(*(When(status=s, then=Value(r)) for s, r in order.items()), output_field=IntegerField())
    return (
        Artwork.objects.filter(status__in=list(order))
        .annotate(status_rank=rank)
        .order_by("status_rank", "updated_at", "id")[:limit]
    )


@dataclass(frozen=True)
class MapPoint:
    artwork_id: int
    title: str
    x: float  # 0..1, left to right
    y: float  # 0..1, top to bottom
    type_id: int | None  # the effective type
    curated: bool


@dataclass(frozen=True)
class CollectionMap:
    version: ModelVersion | None
    points: list[MapPoint]
    total: int  # ready works with an embedding of this version (points holds a sample when there are more)
    explained_variance: tuple[float, float]  # share of the variance along each of the two axes

    @property
    def sampled(self) -> bool:
        return len(self.points) < self.total


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """Project rows onto their first two principal components.

    The components come from the SVD of the small d × d scatter matrix rather than of the n × d data: the same
    vectors (its singular values are the data's squared ones), about 8× cheaper for 5,000 × 128.
    Returns (n × 2 coordinates, explained variance ratio of the two axes). Each axis's sign is fixed so that its
    largest loading is positive, so the same data always gives the same picture.
    """
    x = np.asarray(vectors, dtype=np.float64)
    n = x.shape[0]
    if n == 0:
        return np.zeros((0, 2)), (0.0, 0.0)
    centred = x - x.mean(axis=0, keepdims=True)
    _, variance, vt = np.linalg.svd(centred.T @ centred)
    components = np.zeros((2, x.shape[1]))
    k = min(2, vt.shape[0])
    components[:k] = vt[:k]
    for i in range(k):
        if components[i, np.argmax(np.abs(components[i]))] < 0:
            components[i] *= -1
    coords = centred @ components.T
    total = float(variance.sum())
    explained = [float(variance[i] / total) if total > 0 and i < len(variance) else 0.0 for i in range(2)]
    return coords, (explained[0], explained[1])


def collection_map(*, version: ModelVersion | None = None, limit: int = 5000, seed: int = 0) -> CollectionMap:
    """Every ready artwork's embedding (default: the active version's) projected to 2-D with PCA.

    Above ``limit`` works a fixed random sample of ``limit`` is drawn (the same one each time for a given
    catalogue), since a picture with more points is neither readable nor quick to draw. Coordinates are scaled
    into 0..1 keeping the aspect ratio, so distances on the map stay comparable along both axes.
    """
    version = version if version is not None else model_version_active()
    if version is None:
        return CollectionMap(version=None, points=[], total=0, explained_variance=(0.0, 0.0))
    base = Prediction.objects.filter(model_version=version, artwork__status=Artwork.Status.READY)
    ids = list(base.order_by("artwork_id").values_list("artwork_id", flat=True))
    total = len(ids)
    if total > limit:
        rng = np.random.default_rng(seed)
        ids = sorted(int(i) for i in rng.choice(np.asarray(ids), size=max(0, limit), replace=False))
        base = base.filter(artwork_id__in=ids)
    # The vectors in pgvector's binary form (vector_send: int16 dimensions, int16 unused, big-endian float4s),
    # read with np.frombuffer: the Vector field's text parsing costs ~0.1 ms per row, too much for 5,000 rows.
    rows = list(
        base.order_by("artwork_id")
        .annotate(vector_bytes=Func("embedding", function="vector_send", output_field=BinaryField()))
        .values_list(
            "artwork_id", "artwork__title", "predicted_type_id", "artwork__curator_type_id", "vector_bytes"
        )
    )
    if not rows:
        return CollectionMap(version=version, points=[], total=total, explained_variance=(0.0, 0.0))
    coords, explained = pca_2d(np.stack([np.frombuffer(row[4], dtype=">f4", offset=4) for row in rows]))
    low = coords.min(axis=0)
    span = float((coords.max(axis=0) - low).max()) or 1.0
    extent = (coords.max(axis=0) - low) / span
    # Centre the shorter axis in the unit square.
    scaled = (coords - low) / span + (1.0 - extent) / 2
    points = [
        MapPoint(
            artwork_id=row[0],
            title=row[1],
            x=float(xy[0]),
            y=float(1.0 - xy[1]),
            type_id=row[3] or row[2],
            curated=row[3] is not None,
        )
        for row, xy in zip(rows, scaled, strict=True)
    ]
    return CollectionMap(version=version, points=points, total=total, explained_variance=explained)


@dataclass(frozen=True)
class TrainingExample:
    """One artwork as a training example: where its image is, its effective type, and whether a curator said so."""

    artwork_id: int
    image_name: str  # the name in default_storage
    type_slug: str
    curator_labelled: bool

    def open(self) -> Any:
        """The stored image as a binary file (works with any storage backend); close it after use."""
        return default_storage.open(self.image_name, "rb")

    def read_bytes(self) -> bytes:
        with self.open() as handle:
            return handle.read()

    @property
    def path(self) -> str | None:
        """A local filesystem path when the storage has one (FileSystemStorage), else ``None`` (S3: use open())."""
        try:
            return default_storage.path(self.image_name)
        except NotImplementedError:
            return None


def training_examples(
    *, version: ModelVersion | None = None, curator_only: bool = False
) -> list[TrainingExample]:
    """Ready artworks with their effective types, for training on the catalogue; curator labels first.

    The effective type is the curator's when there is one, else the prediction of ``version`` (default: the active
    version); ready works with neither are left out. Within each group, oldest first (a stable order, so a seeded
    split of the list is reproducible).
    """
    version = version if version is not None else model_version_active()
    qs = artworks_with_prediction(version).filter(
        status=Artwork.Status.READY, effective_type_id__isnull=False
    )
    if curator_only:
        qs = qs.filter(curator_type__isnull=False)
    slugs = dict(ArtworkType.objects.values_list("pk", "slug"))
    rows = qs.order_by("id").values_list("pk", "image", "effective_type_id", "curator_type_id")
    examples = [
        TrainingExample(
            artwork_id=pk, image_name=image, type_slug=slugs[type_id], curator_labelled=curated is not None
        )
        for pk, image, type_id, curated in rows
    ]
    # Curator labels first; sorted() is stable, so each group keeps the id order.
    return sorted(examples, key=lambda e: not e.curator_labelled)
