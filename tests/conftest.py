"""Fixtures shared by the whole suite: a tiny real Keras model, users, and a clean test broker queue.

Everything runs against the real PostgreSQL with pgvector and the real Redis (embedded ones under var/test unless
DATABASE_URL / CELERY_BROKER_URL are set) — no SQLite, no mocked database or broker.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

TINY_VERSION = "test-tiny"
TINY_INPUT = 32
CLASSES = ["drawings", "engraving", "iconography", "painting", "sculpture"]

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def write_tiny_model(folder: Path, version: str = TINY_VERSION, seed: int = 0) -> Path:
    """A real (untrained) seed-architecture model saved as a version folder, small enough to load in a second."""
    import keras

    from inference.architectures import build_seed_cnn

    keras.utils.set_random_seed(seed)
    path = folder / version
    path.mkdir(parents=True, exist_ok=True)
    build_seed_cnn(input_size=TINY_INPUT).save(path / "model.keras")
    card = {
        "version": version,
        "created": "2026-01-01T00:00:00",
        "architecture": "seed-cnn",
        "classes": CLASSES,
        "input_size": TINY_INPUT,
        "embedding_dim": 128,
        "temperature": 1.0,
        "metrics": {"accuracy": 0.2},
    }
    (path / "card.json").write_text(json.dumps(card))
    return path


@pytest.fixture(scope="session")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    write_tiny_model(root)
    return root


@pytest.fixture(autouse=True)
def _test_models(settings, model_root: Path) -> None:  # type: ignore[no-untyped-def]
    settings.ARTSITE_MODEL_DIRS = [model_root]
    settings.ARTSITE_DEFAULT_MODEL = TINY_VERSION


@pytest.fixture
def active_model(db):  # type: ignore[no-untyped-def]
    from inference.services import model_ensure_active

    return model_ensure_active()


@pytest.fixture
def curator(db):  # type: ignore[no-untyped-def]
    from tests.factories import CuratorFactory

    return CuratorFactory(username="curator1")


@pytest.fixture
def viewer(db):  # type: ignore[no-untyped-def]
    from tests.factories import ViewerFactory

    return ViewerFactory(username="viewer1")


@pytest.fixture
def curator_client(client, curator):  # type: ignore[no-untyped-def]
    client.force_login(curator)
    return client


@pytest.fixture
def viewer_client(client, viewer):  # type: ignore[no-untyped-def]
    client.force_login(viewer)
    return client


@pytest.fixture
def broker():  # type: ignore[no-untyped-def]
    """The real test Redis, emptied before and after the test."""
    import redis
    from django.conf import settings

    url = settings.CELERY_BROKER_URL
    client = redis.Redis(unix_socket_path=url.removeprefix("redis+socket://")) if url.startswith("redis+socket") else redis.Redis.from_url(url)
    client.flushdb()
    yield client
    client.flushdb()
