"""The catalogue fixture shared by the selector and filter tests."""

from __future__ import annotations

import numpy as np
import pytest

from catalogue.models import Artwork
from inference.models import ModelVersion
from tests.factories import ArtworkFactory, prediction_for

SLUGS = ["drawings", "engraving", "iconography", "painting", "sculpture"]


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@pytest.fixture
def catalogue(active_model):  # type: ignore[no-untyped-def]
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
