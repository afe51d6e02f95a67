"""API fixtures: clients authenticated by token (Token and Bearer), a small classified catalogue, error checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.factories import ArtworkFactory, prediction_for

TYPES = ["drawings", "engraving", "iconography", "painting", "sculpture"]


def assert_error(response, status: int, code: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    """The one error shape: JSON (never HTML), status repeated, a code, a message for people, fields."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) >= {"status", "code", "message", "fields"}, body
    assert body["status"] == status
    assert isinstance(body["message"], str) and len(body["message"]) > 5
    assert isinstance(body["fields"], dict)
    if code is not None:
        assert body["code"] == code, body
    return body


@pytest.fixture(autouse=True)
def _clear_throttle_counts():  # type: ignore[no-untyped-def]
    cache.clear()  # throttle counts live in the cache; each test starts from zero
    yield
    cache.clear()


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


@pytest.fixture
def curator_token(curator) -> str:  # type: ignore[no-untyped-def]
    return Token.objects.create(user=curator).key


@pytest.fixture
def viewer_token(viewer) -> str:  # type: ignore[no-untyped-def]
    return Token.objects.create(user=viewer).key


@pytest.fixture
def curator_api(curator_token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {curator_token}")
    return client


@pytest.fixture
def viewer_api(viewer_token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {viewer_token}")  # the seed clients' header
    return client


@pytest.fixture
def media_files(settings):  # type: ignore[no-untyped-def]
    """A function listing every file under MEDIA_ROOT, to show that a refused request stored nothing."""

    def files() -> set[Path]:
        return {p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()}

    return files


@pytest.fixture
def catalogue(active_model):  # type: ignore[no-untyped-def]
    """12 ready artworks with known embeddings and predictions of the active version; returns (artworks, matrix)."""
    rng = np.random.default_rng(7)
    embeddings = rng.normal(size=(12, 128)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    artworks = []
    for i, embedding in enumerate(embeddings):
        artwork = ArtworkFactory(
            status="ready",
            title=f"Work {i:02d}",
            artist="Hals" if i % 3 == 0 else "Rembrandt",
            accession_number=f"ACC-{i:03d}",
        )
        prediction_for(
            artwork,
            version=active_model,
            type_slug=TYPES[i % 5],
            embedding=embedding,
            confidence=0.5 + i * 0.04,
        )
        artworks.append(artwork)
    return artworks, embeddings
