"""Faults that can be shown in the suite in seconds: Redis stopped while curators upload (portal and API), then
back; a damaged model file seen by the worker and by /readyz. (A worker SIGKILLed mid-task: tests/test_pipeline.py;
PostgreSQL restarted, and all of these against real processes: `make faults`.)"""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.authtoken.models import Token

from artsite.celery import app
from catalogue.models import Artwork
from catalogue.services.classification import artwork_classify, classification_enqueue
from tests.factories import ArtworkFactory
from tests.images import image_bytes

pytestmark = pytest.mark.django_db


def use_broker(url: str) -> None:
    """Point Celery at ``url``: its connection pool and its producer pool are both bound to the URL they were made
    with (in production the URL never changes; a broker that comes back is found again by the same pools)."""
    from kombu import pools

    if app._pool is not None:
        app._pool.force_close_all(close_pool=False)
    pools.reset()  # kombu's registry of producer pools, keyed by connection: else an old pool comes back
    app._pool = None
    app.amqp._producer_pool = None
    app.conf.broker_url = url


@pytest.fixture
def redis_down(settings, stopped_redis, broker):  # type: ignore[no-untyped-def]
    """Redis is stopped for the app (Celery, health, metrics); ``broker`` is the live test Redis for afterwards."""
    live = app.conf.broker_url
    use_broker(stopped_redis)
    settings.CELERY_BROKER_URL = stopped_redis
    yield live
    use_broker(live)


def age(*artworks: Artwork, seconds: int = 120) -> None:
    Artwork.objects.filter(pk__in=[a.pk for a in artworks]).update(
        updated_at=timezone.now() - timedelta(seconds=seconds)
    )


def test_uploads_while_redis_is_down_are_kept_pending_then_sent(
    client, curator, active_model, redis_down, broker, settings, django_capture_on_commit_callbacks
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(curator)
    token = Token.objects.create(user=curator).key
    with django_capture_on_commit_callbacks(execute=True):
        page = client.post(
            "/artworks/upload/",
            {"title": "Portal upload", "image": SimpleUploadedFile("a.jpg", image_bytes(501), "image/jpeg")},
        )
        api = client.post(
            "/api/v1/artworks/",
            {"title": "API upload", "image": SimpleUploadedFile("b.jpg", image_bytes(502), "image/jpeg")},
            HTTP_AUTHORIZATION=f"Token {token}",
        )
    # No error for the curator: the portal shows the artwork's page, the API accepts it.
    assert page.status_code == 302 and page["Location"].startswith("/artworks/")
    assert api.status_code == 202, api.content
    assert api.json()["status"] == "pending"
    uploaded = list(Artwork.objects.order_by("pk"))
    assert [a.title for a in uploaded] == ["Portal upload", "API upload"]
    assert all(a.status == Artwork.Status.PENDING for a in uploaded)

    health = client.get("/readyz")
    assert health.status_code == 503 and health.json()["broker"]["ok"] is False
    assert client.get("/healthz").status_code == 200  # alive: uploads keep working

    # Redis is back: the command sends them at once.
    use_broker(redis_down)
    settings.CELERY_BROKER_URL = redis_down
    out = StringIO()
    call_command("requeue_pending", stdout=out)
    assert "Sent 2 artwork(s)" in out.getvalue()
    assert broker.llen("celery") == 1  # one message per batch
    from catalogue.tasks import classify_artwork

    classify_artwork.apply(args=[uploaded[0].pk])  # the task takes every work waiting
    assert set(Artwork.objects.values_list("status", flat=True)) == {Artwork.Status.READY}


def test_the_periodic_sweep_sends_what_was_stored_while_redis_was_down(
    active_model, redis_down, broker, settings
):
    from catalogue.tasks import requeue_pending

    artworks = [ArtworkFactory(), ArtworkFactory()]
    assert classification_enqueue(artwork_ids=[a.pk for a in artworks]) is False  # Redis down
    # While Redis is down the sweep sends nothing, and loses nothing.
    age(*artworks)
    assert requeue_pending.apply().get() == 0
    assert Artwork.objects.filter(status=Artwork.Status.PENDING).count() == 2

    use_broker(redis_down)
    settings.CELERY_BROKER_URL = redis_down
    # Fresh uploads get a grace period (their own enqueue may still be on its way); old ones are sent.
    fresh = ArtworkFactory()
    assert requeue_pending.apply().get() == 2
    assert broker.llen("celery") == 1  # one message per batch: its task claims every work waiting
    # Nothing stays pending: whatever is still pending after the grace period is sent again, fresh ones included.
    assert requeue_pending.apply().get() == 0
    age(*artworks, fresh)
    assert requeue_pending.apply().get() == 3


def test_requeue_pending_command_says_when_the_broker_is_unreachable(active_model, redis_down):
    ArtworkFactory()
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="broker"):
        call_command("requeue_pending", stdout=StringIO())
    assert Artwork.objects.get().status == Artwork.Status.PENDING


def test_damaged_model_fails_the_work_with_the_reason_and_healthz_says_so(client, own_model, broker):
    from inference import loader

    (own_model / "model.tflite").write_bytes(b"not a model")
    loader._cache.pop("ops-model", None)  # a worker starting now
    artwork = ArtworkFactory()
    artwork_classify(artwork_id=artwork.pk)
    artwork.refresh_from_db()
    assert artwork.status == Artwork.Status.FAILED
    assert "ops-model" in artwork.error and "could not be loaded" in artwork.error

    health = client.get("/readyz")
    assert health.status_code == 503
    assert health.json()["model"]["version"] == "ops-model"
    assert "could not be loaded" in health.json()["model"]["error"]
