"""Reads for IIIF: one artwork with its active prediction and the author of its label; pages of the filtered
catalogue for collections."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from catalogue.models import Artwork, ArtworkType, LabelCorrection
from catalogue.selectors.artworks import artwork_types, artworks_with_prediction
from catalogue.selectors.exports import artworks_filtered
from inference.models import ModelVersion
from inference.selectors import model_version_active


@dataclass(frozen=True)
class IiifPrediction:
    artwork_type: ArtworkType
    confidence: float
    probabilities: dict[str, float]
    model_version: str


@dataclass(frozen=True)
class IiifLabel:
    artwork_type: ArtworkType
    provenance: str  # imported, set or confirmed
    author: str  # a display name (never an account name); "" when nobody is known (an import)
    decided_at: str  # ISO 8601; "" when the audit trail has no row for it


@dataclass(frozen=True)
class IiifArtwork:
    artwork: Artwork
    effective_type: ArtworkType | None
    prediction: IiifPrediction | None
    label: IiifLabel | None


def iiif_artwork(*, pk: int) -> IiifArtwork | None:
    """The artwork, its effective type, the active version's prediction and its label with who gave it."""
    version = model_version_active()
    artwork = artworks_with_prediction(version).filter(pk=pk).first()
    if artwork is None:
        return None
    types = {t.pk: t for t in artwork_types()}
    return IiifArtwork(
        artwork=artwork,
        effective_type=types.get(artwork.effective_type_id),
        prediction=_prediction(artwork, types, version),
        label=_label(artwork, types),
    )


def _prediction(
    artwork: Any, types: dict[int, ArtworkType], version: ModelVersion | None
) -> IiifPrediction | None:
    if artwork.pred_type_id is None or version is None:
        return None
    return IiifPrediction(
        artwork_type=types[artwork.pred_type_id],
        confidence=float(artwork.pred_confidence),
        probabilities={slug: float(p) for slug, p in (artwork.pred_probabilities or {}).items()},
        model_version=version.version,
    )


def _label(artwork: Artwork, types: dict[int, ArtworkType]) -> IiifLabel | None:
    if artwork.curator_type_id is None:
        return None
    # The decision that gave the label as it is now: the newest audit row that set this type.
    decision = (
        LabelCorrection.objects.filter(artwork=artwork, to_type_id=artwork.curator_type_id)
        .select_related("user")
        .order_by("-created_at", "-id")
        .first()
    )
    user = decision.user if decision is not None else None
    return IiifLabel(
        artwork_type=types[artwork.curator_type_id],
        provenance=artwork.label_provenance,
        author=person_display_name(user) if user is not None else "",
        decided_at=decision.created_at.isoformat() if decision is not None else "",
    )


def person_display_name(user: Any) -> str:
    """The name shown for a person outside Artsite: the account's full name, else "A curator" — never the account
    (log-in) name, which is private."""
    return str(user.get_full_name() or "").strip() or "A curator"


@dataclass(frozen=True)
class CollectionPage:
    total: int  # works the filters keep
    items: list[tuple[int, str, str]]  # (id, title, thumbnail storage name) of this page's works


def iiif_collection_page(*, filters: Mapping[str, Any] | None, page: int, page_size: int) -> CollectionPage:
    """One page (0-based) of the works the catalogue's filters keep, oldest first by id (stable: new works are
    added at the end, so pages already fetched do not shift). Raises ``catalogue.selectors.exports.ExportFiltersInvalid`` on bad filters."""
    works = artworks_filtered(filters=filters).order_by("id")
    start = page * page_size
    items = list(works.values_list("pk", "title", "thumbnail")[start : start + page_size])
    return CollectionPage(total=works.count(), items=items)
