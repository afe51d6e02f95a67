"""The catalogue's one filter definition (catalogue/filters.py), as the portal, the API and the admin use it."""

import pytest

from catalogue.filters import ArtworkFilterSet
from catalogue.models import Artwork, ArtworkType, Prediction
from catalogue.selectors.artworks import artworks_with_prediction

pytestmark = pytest.mark.django_db


def filtered(**params: str) -> ArtworkFilterSet:
    return ArtworkFilterSet(params, queryset=artworks_with_prediction())


def ids(**params: str) -> list[int]:
    filters = filtered(**params)
    assert filters.is_valid(), filters.errors
    return [a.pk for a in filters.qs]


def test_each_filter(catalogue):
    artworks, _ = catalogue
    painting = ArtworkType.objects.get(slug="painting")
    Artwork.objects.filter(pk=artworks[0].pk).update(
        curator_type=painting, title="Night Watch", artist="Rembrandt"
    )

    paintings = filtered(type="Paintings").qs
    assert artworks[0].pk in {a.pk for a in paintings}
    assert all(a.effective_type_id == painting.pk for a in paintings)
    assert ids(search="rembrandt") == [artworks[0].pk]
    assert len(ids(status="pending")) == 1
    assert ids(labelled="true") == [artworks[0].pk]
    assert artworks[0].pk not in ids(labelled="false")
    assert ids(min_confidence="0.95") == []
    unpredicted = Artwork.objects.exclude(predictions__model_version__status="active")
    assert ids(type="none") == [a.pk for a in unpredicted]  # no prediction of the active version yet


def test_confidence_bands_cover_every_prediction_once(catalogue, active_model):
    seen: list[int] = []
    for band in ("lt50", "50-80", "80-95", "95+"):
        seen += ids(confidence=band)
    predicted = Prediction.objects.filter(model_version=active_model).count()
    assert len(seen) == len(set(seen)) == predicted


def test_ordering_has_a_stable_tie_break(catalogue):
    Artwork.objects.update(title="Same")
    newest_first = sorted(Artwork.objects.values_list("pk", flat=True), reverse=True)
    assert ids(ordering="title") == newest_first


@pytest.mark.parametrize(
    "params, field, code",
    [
        ({"type": "etching"}, "type", "unknown_type"),
        ({"type": "50%s off"}, "type", "unknown_type"),
        ({"model_version": "v%d"}, "model_version", "unknown_model_version"),
        ({"model_version": "v\x001"}, "model_version", "null_characters_not_allowed"),
        ({"labelled": "maybe"}, "labelled", "invalid"),
        ({"min_confidence": "abc"}, "min_confidence", "invalid"),
        ({"min_confidence": "0.9", "max_confidence": "0.1"}, "min_confidence", "invalid"),
        ({"model_version": "nope"}, "model_version", "unknown_model_version"),
        ({"ordering": "sha256"}, "ordering", "invalid_choice"),
        ({"provenance": "guessed"}, "provenance", "invalid_choice"),
    ],
)
def test_bad_values_are_errors_with_a_code(active_model, params, field, code):
    filters = filtered(**params)
    assert not filters.is_valid()
    assert [e.code for e in filters.errors.as_data()[field]] == [code]


def test_a_percent_sign_in_a_value_is_an_error_not_a_crash(active_model, viewer):
    """django-filter %-formats error messages with their params: the user's text must not be in the message."""
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(viewer)
    response = client.get("/api/v1/artworks/", {"predicted": "%x", "model_version": "%s"})
    assert response.status_code == 400
    fields = response.json()["fields"]
    assert "“%x”" in fields["predicted"][0] and "“%s”" in fields["model_version"][0]
