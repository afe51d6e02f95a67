"""Similar works against an exact numpy computation, type filters that still return k, and catalogue filters."""

from __future__ import annotations

import numpy as np
import pytest

from catalogue.models import Artwork, ArtworkType
from catalogue.selectors.artworks import artwork_list, artwork_type_by_slug
from catalogue.selectors.similarity import artwork_similar
from inference.models import ModelVersion
from tests.factories import ArtworkFactory, prediction_for

pytestmark = pytest.mark.django_db

SLUGS = ["drawings", "engraving", "iconography", "painting", "sculpture"]


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@pytest.fixture
def catalogue(active_model):
    """60 ready artworks with random embeddings (type i % 5), plus a pending and an other-version artwork."""
    rng = np.random.default_rng(42)
    embeddings = unit(rng.normal(size=(60, 128)).astype(np.float32))
    artworks = []
    for i, embedding in enumerate(embeddings):
        artwork = ArtworkFactory(status=Artwork.Status.READY)
        prediction_for(artwork, version=active_model, type_slug=SLUGS[i % 5], embedding=embedding)
        artworks.append(artwork)
    pending = ArtworkFactory(status=Artwork.Status.PENDING)
    prediction_for(pending, version=active_model, type_slug="painting", embedding=embeddings[0])
    other_version = ModelVersion.objects.create(version="older", path="/nowhere")
    stranger = ArtworkFactory(status=Artwork.Status.READY)
    prediction_for(stranger, version=other_version, type_slug="painting", embedding=embeddings[0])
    return artworks, embeddings


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
    Artwork.objects.filter(pk=artworks[1].pk).update(curator_type=sculpture)  # predicted engraving
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


def test_artwork_list_filters(catalogue):
    artworks, _ = catalogue
    painting = ArtworkType.objects.get(slug="painting")
    Artwork.objects.filter(pk=artworks[0].pk).update(
        curator_type=painting, title="Night Watch", artist="Rembrandt"
    )

    paintings = artwork_list(type_slug="Paintings")
    assert artworks[0].pk in {a.pk for a in paintings}
    assert all(a.effective_type_id == painting.pk for a in paintings)
    assert [a.pk for a in artwork_list(search="rembrandt")] == [artworks[0].pk]
    assert artwork_list(status="pending").count() == 1
    assert [a.pk for a in artwork_list(labelled=True)] == [artworks[0].pk]
    assert artwork_list(type_slug="no-such-type").count() == 0
    confident = artwork_list(min_confidence=0.95)
    assert confident.count() == 0


@pytest.mark.parametrize("given", ["drawing", "Drawings", "DRAWINGS", " drawings "])
def test_type_lookup_accepts_singular_plural_and_case(given):
    assert artwork_type_by_slug(given).slug == "drawings"
