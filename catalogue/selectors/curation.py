"""Curation reads: the review queue, and how the model agrees with the curators' labels.

**The agreement figures are counted once per change, not once per page view.** The counts behind them — per model
version, (label provenance, label type, predicted type) → works — are one grouped query over every labelled work's
predictions: 10,000 labelled works in a catalogue of a million, and more each day a curator works. The quality page
and the review queue read them from the ``shared`` cache (Redis, every process sees the same entries), filed under
a *labels generation*: a random token that every write which can move a count replaces
(:func:`catalogue.services.agreement.agreement_counts_invalidate`: a label set, confirmed or restored, a prediction
of a labelled work stored, a labelled work deleted), at once and again when its transaction commits. A view after a
change finds no entry under the new token and counts afresh, exactly; every view until the next change reads the
entry. Entries also expire after :data:`AGREEMENT_MAX_AGE`, the safety net for a change that did not announce
itself (a process that died between its commit and the announcement, a database restored under a running cache),
and the pages say when their figures were computed.

Why not a table of counts that the services increment: it must be touched, by exactly the right amount and in the
right transaction, by every write of a label or a prediction (imports, the workers, re-embedding, bulk edits and
their undo, deletions), and one missed path leaves it wrong for good; concurrent curators and workers would also
queue on the same few counter rows. A missed announcement here costs at most :data:`AGREEMENT_MAX_AGE` of old
figures, and a count is the same query it always was, run once per change instead of once per view. Types are
read fresh on each view: a type added or renamed needs no recount.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from django.core.cache import caches
from django.db import connection
from django.db.models import Count, F, QuerySet
from django.utils import timezone
from redis.exceptions import RedisError

from catalogue.models import Artwork, ArtworkType, Prediction
from catalogue.selectors.artworks import Tally, artwork_types, artworks_with_prediction, count_estimate
from inference.models import ModelVersion
from inference.selectors import model_version_active

REVIEW_ORDERS = {
    "confidence": "Lowest confidence first",
    "entropy": "Highest entropy first",
    "margin": "Smallest margin between the top two types first",
}


def review_queue(
    *, order: str = "confidence", exclude_ids: Iterable[int] = (), version: ModelVersion | None = None
) -> QuerySet[Artwork]:
    """Ready artworks without a curator label, the ones the active model is least sure of first.

    ``order``: ``confidence`` (lowest top probability first), ``entropy`` (highest entropy of the probabilities
    first) or ``margin`` (smallest gap between the top two types first); anything else means ``confidence``.
    Rows carry the :func:`artworks_with_prediction` annotations plus ``pred_entropy`` and ``pred_margin``: the
    prediction's stored values (:func:`catalogue.models.prediction_uncertainty`), each order an index of its own,
    so the first works of a million come at once. ``version``: the active version, when the caller has it already.
    """
    qs = (
        artworks_with_prediction(version)
        .filter(status=Artwork.Status.READY, curator_type__isnull=True, pred_type_id__isnull=False)
        .annotate(pred_entropy=F("pred__entropy"), pred_margin=F("pred__margin"))
    )
    excluded = [int(pk) for pk in exclude_ids]
    if excluded:
        qs = qs.exclude(pk__in=excluded)
    if order == "entropy":
        return qs.order_by(F("pred_entropy").desc(nulls_last=True), "pred_confidence", "id")
    if order == "margin":
        return qs.order_by(F("pred_margin").asc(nulls_last=True), "pred_confidence", "id")
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
    """Model versus labels on the labelled works one model version has predicted.

    ``matrix[i][j]``: works labelled ``types[i]`` that the model called ``types[j]`` (rows: label, columns: model),
    as in the model card's confusion matrix (rows: truth, columns: prediction). ``by_provenance``: the same split by
    where the labels came from (imported, curator-set, curator-confirmed), in that order.
    """

    version: ModelVersion | None
    types: list[ArtworkType]
    matrix: list[list[int]]
    by_provenance: tuple[ProvenanceAgreement, ...] = ()
    #: When the counts were taken (None: nothing to count); they stay exact until a label or prediction changes.
    computed_at: datetime | None = field(default=None, compare=False)

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


@dataclass(frozen=True)
class ProvenanceAgreement:
    """The model against the labels of one provenance (an :class:`Artwork.Provenance` value)."""

    provenance: str
    label: str
    agreement: ModelAgreement


#: {(label provenance, label type id, predicted type id): works}
Counts = dict[tuple[str, int, int], int]

#: Seconds an entry of agreement counts is served at most (the safety net; a write announces its change at once).
AGREEMENT_MAX_AGE = 300
T = TypeVar("T")
SHARED_CACHE = "shared"


@dataclass(frozen=True)
class AgreementCounts:
    """{version id: counts} of the versions asked for, and when they were counted."""

    by_version: dict[int, Counts]
    computed_at: datetime


def agreement_generation_key() -> str:
    """The cache key of the labels generation: per database, so the catalogues of two databases on one Redis (a
    benchmark's beside the real one) never share figures."""
    return f"agreement:{connection.settings_dict['NAME']}:generation"


def labels_generation_cached(scope: str, compute: Callable[[], T]) -> tuple[T, datetime]:
    """``compute()``'s value and when it was computed: from the shared cache when no label or prediction of a
    labelled work has changed since (the labels generation above), else computed now and cached. For figures that
    depend only on the labels (and the predictions of labelled works). ``compute`` must return plain built-in values
    (any later release can read them back). Redis being down only costs the computation."""
    cache = caches[SHARED_CACHE]
    key = None
    try:
        generation = cache.get(agreement_generation_key())
        # First use (or the token was evicted): start one; if another process wins the race, take its token.
        if generation is None:
            cache.add(agreement_generation_key(), uuid.uuid4().hex, timeout=None)
            generation = cache.get(agreement_generation_key())
        key = f"agreement:{connection.settings_dict['NAME']}:{generation}:{scope}"
        cached = cache.get(key)
        if isinstance(cached, tuple) and len(cached) == 2:
            return cached[0], cached[1]
    except (RedisError, OSError):
        key = None
    value, computed_at = compute(), timezone.now()
    if key is not None:
        try:
            cache.set(key, (value, computed_at), AGREEMENT_MAX_AGE)
        except (RedisError, OSError):
            pass
    return value, computed_at


def _agreement_counts(version_ids: Sequence[int] | None) -> AgreementCounts:
    """The counts of these versions (None: every version), counted once per labels generation."""
    scope = "all" if version_ids is None else ",".join(str(v) for v in sorted(version_ids))
    by_version, computed_at = labels_generation_cached(scope, lambda: _agreement_counts_query(version_ids))
    return AgreementCounts(by_version=by_version, computed_at=computed_at)


def _agreement_counts_query(version_ids: Sequence[int] | None) -> dict[int, Counts]:
    """{version id: {(provenance, label type id, predicted type id): works}} in one grouped query."""
    qs = Prediction.objects.filter(artwork__curator_type__isnull=False)
    if version_ids is not None:
        qs = qs.filter(model_version_id__in=list(version_ids))
    counts: dict[int, Counts] = {}
    rows = (
        qs.values_list(
            "model_version_id", "artwork__label_provenance", "artwork__curator_type_id", "predicted_type_id"
        )
        .annotate(n=Count("id"))
        .order_by()
    )
    for version_id, provenance, curator_type_id, predicted_type_id, n in rows:
        counts.setdefault(version_id, {})[(provenance, curator_type_id, predicted_type_id)] = n
    return counts


def _matrix(counts: Counts, types: list[ArtworkType], provenance: str | None = None) -> list[list[int]]:
    """The confusion matrix of the counts (of one provenance, or of all)."""
    index = {t.pk: i for i, t in enumerate(types)}
    matrix = [[0] * len(types) for _ in types]
    for (label_provenance, curator_type_id, predicted_type_id), n in counts.items():
        if provenance is not None and label_provenance != provenance:
            continue
        if curator_type_id in index and predicted_type_id in index:
            matrix[index[curator_type_id]][index[predicted_type_id]] += n
    return matrix


def _agreement(
    version: ModelVersion | None,
    counts: Counts,
    types: list[ArtworkType],
    computed_at: datetime | None = None,
) -> ModelAgreement:
    by_provenance = tuple(
        ProvenanceAgreement(
            provenance=str(provenance),
            label=str(label),
            agreement=ModelAgreement(
                version=version,
                types=types,
                matrix=_matrix(counts, types, provenance),
                computed_at=computed_at,
            ),
        )
        for provenance, label in Artwork.Provenance.choices
    )
    return ModelAgreement(
        version=version,
        types=types,
        matrix=_matrix(counts, types),
        by_provenance=by_provenance,
        computed_at=computed_at,
    )


def model_agreement(
    *, version: ModelVersion | None = None, types: list[ArtworkType] | None = None
) -> ModelAgreement:
    """Agreement between one model version (default: the active one) and the labels, overall and by provenance:
    counted by one grouped query once per change of the labels or predictions (see the module's docstring).
    ``types``: the catalogue's types, when the caller has them already."""
    version = version if version is not None else model_version_active()
    types = types if types is not None else artwork_types()
    if version is None:
        return _agreement(None, {}, types)
    counted = _agreement_counts([version.pk])
    return _agreement(version, counted.by_version.get(version.pk, {}), types, counted.computed_at)


def model_agreements() -> list[ModelAgreement]:
    """Agreement per model version, for every version that has predicted a labelled work (the active
    version always, even with nothing to compare yet); the active version first, then the newest."""
    counted = _agreement_counts(None)
    types = artwork_types()
    versions = [v for v in ModelVersion.objects.active_first() if v.is_active or v.pk in counted.by_version]
    return [_agreement(v, counted.by_version.get(v.pk, {}), types, counted.computed_at) for v in versions]


@dataclass(frozen=True)
class ReviewProgress:
    reviewed: int  # ready works with a curator label
    remaining: Tally  # ready works still waiting for one (the queue): estimated in a large catalogue
    agreement: ModelAgreement  # the active model against the curators so far

    @property
    def total(self) -> int:
        return self.reviewed + self.remaining


def review_progress(
    *, version: ModelVersion | None = None, types: list[ArtworkType] | None = None
) -> ReviewProgress:
    """How far the review has come. ``version`` (the active one) and ``types``: when the caller has them already."""
    version = version if version is not None else model_version_active()
    # The labelled works are counted exactly (the partial index of labelled works); the queue, most of a large
    # catalogue, is the planner's estimate once it is large; the agreement comes from the shared cache.
    labelled = Artwork.objects.filter(curator_type__isnull=False, status=Artwork.Status.READY)
    return ReviewProgress(
        reviewed=labelled.count(),
        remaining=count_estimate(review_queue(version=version)),
        agreement=model_agreement(version=version, types=types),
    )
