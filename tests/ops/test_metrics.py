"""/metrics: Prometheus text with requests, task counts and durations, queue depth and artworks by status, kept in
Redis so every web and worker process adds to the same numbers."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from catalogue.services.classification import classification_enqueue
from tests.factories import ArtworkFactory

pytestmark = pytest.mark.django_db


def scrape(client) -> dict[str, list]:  # type: ignore[no-untyped-def]
    """{sample name: [(labels, value), ...]} from GET /metrics (parsed by prometheus_client, so the format is valid)."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/plain; version=")
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples: dict, name: str, **labels: str) -> float | None:
    for got, v in samples.get(name, []):
        if all(got.get(k) == want for k, want in labels.items()):
            return v
    return None


def test_requests_are_counted_by_route_and_timed(client, curator_client, active_model, broker):
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    artwork = ArtworkFactory(status="ready")
    curator_client.get(f"/artworks/{artwork.pk}/")
    curator_client.get("/artworks/999999999/")
    client.get("/no-such-page/")
    samples = scrape(client)

    assert value(samples, "artsite_http_requests_total", route="healthz", method="GET", status="200") == 3
    # The pattern, not the id: one series for every artwork page.
    assert (
        value(samples, "artsite_http_requests_total", route="artworks/<int:pk>/", method="GET", status="200")
        == 1
    )
    assert (
        value(samples, "artsite_http_requests_total", route="artworks/<int:pk>/", method="GET", status="404")
        == 1
    )
    assert value(samples, "artsite_http_requests_total", route="<unmatched>", method="GET", status="404") == 1
    assert value(samples, "artsite_http_request_duration_seconds_count", route="healthz", method="GET") == 3
    assert (
        value(
            samples, "artsite_http_request_duration_seconds_bucket", route="healthz", method="GET", le="+Inf"
        )
        == 3
    )
    assert value(samples, "artsite_http_request_duration_seconds_sum", route="healthz", method="GET") > 0


def test_queue_depth_and_artworks_by_status(client, active_model, broker):
    artworks = [ArtworkFactory() for _ in range(3)]
    ArtworkFactory(status="failed")
    assert classification_enqueue(artwork_ids=[a.pk for a in artworks])
    samples = scrape(client)

    assert value(samples, "artsite_queue_depth", queue="celery") == 3
    assert value(samples, "artsite_tasks_unacked") == 0
    assert value(samples, "artsite_artworks", status="pending") == 3
    assert value(samples, "artsite_artworks", status="failed") == 1
    assert value(samples, "artsite_artworks", status="ready") == 0
    assert value(samples, "artsite_celery_tasks_sent_total", task="catalogue.tasks.classify_artwork") == 3
    assert value(samples, "artsite_up", component="broker") == 1
    assert value(samples, "artsite_up", component="database") == 1
    assert value(samples, "artsite_model_info", version=active_model.version) == 1


def test_tasks_are_counted_by_state_and_timed(client, active_model, broker):
    from catalogue.tasks import classify_artwork

    artwork = ArtworkFactory()
    # apply() runs the task here, through the same tracer (and signals) as a worker.
    classify_artwork.apply(args=[artwork.pk])
    classify_artwork.apply(args=[artwork.pk])
    samples = scrape(client)

    task = "catalogue.tasks.classify_artwork"
    assert value(samples, "artsite_celery_tasks_total", task=task, state="SUCCESS") == 2
    assert value(samples, "artsite_celery_task_duration_seconds_count", task=task) == 2
    assert value(samples, "artsite_celery_task_duration_seconds_sum", task=task) > 0


def test_metrics_token_when_configured(client, settings, broker, db):
    settings.ARTSITE_METRICS_TOKEN = "scrape-secret"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret").status_code == 200


def test_broker_down_neither_breaks_requests_nor_the_scrape(
    client, curator_client, active_model, settings, stopped_redis
):
    settings.CELERY_BROKER_URL = stopped_redis
    assert curator_client.get("/").status_code == 200  # recording the request fails quietly
    samples = scrape(client)
    assert value(samples, "artsite_up", component="broker") == 0
    assert value(samples, "artsite_up", component="database") == 1
    assert value(samples, "artsite_artworks", status="pending") == 0
    assert "artsite_queue_depth" not in samples  # unknown, so not reported as 0
