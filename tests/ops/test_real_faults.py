"""Faults against the real thing: real worker (and beat) processes, the real PostgreSQL stopped and started, a real
Redis stopped and started on the same address, a model activated through a real worker while the API is read, and
the classification task's retry and time-limit paths."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, transaction
from rest_framework.authtoken.models import Token

from catalogue.models import Artwork, Prediction
from catalogue.services.artworks import artwork_create
from catalogue.services.classification import artwork_classify, classification_enqueue
from tests.conftest import wait_for
from tests.images import image_bytes
from tests.ops.test_faults import use_broker

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def status_of(artwork_id: int) -> str:
    return Artwork.objects.values_list("status", flat=True).get(pk=artwork_id)


def stored(seed: int, title: str) -> Artwork:
    with transaction.atomic():
        return artwork_create(data=image_bytes(seed, size=(160, 120)), title=title, enqueue=False)


def pg_ctl(*args: str) -> None:
    import pgserver
    from pgserver import pg_ctl as run  # type: ignore[attr-defined]  # made at import time by setattr

    pgdata = Path(connection.settings_dict["HOST"])  # the embedded server's socket folder is its data folder
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    run(["-w", *args], pgdata=server.pgdata, user=server.system_user, timeout=60)


def test_postgresql_stopped_and_started_under_a_real_worker(active_model, celery_worker_process, client):
    if not Path(connection.settings_dict["HOST"] or "/nonexistent", "postmaster.pid").exists():
        pytest.skip("needs the embedded PostgreSQL (DATABASE_URL names another server)")
    celery_worker_process.start()
    warm = stored(1, "Before the outage")
    classification_enqueue(artwork_ids=[warm.pk])
    wait_for(lambda: status_of(warm.pk) == "ready", timeout=90, explain=celery_worker_process.log)
    artwork = stored(2, "Sent during the outage")

    pgdata = connection.settings_dict["HOST"]
    connection.close()
    pg_ctl("stop", "-m", "fast")
    try:
        health = client.get("/healthz")
        assert health.status_code == 503 and health.json()["database"]["ok"] is False
        # The message reaches the worker while the database is down: its task fails to claim and retries.
        assert classification_enqueue(artwork_ids=[artwork.pk]) is True
        time.sleep(3)
    finally:
        pg_ctl("start", "-o", '-h ""', "-o", f"-k {pgdata}", "-l", str(Path(pgdata) / "restart.log"))
    connection.close()
    wait_for(lambda: client.get("/healthz").status_code == 200, timeout=60)
    wait_for(lambda: status_of(artwork.pk) == "ready", timeout=90, explain=celery_worker_process.log)
    assert Prediction.objects.filter(artwork=artwork).count() == 1
    assert "Retry in" in celery_worker_process.log()  # it did meet the outage


def test_redis_stopped_and_started_on_the_same_address_with_the_real_sweep(
    active_model, celery_worker_process, celery_beat_process, client, curator, tmp_path
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from artsite import embedded

    folder = Path(f"/tmp/artsite-ops-redis-{tmp_path.name[-12:]}")  # short: socket paths are limited
    url = embedded.redis_url(folder)
    live = settings.CELERY_BROKER_URL
    use_broker(url)
    settings.CELERY_BROKER_URL = url
    try:
        celery_worker_process.env["CELERY_BROKER_URL"] = url
        celery_worker_process.start()
        celery_beat_process.start()
        embedded.redis_stop(folder)
        wait_for(lambda: not embedded._redis_answers(folder / "redis.sock"), timeout=20)

        client.force_login(curator)
        token = Token.objects.create(user=curator).key
        response = client.post(
            "/api/v1/artworks/",
            {
                "title": "While Redis is down",
                "image": SimpleUploadedFile("a.jpg", image_bytes(3), "image/jpeg"),
            },
            HTTP_AUTHORIZATION=f"Token {token}",
        )
        assert response.status_code == 202, response.content
        artwork_id = response.json()["id"]
        assert status_of(artwork_id) == "pending"

        embedded.redis_url(folder)  # the same socket again
        # Nothing but the beat's sweep sends it: the upload's own message was lost with Redis.
        wait_for(
            lambda: status_of(artwork_id) == "ready",
            timeout=120,
            explain=lambda: celery_worker_process.log() + (tmp_path / "beat.log").read_text(errors="replace"),
        )
        assert Prediction.objects.filter(artwork_id=artwork_id).count() == 1
    finally:
        use_broker(live)
        settings.CELERY_BROKER_URL = live
        embedded.redis_stop(folder)


def test_activation_through_a_real_worker_while_the_api_is_read(
    active_model, celery_worker_process, client, curator, settings, tmp_path, model_root
):
    from catalogue.services import model_rollout
    from inference import services as model_services
    from inference.models import ModelVersion
    from inference.selectors import model_version_active
    from tests.conftest import write_tiny_model

    works = [stored(10 + n, f"Work {n}") for n in range(12)]
    for work in works:
        artwork_classify(artwork_id=work.pk)
    write_tiny_model(tmp_path, version="test-tiny-next", seed=5)
    dirs = f"{model_root},{tmp_path}"
    settings.ARTSITE_MODEL_DIRS = [model_root, tmp_path]
    model_services.model_versions_sync()
    second = ModelVersion.objects.get(version="test-tiny-next")
    celery_worker_process.env["ARTSITE_MODEL_DIRS"] = dirs
    celery_worker_process.start()

    token = Token.objects.create(user=curator).key
    answers = []
    with transaction.atomic():
        model_rollout.model_activate(version=second)  # re-embedding runs on the worker, in batches
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        response = client.get("/api/v1/artworks/?page_size=50", HTTP_AUTHORIZATION=f"Token {token}")
        assert response.status_code == 200
        answers.append(response.json()["results"])
        if model_version_active() == second:
            break
    assert model_version_active() == second, celery_worker_process.log()[-3000:]
    answers.append(
        client.get("/api/v1/artworks/?page_size=50", HTTP_AUTHORIZATION=f"Token {token}").json()["results"]
    )

    stored_probs = {
        (p.artwork_id, p.model_version.version): p.probabilities
        for p in Prediction.objects.select_related("model_version")
    }
    seen = set()
    for results in answers:
        versions = {item["prediction"]["model_version"] for item in results}
        assert len(versions) == 1  # one version's results in every answer, never a mix
        version = versions.pop()
        seen.add(version)
        for item in results:
            assert item["prediction"]["probabilities"] == stored_probs[(item["id"], version)]
    assert seen <= {active_model.version, second.version} and second.version in seen


def test_the_time_limit_ends_the_batch_failed_with_the_reason(
    active_model, celery_worker_process, monkeypatch
):
    import io

    import numpy as np
    from celery import current_app
    from PIL import Image

    from catalogue.tasks import classify_artwork

    # A soft limit of one second against a batch that takes longer: 20 large PNGs (no reduced decoding for PNG),
    # read and decoded one at a time.
    celery_worker_process.env.update({"CELERY_TASK_SOFT_TIME_LIMIT": "1", "ARTSITE_CLASSIFY_READERS": "1"})
    # Celery (5.7) writes the sending process's limits of a task it has registered into the message, and the
    # worker obeys the message: this process sends as a web process would, so it gets the same limit. (Without
    # this the test depended on whether an earlier test had imported catalogue.tasks here: the message then said
    # 120 s, and the batch finished.)
    current_app.finalize()  # as any in-process task call does (it registers the tasks that the message reads)
    monkeypatch.setattr(classify_artwork, "soft_time_limit", 1)
    monkeypatch.setattr(classify_artwork, "_exec_options", None)  # Celery caches the options it sends
    celery_worker_process.start()
    works = []
    for n in range(20):
        ramp = np.linspace(0, 255, 4000, dtype=np.float32)[None, :, None] * np.ones((3000, 1, 3), np.float32)
        out = io.BytesIO()
        Image.fromarray(((ramp + 7 * n) % 256).astype(np.uint8)).save(out, format="PNG")
        with transaction.atomic():
            works.append(artwork_create(data=out.getvalue(), title=f"Slow {n}", enqueue=False))
    classification_enqueue(artwork_ids=[works[0].pk])
    wait_for(
        lambda: all(status_of(w.pk) == "failed" for w in works),
        timeout=120,
        explain=celery_worker_process.log,
    )
    errors = set(Artwork.objects.filter(pk__in=[w.pk for w in works]).values_list("error", "claimed_by"))
    assert errors == {("Classification took too long and was stopped.", "")}
    assert not Prediction.objects.filter(artwork__in=works).exists()


def test_a_transient_failure_is_retried_and_the_work_ends_ready(active_model, broker, monkeypatch):
    from catalogue.services import classification
    from catalogue.tasks import classify_artwork

    artwork = stored(20, "Transient")
    real = classification.get_classifier
    calls = []

    def flaky(version: str):  # type: ignore[no-untyped-def]
        calls.append(version)
        if len(calls) == 1:
            raise ConnectionError("storage hiccup")
        return real(version)

    monkeypatch.setattr(classification, "get_classifier", flaky)
    classify_artwork.apply(args=[artwork.pk])  # eager: the retry runs at once
    artwork.refresh_from_db()
    assert len(calls) == 2
    assert (artwork.status, artwork.attempts, artwork.claimed_by) == ("ready", 2, "")
    assert Prediction.objects.filter(artwork=artwork).count() == 1
