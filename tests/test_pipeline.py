"""Upload → Redis → real Celery worker process → prediction, including a worker killed mid-task."""

from __future__ import annotations

import pytest
from django.db import transaction

from catalogue.models import Artwork, Prediction
from catalogue.services.artworks import artwork_create
from tests.conftest import wait_for
from tests.images import image_bytes

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def status_of(artwork_id: int) -> str:
    return Artwork.objects.values_list("status", flat=True).get(pk=artwork_id)


def test_upload_is_classified_by_a_real_worker(active_model, celery_worker_process):
    celery_worker_process.start()
    with transaction.atomic():
        artwork = artwork_create(data=image_bytes(1, size=(300, 320)), title="Through the queue")
    assert status_of(artwork.pk) == Artwork.Status.PENDING

    wait_for(
        lambda: status_of(artwork.pk) == Artwork.Status.READY, timeout=90, explain=celery_worker_process.log
    )
    prediction = Prediction.objects.get(artwork=artwork)
    assert prediction.model_version == active_model
    assert len(prediction.embedding) == 128


def test_worker_killed_mid_task_does_not_lose_the_artwork(active_model, celery_worker_process):
    # A cold worker loads the model inside the first task, which leaves a wide window to kill it mid-task.
    first = celery_worker_process.start(warm=False)
    with transaction.atomic():
        artwork = artwork_create(data=image_bytes(2), title="Survivor")

    wait_for(
        lambda: status_of(artwork.pk) == Artwork.Status.PROCESSING,
        timeout=60,
        interval=0.005,
        explain=celery_worker_process.log,
    )
    celery_worker_process.kill(first)
    assert status_of(artwork.pk) == Artwork.Status.PROCESSING
    assert not Prediction.objects.filter(artwork=artwork).exists()

    # Late acknowledgement: the message is still in Redis and is delivered again (after the visibility timeout).
    celery_worker_process.start()
    wait_for(
        lambda: status_of(artwork.pk) == Artwork.Status.READY, timeout=120, explain=celery_worker_process.log
    )
    assert Prediction.objects.filter(artwork=artwork).count() == 1
