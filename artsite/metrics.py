"""Prometheus metrics at ``/metrics``: HTTP requests, Celery tasks, queue depth, artworks by status.

Why Redis: the web app runs as several gunicorn processes and the worker in other processes (another container in
docker-compose), while a scrape reaches one web process. Counters kept in each process's memory would show a
different, partial picture on every scrape. So every process adds its counts to hashes in the broker's Redis (one
pipelined round trip per request or task), and the ``/metrics`` view of any web process reads them all back.
Gauges (queue depth, unacknowledged tasks, artworks by status) are read at scrape time.

Recording never slows or breaks a request: Redis errors are swallowed, and after one the recorder stays quiet for
a few seconds (counts made while Redis is down are lost; the counters say so by not moving).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from celery import signals
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from kombu.transport.redis import PRIORITY_STEPS
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from artsite import health
from artsite.broker import broker_redis

logger = logging.getLogger(__name__)

PREFIX = "artsite:metrics"
# After a Redis error, recording is skipped for this long so a dead broker costs nothing per request.
QUIET_SECONDS = 5.0
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TASK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

_quiet_until = 0.0


def _quietly(write: Callable[[Any], None]) -> None:
    """Run a Redis write unless Redis failed a moment ago; never raise."""
    global _quiet_until
    if time.monotonic() < _quiet_until:
        return
    try:
        write(broker_redis())
    except Exception as exc:
        # redis ConnectionError, TimeoutError, socket errors: metrics must never break a request.
        _quiet_until = time.monotonic() + QUIET_SECONDS
        logger.debug("metrics not recorded (Redis unavailable: %s)", exc)


# --- Counters and histograms kept in Redis hashes ---------------------------------------------------------------


class RedisCounter:
    """A labelled counter: one Redis hash, one field per label combination (JSON list of the values)."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        self.name, self.documentation, self.labels = name, documentation, tuple(labels)
        self.key = f"{PREFIX}:counter:{name}"

    def add(self, pipe: Any, values: Sequence[str], amount: float = 1) -> None:
        pipe.hincrbyfloat(self.key, json.dumps([str(v) for v in values]), amount)

    def read(self, client: Any) -> Iterator[tuple[list[str], float]]:
        for field, value in client.hgetall(self.key).items():
            yield json.loads(field), float(value)


class RedisHistogram:
    """A labelled histogram: per label combination, one hash field per bucket (counted non-cumulatively, summed up
    at scrape time), plus ``sum`` and ``count``."""

    def __init__(
        self, name: str, documentation: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> None:
        self.name, self.documentation, self.labels = name, documentation, tuple(labels)
        self.buckets = tuple(sorted(buckets))
        self.key = f"{PREFIX}:histogram:{name}"

    def observe(self, pipe: Any, values: Sequence[str], seconds: float) -> None:
        labels = json.dumps([str(v) for v in values])
        bucket = next((b for b in self.buckets if seconds <= b), None)
        pipe.hincrby(self.key, f"{labels}|{'+Inf' if bucket is None else repr(bucket)}", 1)
        pipe.hincrbyfloat(self.key, f"{labels}|sum", seconds)
        pipe.hincrby(self.key, f"{labels}|count", 1)

    def read(self, client: Any) -> Iterator[tuple[list[str], list[tuple[str, float]], float]]:
        """(label values, cumulative [(le, count)...] ending with +Inf, sum) per label combination."""
        series: dict[str, dict[str, float]] = {}
        for field, value in client.hgetall(self.key).items():
            labels, _, part = field.decode().rpartition("|")
            series.setdefault(labels, {})[part] = float(value)
        for labels, parts in sorted(series.items()):
            cumulative, running = [], 0.0
            for bound in self.buckets:
                running += parts.get(repr(bound), 0.0)
                cumulative.append((repr(bound), running))
            cumulative.append(("+Inf", parts.get("count", running + parts.get("+Inf", 0.0))))
            yield json.loads(labels), cumulative, parts.get("sum", 0.0)


HTTP_REQUESTS = RedisCounter(
    "artsite_http_requests",
    "HTTP requests answered, by route pattern, method and status.",
    ["route", "method", "status"],
)
HTTP_SECONDS = RedisHistogram(
    "artsite_http_request_duration_seconds",
    "Time to answer an HTTP request.",
    ["route", "method"],
    HTTP_BUCKETS,
)
TASKS_SENT = RedisCounter("artsite_celery_tasks_sent", "Celery tasks published to the broker.", ["task"])
TASKS_DONE = RedisCounter(
    "artsite_celery_tasks",
    "Celery tasks run by the workers, by final state (SUCCESS, FAILURE, RETRY...).",
    ["task", "state"],
)
TASK_SECONDS = RedisHistogram(
    "artsite_celery_task_duration_seconds", "Time a worker spent running a task.", ["task"], TASK_BUCKETS
)
STORED = (HTTP_REQUESTS, HTTP_SECONDS, TASKS_SENT, TASKS_DONE, TASK_SECONDS)


def request_record(*, route: str, method: str, status: int, seconds: float) -> None:
    def write(client: Any) -> None:
        pipe = client.pipeline(transaction=False)
        HTTP_REQUESTS.add(pipe, [route, method, str(status)])
        HTTP_SECONDS.observe(pipe, [route, method], seconds)
        pipe.execute()

    _quietly(write)


def task_record(*, task: str, state: str, seconds: float | None) -> None:
    def write(client: Any) -> None:
        pipe = client.pipeline(transaction=False)
        TASKS_DONE.add(pipe, [task, state])
        if seconds is not None:
            TASK_SECONDS.observe(pipe, [task], seconds)
        pipe.execute()

    _quietly(write)


def task_sent_record(*, task: str) -> None:
    def write(client: Any) -> None:
        pipe = client.pipeline(transaction=False)
        TASKS_SENT.add(pipe, [task])
        pipe.execute()

    _quietly(write)


# --- Requests ---------------------------------------------------------------------------------------------------


class RequestMetricsMiddleware:
    """Counts every request by its URL *pattern* (``artworks/<int:pk>/``, not the id: bounded label values) and
    times it. First in ``MIDDLEWARE`` so the time covers the whole stack."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = match.route if match is not None and match.route else "<unmatched>"
        method = (
            request.method
            if request.method in {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
            else "OTHER"
        )
        request_record(
            route=route,
            method=method or "OTHER",
            status=response.status_code,
            seconds=time.perf_counter() - started,
        )
        return response


# --- Celery tasks (signals connected by ArtsiteConfig.ready at start-up, in every process) -----------------------

_task_started: dict[str, float] = {}


def connect_task_signals() -> None:
    """Count and time every task in the process that runs it; count every task published. Idempotent."""

    signals.before_task_publish.connect(_on_publish, weak=False, dispatch_uid="artsite-metrics-publish")
    signals.task_prerun.connect(_on_prerun, weak=False, dispatch_uid="artsite-metrics-prerun")
    signals.task_postrun.connect(_on_postrun, weak=False, dispatch_uid="artsite-metrics-postrun")


def _on_publish(sender: str | None = None, headers: dict | None = None, **_: Any) -> None:
    task_sent_record(task=str((headers or {}).get("task") or sender or "unknown"))


def _on_prerun(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _task_started[task_id] = time.perf_counter()


def _on_postrun(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    started = _task_started.pop(task_id or "", None)
    task_record(
        task=getattr(task, "name", None) or "unknown",
        state=state or "UNKNOWN",
        seconds=None if started is None else time.perf_counter() - started,
    )


# --- Scrape-time gauges -----------------------------------------------------------------------------------------


def queue_names() -> list[str]:
    return [getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", None) or "celery"]


def queue_depths(client: Any) -> dict[str, int]:
    """Messages waiting in each Celery queue (LLEN; kombu keeps priorities 3, 6, 9 in sibling lists)."""

    depths = {}
    for queue in queue_names():
        keys = [queue] + [f"{queue}\x06\x16{p}" for p in PRIORITY_STEPS if p]
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.llen(key)
        depths[queue] = int(sum(pipe.execute()))
    return depths


def unacked_count(client: Any) -> int:
    """Tasks delivered to a worker and not acknowledged yet (running, or lost with a dead worker until restored)."""
    return int(client.hlen("unacked"))


class ArtsiteCollector:
    """Yields every metric family at scrape time (a ``prometheus_client`` custom collector)."""

    def collect(self) -> Iterable[Any]:

        up = GaugeMetricFamily("artsite_up", "1 when the component answers, else 0.", labels=["component"])
        try:
            client = broker_redis()
            client.ping()
        except Exception:
            client = None
        up.add_metric(["broker"], 1 if client is not None else 0)

        if client is not None:
            for metric in (HTTP_REQUESTS, TASKS_SENT, TASKS_DONE):
                family = CounterMetricFamily(metric.name, metric.documentation, labels=list(metric.labels))
                for values, total in metric.read(client):
                    family.add_metric(values, total)
                yield family
            for histogram in (HTTP_SECONDS, TASK_SECONDS):
                histogram_family = HistogramMetricFamily(
                    histogram.name, histogram.documentation, labels=list(histogram.labels)
                )
                for values, buckets, total in histogram.read(client):
                    histogram_family.add_metric(values, buckets, total)
                yield histogram_family
            depth = GaugeMetricFamily(
                "artsite_queue_depth", "Tasks waiting in the broker queue.", labels=["queue"]
            )
            for queue, n in queue_depths(client).items():
                depth.add_metric([queue], n)
            yield depth
            yield GaugeMetricFamily(
                "artsite_tasks_unacked",
                "Tasks delivered to workers and not yet acknowledged.",
                value=unacked_count(client),
            )

        database = health.database_check()
        up.add_metric(["database"], 1 if database.ok else 0)
        if database.ok:
            from catalogue.selectors.artworks import catalogue_counts  # noqa: PLC0415  # artsite is imported by the settings; the catalogue models load after it

            artworks = GaugeMetricFamily(
                "artsite_artworks", "Artworks in the catalogue by status.", labels=["status"]
            )
            for status, n in catalogue_counts().items():
                if status != "total":
                    artworks.add_metric([status], n)
            yield artworks
        model = health.model_check(load=False)
        up.add_metric(["model"], 1 if model.ok else 0)
        if model.detail.get("version"):
            info = GaugeMetricFamily("artsite_model_info", "The active model version.", labels=["version"])
            info.add_metric([str(model.detail["version"])], 1)
            yield info
        yield up


def metrics_text() -> tuple[bytes, str]:
    """The exposition text and its content type."""

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ArtsiteCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST


def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``. Open unless ``ARTSITE_METRICS_TOKEN`` is set; then it needs ``Authorization: Bearer <it>``."""

    token = getattr(settings, "ARTSITE_METRICS_TOKEN", "")
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            return HttpResponse(
                "Unauthorized\n",
                status=401,
                content_type="text/plain",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
    body, content_type = metrics_text()
    response = HttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response
