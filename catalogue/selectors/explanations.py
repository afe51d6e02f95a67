"""Which types an artwork's explanation maps are drawn for."""

from __future__ import annotations

from catalogue.models import Artwork, ArtworkType, Prediction
from catalogue.selectors.artworks import artwork_prediction
from inference.models import ModelVersion


def artwork_explanation_types(
    *,
    artwork: Artwork,
    version: ModelVersion | None = None,
    prediction: Prediction | None = None,
    types: list[ArtworkType] | None = None,
) -> list[ArtworkType]:
    """The types worth a map for a curator settling the artwork's type: the model's (``version``'s, default the
    active one), then the label's when it differs, or — without a label — the model's second choice. Empty when
    the version has no prediction for the artwork yet (the map route would answer 404). ``prediction`` (that
    version's, with its type) and ``types`` (the catalogue's): when the caller has them already."""
    if prediction is None:
        prediction = artwork_prediction(artwork=artwork, version=version)
    if prediction is None:
        return []
    predicted = prediction.predicted_type
    if artwork.curator_type_id is not None:
        label = artwork.curator_type
        return [predicted] if label is None or label.pk == predicted.pk else [predicted, label]
    ranked = sorted(prediction.probabilities.items(), key=lambda item: -float(item[1]))
    runner_up = next((slug for slug, _ in ranked if slug != predicted.slug), None)
    if types is not None:
        second = next((t for t in types if t.slug == runner_up), None) if runner_up else None
    else:
        second = ArtworkType.objects.filter(slug=runner_up).first() if runner_up else None
    return [predicted] if second is None else [predicted, second]
