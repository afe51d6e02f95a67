"""What bench_search measures through the selector's public API: ``embedding_nearest`` with an explicit
``ef_search`` and a ``SearchStats`` that counts the exact-scan fallbacks (the benchmark used to replace the
selector's private query function to count them)."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from catalogue.selectors.similarity import HNSW_EF_SEARCH, SearchStats, embedding_nearest
from tests.factories import ArtworkFactory, prediction_for

pytestmark = pytest.mark.django_db


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


@pytest.fixture
def catalogue(active_model):  # type: ignore[no-untyped-def]
    """Eight ready works: three drawings, five engravings; returns a query vector."""
    rng = np.random.default_rng(3)
    for i in range(8):
        prediction_for(
            ArtworkFactory(status="ready"),
            version=active_model,
            type_slug="drawings" if i < 3 else "engraving",
            embedding=unit(rng.normal(size=128)),
        )
    return unit(rng.normal(size=128))


def test_stats_count_the_exact_scan_fallbacks(active_model, catalogue):
    stats = SearchStats()
    found = embedding_nearest(embedding=catalogue, version=active_model, k=5, stats=stats)
    assert len(found) == 5 and stats.fallbacks == 0
    # Three drawings exist: the index half comes back short of five and is repeated exactly. The scan of works
    # curators moved into the type is part of every filtered search, not a fallback.
    found = embedding_nearest(
        embedding=catalogue, version=active_model, k=5, type_slug="drawings", stats=stats
    )
    assert len(found) == 3 and stats.fallbacks == 1
    embedding_nearest(embedding=catalogue, version=active_model, k=20, stats=stats)  # 8 works, k 20
    assert stats.fallbacks == 2


def test_ef_search_is_a_parameter_and_the_default_is_unchanged(active_model, catalogue):
    default = embedding_nearest(embedding=catalogue, version=active_model, k=5)
    for ef in (None, HNSW_EF_SEARCH, 40, 400):
        found = embedding_nearest(embedding=catalogue, version=active_model, k=5, ef_search=ef)
        assert [(w.artwork.pk, w.distance) for w in found] == [(w.artwork.pk, w.distance) for w in default]


def test_bench_search_refuses_a_database_not_named_for_it():
    with pytest.raises(CommandError, match="bench"):
        call_command("bench_search", "--sizes", "10000")
