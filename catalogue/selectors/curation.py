"""Curation reads: the review queue, and how the model agrees with the curators' labels."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db.models import Count, F, QuerySet

from catalogue.models import Artwork, ArtworkType, Prediction
from catalogue.selectors.artworks import Tally, artwork_types, artworks_with_prediction, count_estimate
from inference.models import ModelVersion
from inference.selectors import model_version_active

REVIEW_ORDERS = {
    "confidence": "Lowest confidence first",
    "entropy": "Highest entropy first",
    "margin": "Smallest margin between the top two types first",
}


def review_queue(*, order: str = "confidence", exclude_ids: Iterable[int] = ()) -> QuerySet[Artwork]:
    """Ready artworks without a curator label, the ones the active model is least sure of first.

    ``order``: ``confidence`` (lowest top probability first), ``entropy`` (highest entropy of the probabilities
    first) or ``margin`` (smallest gap between the top two types first); anything else means ``confidence``.
    Rows carry the :func:`artworks_with_prediction` annotations plus ``pred_entropy`` and ``pred_margin``: the
    prediction's stored values (:func:`catalogue.models.prediction_uncertainty`), each order an index of its own,
    so the first works of a million come at once.
    """
    qs = (
        artworks_with_prediction()
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


def _agreement_counts(version_ids: Sequence[int] | None) -> dict[int, Counts]:
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


def _agreement(version: ModelVersion | None, counts: Counts, types: list[ArtworkType]) -> ModelAgreement:
    by_provenance = tuple(
        ProvenanceAgreement(
            provenance=str(provenance),
            label=str(label),
            agreement=ModelAgreement(version=version, types=types, matrix=_matrix(counts, types, provenance)),
        )
        for provenance, label in Artwork.Provenance.choices
    )
    return ModelAgreement(
        version=version, types=types, matrix=_matrix(counts, types), by_provenance=by_provenance
    )


def model_agreement(*, version: ModelVersion | None = None) -> ModelAgreement:
    """Agreement between one model version (default: the active one) and the labels, overall and by provenance
    (one grouped query)."""
    version = version if version is not None else model_version_active()
    types = artwork_types()
    if version is None:
        return _agreement(None, {}, types)
    return _agreement(version, _agreement_counts([version.pk]).get(version.pk, {}), types)


def model_agreements() -> list[ModelAgreement]:
    """Agreement per model version, for every version that has predicted a labelled work (the active
    version always, even with nothing to compare yet); the active version first, then the newest."""
    counts = _agreement_counts(None)
    types = artwork_types()
    versions = [v for v in ModelVersion.objects.active_first() if v.is_active or v.pk in counts]
    return [_agreement(v, counts.get(v.pk, {}), types) for v in versions]


@dataclass(frozen=True)
class ReviewProgress:
    reviewed: int  # ready works with a curator label
    remaining: Tally  # ready works still waiting for one (the queue): estimated in a large catalogue
    agreement: ModelAgreement  # the active model against the curators so far

    @property
    def total(self) -> int:
        return self.reviewed + self.remaining


def review_progress() -> ReviewProgress:
    # The labelled works are counted exactly (the partial index of labelled works); the queue, most of a large
    # catalogue, is the planner's estimate once it is large.
    labelled = Artwork.objects.filter(curator_type__isnull=False, status=Artwork.Status.READY)
    return ReviewProgress(
        reviewed=labelled.count(),
        remaining=count_estimate(review_queue()),
        agreement=model_agreement(),
    )
