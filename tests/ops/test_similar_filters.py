"""The type-filtered similar-works search in two halves (per-type partial index + works curators moved into the type)
gives the exact answer, with the per-type partial indexes in place (migration 0003)."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import connection

from catalogue.models import ArtworkType
from catalogue.selectors.similarity import embedding_nearest
from catalogue.services.labels import label_correct
from tests.factories import ArtworkFactory, prediction_for

pytestmark = pytest.mark.django_db

TYPES = ["drawings", "engraving", "iconography", "painting", "sculpture"]


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def test_partial_index_per_type_exists():
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'catalogue_prediction'")
        indexes = dict(cursor.fetchall())
    for slug in TYPES:
        definition = indexes[f"prediction_hnsw_{slug}"]
        type_id = ArtworkType.objects.get(slug=slug).pk
        assert "USING hnsw" in definition and f"predicted_type_id = {type_id}" in definition


def test_filtered_search_is_exact_with_curator_moves(active_model, curator):
    rng = np.random.default_rng(11)
    query = unit(rng.normal(size=128))
    works, vectors, effective = [], [], []
    for i in range(30):
        # Sculptures crowd the query's neighbourhood; the paintings are far away, except the ones a curator moved.
        near = i < 20
        vector = unit(query + rng.normal(scale=0.3 if near else 3.0, size=128))
        predicted = "sculpture" if near else "painting"
        artwork = ArtworkFactory(status="ready")
        prediction_for(artwork, version=active_model, type_slug=predicted, embedding=vector)
        works.append(artwork)
        vectors.append(vector)
        effective.append(predicted)
    painting = ArtworkType.objects.get(slug="painting")
    sculpture = ArtworkType.objects.get(slug="sculpture")
    for i in (3, 7):  # two near sculptures are really paintings
        label_correct(artwork=works[i], to_type=painting, user=curator, source="portal")
        effective[i] = "painting"
    label_correct(artwork=works[25], to_type=sculpture, user=curator, source="portal")  # moved away
    effective[25] = "sculpture"
    confirmed = 26
    label_correct(artwork=works[confirmed], to_type=painting, user=curator, source="portal")  # agreed

    matrix = np.stack(vectors)
    distances = 1 - matrix @ query
    for slug in ("painting", "sculpture"):
        expected = [works[i].pk for i in np.argsort(distances) if effective[i] == slug][:5]
        found = embedding_nearest(embedding=query, version=active_model, k=5, type_slug=slug)
        assert [w.artwork.pk for w in found] == expected, slug
        assert all(w.effective_type_id == ArtworkType.objects.get(slug=slug).pk for w in found)
    found = embedding_nearest(embedding=query, version=active_model, k=5, type_slug="painting")
    assert {works[3].pk, works[7].pk} <= {
        w.artwork.pk for w in found
    }  # moved in: found although predicted else
    assert works[25].pk not in {w.artwork.pk for w in found}  # moved out: gone


def test_filtered_search_returns_all_when_fewer_than_k_exist(active_model):
    rng = np.random.default_rng(5)
    for i in range(8):
        prediction_for(
            ArtworkFactory(status="ready"),
            version=active_model,
            type_slug="drawings" if i < 3 else "engraving",
            embedding=unit(rng.normal(size=128)),
        )
    found = embedding_nearest(
        embedding=unit(rng.normal(size=128)), version=active_model, k=5, type_slug="drawings"
    )
    assert len(found) == 3
    assert [w.distance for w in found] == sorted(w.distance for w in found)
