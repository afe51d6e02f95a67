"""Fixtures for the operations tests: a Redis server of the test's own that can be stopped, a model version folder
of the test's own that can be damaged, and a clean health cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _fresh_health():  # type: ignore[no-untyped-def]
    from artsite import health, metrics

    health.health_reset()
    metrics._quiet_until = 0.0
    yield
    health.health_reset()
    metrics._quiet_until = 0.0


@pytest.fixture
def stopped_redis(tmp_path: Path) -> str:
    """The URL of a real Redis that was started and then stopped (the broker is down)."""
    import time

    from artsite import embedded

    # A short path: Unix socket paths are limited to ~100 bytes.
    folder = Path(f"/tmp/artsite-ops-redis-{tmp_path.name}")
    url = embedded.redis_url(folder)
    embedded.redis_stop(folder)
    deadline = time.monotonic() + 10
    while embedded._redis_answers(folder / "redis.sock") and time.monotonic() < deadline:
        time.sleep(0.05)
    yield url
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def own_model(settings, model_root: Path, tmp_path: Path, db):  # type: ignore[no-untyped-def]
    """A copy of the tiny model as version ``ops-model``, active; returns its folder (to delete or damage files)."""
    from inference import loader
    from inference.models import ModelVersion
    from inference.services import model_version_set_active, model_versions_sync
    from tests.conftest import TINY_VERSION

    root = tmp_path / "models"
    folder = root / "ops-model"
    shutil.copytree(model_root / TINY_VERSION, folder)
    card = (folder / "card.json").read_text().replace(TINY_VERSION, "ops-model")
    (folder / "card.json").write_text(card)
    settings.ARTSITE_MODEL_DIRS = [root]
    model_versions_sync()
    model_version_set_active(version=ModelVersion.objects.get(version="ops-model"))
    loader._cache.pop("ops-model", None)  # loaded by an earlier test from another folder
    yield folder
    loader._cache.pop("ops-model", None)
