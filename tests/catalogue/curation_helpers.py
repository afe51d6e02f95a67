"""Helpers for the curation tests: ready artworks with chosen predictions (no model run needed)."""

from __future__ import annotations

import numpy as np

from catalogue.models import Artwork, ArtworkType, Prediction, prediction_uncertainty
from catalogue.services.moved_embeddings import moved_embeddings_sync
from tests.factories import ArtworkFactory

SLUGS = ["drawings", "engraving", "iconography", "painting", "sculpture"]


def ready_artwork(
    version, probabilities: dict[str, float], *, embedding=None, seed: int = 0, **kwargs
) -> Artwork:
    """A ready artwork whose prediction by ``version`` has these probabilities (missing types get 0)."""
    artwork = ArtworkFactory(status=Artwork.Status.READY, **kwargs)
    probs = {slug: float(probabilities.get(slug, 0.0)) for slug in SLUGS}
    best = max(probs, key=probs.get)
    if embedding is None:
        vector = np.random.default_rng(seed + artwork.pk).normal(size=128)
        embedding = vector / np.linalg.norm(vector)
    Prediction.objects.create(
        artwork=artwork,
        model_version=version,
        predicted_type=ArtworkType.objects.get(slug=best),
        confidence=probs[best],
        probabilities=probs,
        embedding=np.asarray(embedding, dtype=np.float32),
        **prediction_uncertainty(probs.values()),  # as prediction_store stores them
    )
    moved_embeddings_sync(artwork_ids=[artwork.pk])  # as prediction_store does
    return artwork


def confident(slug: str, p: float = 0.9) -> dict[str, float]:
    rest = (1 - p) / 4
    return {s: (p if s == slug else rest) for s in SLUGS}


def type_of(slug: str) -> ArtworkType:
    return ArtworkType.objects.get(slug=slug)


def logged_in(client, user):
    """``force_login`` with the user as stored: the factories set the password after saving without saving again,
    so a session made from the in-memory user fails Django's session hash check on the next request."""
    user.refresh_from_db()
    client.force_login(user)
    return client


def reopen_broker_pool() -> None:
    """Point Celery back at the test broker with a fresh producer pool, if an earlier test left it otherwise.

    ``test_enqueue_with_broker_down`` (test_classify_service.py) leaves ``app.conf.broker_url`` at its dead
    address (it restores it while the ``settings`` fixture still holds the override) and closes kombu's pool for
    good (``force_close_all()`` defaults to ``close_pool=True``); every later enqueue in the process then fails
    quietly and the artwork stays pending.
    """
    from django.conf import settings
    from kombu import pools

    from artsite.celery import app

    if app.conf.broker_url != settings.CELERY_BROKER_URL or getattr(app.pool, "_closed", False):
        app.conf.broker_url = settings.CELERY_BROKER_URL
        pools.reset()  # the closed pool is also kept in kombu's global registry, and a producer pool wraps it
        app._pool = None
        app.amqp._producer_pool = None
