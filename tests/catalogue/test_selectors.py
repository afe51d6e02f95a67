"""Similar works against an exact numpy computation, type filters that still return k, and catalogue filters."""

from __future__ import annotations

import numpy as np
import pytest

from catalogue.models import Artwork, ArtworkType
from catalogue.selectors.artworks import artwork_type_by_slug
from catalogue.selectors.similarity import artwork_similar
from catalogue.services.labels import label_correct
from tests.catalogue.conftest import SLUGS
from tests.factories import ArtworkFactory

pytestmark = pytest.mark.django_db


def exact_top(embeddings: np.ndarray, query: np.ndarray, k: int, allowed: np.ndarray) -> list[int]:
    distances = 1 - embeddings @ query
    distances[~allowed] = np.inf
    return [int(i) for i in np.argsort(distances, kind="stable")[:k] if np.isfinite(distances[i])]


def test_similar_matches_exact_cosine_order(catalogue):
    artworks, embeddings = catalogue
    for q in (0, 7, 33):
        result = artwork_similar(artwork=artworks[q], k=5)
        allowed = np.ones(len(artworks), bool)
        allowed[q] = False
        expected = exact_top(embeddings, embeddings[q], 5, allowed)
        assert [s.artwork.pk for s in result] == [artworks[i].pk for i in expected]
        for item, i in zip(result, expected, strict=True):
            assert item.similarity == pytest.approx(float(embeddings[i] @ embeddings[q]), abs=1e-4)


def test_similar_excludes_self_pending_and_other_versions(catalogue):
    artworks, _ = catalogue
    result = artwork_similar(artwork=artworks[0], k=50)
    ids = {s.artwork.pk for s in result}
    assert artworks[0].pk not in ids
    assert all(s.artwork.status == Artwork.Status.READY for s in result)
    assert len(result) == 50  # 59 others are eligible; k caps it


def test_type_filter_returns_k_when_k_exist_even_if_far_away(catalogue):
    artworks, embeddings = catalogue
    # Only 12 sculptures exist and the query is not one of them: the HNSW candidates alone may hold too few.
    result = artwork_similar(artwork=artworks[0], k=10, type_slug="sculpture")
    allowed = np.array([SLUGS[i % 5] == "sculpture" for i in range(len(artworks))])
    expected = exact_top(embeddings, embeddings[0], 10, allowed)
    assert [s.artwork.pk for s in result] == [artworks[i].pk for i in expected]


def test_type_filter_uses_the_curators_type(catalogue):
    artworks, _ = catalogue
    sculpture = ArtworkType.objects.get(slug="sculpture")
    # Through the label service, as every label is set (a raw UPDATE would skip the moved works' embeddings).
    label_correct(artwork=artworks[1], to_type=sculpture, source="portal")  # predicted engraving
    result = artwork_similar(artwork=artworks[0], k=50, type_slug="sculpture")
    ids = [s.artwork.pk for s in result]
    assert artworks[1].pk in ids
    assert all(s.effective_type_id == sculpture.pk for s in result)
    assert len(result) == 13


def test_type_filter_returns_fewer_only_when_fewer_exist(catalogue):
    artworks, _ = catalogue
    assert len(artwork_similar(artwork=artworks[4], k=50, type_slug="sculpture")) == 11


def test_no_prediction_means_no_similar_works(active_model):
    assert artwork_similar(artwork=ArtworkFactory()) == []


@pytest.mark.parametrize("given", ["drawing", "Drawings", "DRAWINGS", " drawings "])
def test_type_lookup_accepts_singular_plural_and_case(given):
    assert artwork_type_by_slug(given).slug == "drawings"
