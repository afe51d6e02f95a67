"""The collection map's layout: fitting two principal axes to a model version's embeddings (in the background, once
per version) and placing every work along them — the whole catalogue when the layout is computed, and each work
classified afterwards as its prediction is stored, with the same axes.

PCA rather than UMAP (docs/map.md): it is deterministic, its two axes are kept in the layout, and placing a new
work is one inner product per axis, which PostgreSQL computes next to the stored embedding — so the map takes in
new works as they arrive instead of being computed again. The axes are fitted on a sample; placing a million works
is one ``INSERT … SELECT`` that never brings an embedding into Python.
"""

from __future__ import annotations

import gzip
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from celery import current_app
from django.db import connection, transaction
from django.utils import timezone

from catalogue.models import EMBEDDING_DIMENSIONS, MapLayout, MapPoint, Prediction
from catalogue.selectors.artworks import artwork_types
from catalogue.selectors.maps import map_points_body, map_points_key, map_points_stored
from inference.models import ModelVersion
from inference.selectors import model_version_active

logger = logging.getLogger(__name__)

#: Sent by name: services must not import the tasks module that calls them.
MAP_LAYOUT_TASK = "catalogue.tasks.map_layout_compute"
MAP_POINTS_TASK = "catalogue.tasks.map_points_build"
#: A build of the points that took less than this is made again inside the request that finds it stale (small
#: catalogues: always current); a slower one (a million works) is made in the background meanwhile.
INLINE_BUILD_SECONDS = 0.5
#: Embeddings the axes are fitted on: the two main axes of 128-d embeddings settle long before this (docs/map.md).
FIT_SAMPLE = 50_000


class EmbeddingsIncomplete(Exception):
    """The version is still re-embedding the catalogue: a layout fitted now would miss most works."""


@dataclass(frozen=True)
class PcaFit:
    mean: np.ndarray  # (d,)
    components: np.ndarray  # (2, d), unit rows
    explained_variance: tuple[float, float]  # share of the variance along each axis


def pca_fit(vectors: np.ndarray) -> PcaFit:
    """The mean and first two principal axes of the rows.

    The axes come from the SVD of the small d × d scatter matrix rather than of the n × d data: the same vectors,
    far cheaper for 50,000 × 128. Each axis's sign is fixed so that its largest loading is positive, so the same
    data always gives the same picture.
    """
    x = np.asarray(vectors, dtype=np.float64)
    n, d = x.shape
    if n == 0:
        return PcaFit(mean=np.zeros(d), components=np.zeros((2, d)), explained_variance=(0.0, 0.0))
    mean = x.mean(axis=0)
    centred = x - mean
    _, variance, vt = np.linalg.svd(centred.T @ centred)
    components = np.zeros((2, d))
    k = min(2, vt.shape[0])
    components[:k] = vt[:k]
    for i in range(k):
        if components[i, np.argmax(np.abs(components[i]))] < 0:
            components[i] *= -1
    total = float(variance.sum())
    explained = [float(variance[i] / total) if total > 0 and i < len(variance) else 0.0 for i in range(2)]
    return PcaFit(mean=mean, components=components, explained_variance=(explained[0], explained[1]))


def map_layout_request(*, version: ModelVersion, force: bool = False) -> MapLayout:
    """Ask for ``version``'s layout to be computed in the background (sent once the transaction commits).

    Without ``force`` a layout that is ready, queued or running is left as it is; a failed one is tried again.
    """
    layout, created = MapLayout.objects.defer("points_gzip").get_or_create(model_version=version)
    if created or force or layout.status == MapLayout.Status.FAILED:
        MapLayout.objects.filter(pk=layout.pk).update(status=MapLayout.Status.QUEUED, error="")
        layout.status, layout.error = MapLayout.Status.QUEUED, ""
        version_id = version.pk
        transaction.on_commit(lambda: map_layout_enqueue(version_id=version_id))
    return layout


def map_layout_enqueue(*, version_id: int) -> None:
    """Send the layout task (logged, not raised, when the broker is down: the beat's ``map_layout_if_missing`` or the
    map page's button asks again)."""
    _send(MAP_LAYOUT_TASK, version_id)


def map_layout_request_if_missing() -> MapLayout | None:
    """Ask for the active version's layout if it has none (the beat runs this, so activating a version by any path
    — the Models page, ``activate_model``, the end of a re-embedding — gets its map within minutes)."""
    version = model_version_active()
    if version is None or MapLayout.objects.filter(model_version=version).exists():
        return None
    return map_layout_request(version=version)


def map_layout_compute(*, version: ModelVersion, sample_size: int = FIT_SAMPLE) -> MapLayout:
    """Fit the axes on a sample of ``version``'s embeddings and place every work it has classified. Idempotent: a
    second run computes the same layout again. Raises :class:`EmbeddingsIncomplete` while the version re-embeds."""
    if version.status == ModelVersion.Status.EMBEDDING:
        raise EmbeddingsIncomplete(version.version)
    layout, _ = MapLayout.objects.defer("points_gzip").get_or_create(model_version=version)
    MapLayout.objects.filter(pk=layout.pk).update(status=MapLayout.Status.RUNNING, error="")
    started_at, started = timezone.now(), time.perf_counter()
    try:
        sample = _embedding_sample(version=version, size=sample_size)
        fit = pca_fit(sample)
        layout.mean, layout.components = fit.mean.tolist(), fit.components.tolist()
        with transaction.atomic():
            MapPoint.objects.filter(layout=layout).delete()
            placed = _points_place(layout=layout, artwork_ids=None)
            layout.status, layout.error = MapLayout.Status.READY, ""
            layout.explained_variance = list(fit.explained_variance)
            layout.sample_size = len(sample)
            layout.placed, layout.computed_at = placed, timezone.now()
            layout.seconds = time.perf_counter() - started
            layout.save()
    except Exception as exc:
        MapLayout.objects.filter(pk=layout.pk).update(status=MapLayout.Status.FAILED, error=str(exc)[:2000])
        raise
    # Works classified while the layout was computed were placed with the old axes, or not at all: place them again.
    recent = Prediction.objects.filter(model_version=version, created_at__gte=started_at)
    _points_place(layout=layout, artwork_ids=list(recent.values_list("artwork_id", flat=True)))
    return map_points_build(layout=layout)  # so the first look at the map finds it ready


@dataclass(frozen=True)
class MapPointsServed:
    gzipped: bytes
    etag: str
    count: int
    build_seconds: float
    current: bool  # False: a build from a moment ago, while a newer one is made


def map_points_build(*, layout: MapLayout) -> MapLayout:
    """Build the layout's points as the page downloads them and store them on the layout. Idempotent."""
    types = artwork_types()
    key = map_points_key(layout=layout, types=types)
    started = time.perf_counter()
    body, count = map_points_body(layout=layout, version=layout.model_version, types=types)
    layout.points_gzip = gzip.compress(body, compresslevel=6)
    layout.points_key, layout.points_count = key, count
    layout.points_seconds = time.perf_counter() - started
    MapLayout.objects.filter(pk=layout.pk).update(
        points_gzip=layout.points_gzip,
        points_key=key,
        points_count=count,
        points_seconds=layout.points_seconds,
    )
    return layout


def map_points_current(*, version: ModelVersion) -> MapPointsServed:
    """The version's points for the page: the stored build when it is current; otherwise built now when that is
    quick (or nothing was built yet), else the stored build at once while a newer one is made in the background
    (asked for once per change: the first request to see the change claims it)."""
    layout = MapLayout.objects.filter(model_version=version).defer("points_gzip").first()
    if layout is None or not layout.components:
        body, count = map_points_body(layout=None, version=version, types=artwork_types())
        return MapPointsServed(
            gzipped=gzip.compress(body), etag='"none"', count=count, build_seconds=0.0, current=True
        )
    key = map_points_key(layout=layout, types=artwork_types())
    current = layout.points_key == key
    if not current and (not layout.points_key or layout.points_seconds < INLINE_BUILD_SECONDS):
        layout = map_points_build(layout=layout)
        return MapPointsServed(
            gzipped=bytes(layout.points_gzip),
            etag=f'"{layout.points_key}"',
            count=layout.points_count,
            build_seconds=layout.points_seconds,
            current=True,
        )
    if not current and MapLayout.objects.filter(pk=layout.pk).exclude(points_requested_key=key).update(
        points_requested_key=key
    ):
        layout_id = layout.pk
        transaction.on_commit(lambda: _send(MAP_POINTS_TASK, layout_id))
    return MapPointsServed(
        gzipped=map_points_stored(layout=layout),
        etag=f'"{layout.points_key}"',
        count=layout.points_count,
        build_seconds=layout.points_seconds,
        current=current,
    )


def _send(task: str, object_id: int) -> None:
    try:
        current_app.send_task(task, args=[object_id], retry=False)
    except Exception:  # kombu raises OperationalError, redis ConnectionError, socket errors...
        logger.warning("broker unreachable: %s(%s) not queued", task, object_id, exc_info=True)


def map_points_place(*, model_version: ModelVersion, artwork_ids: Sequence[int]) -> int:
    """Place works whose prediction by ``model_version`` was just stored, with the version's layout's axes
    (called by :func:`catalogue.services.classification.prediction_store`). Returns the number placed.

    Without a layout nothing is placed; for the active version one is then asked for, and will place every work.
    """
    layout = (
        MapLayout.objects.filter(model_version=model_version)
        .exclude(components=[])
        .only("pk", "model_version_id", "mean", "components")
        .first()
    )
    if layout is None:
        if model_version.status == ModelVersion.Status.ACTIVE:
            map_layout_request(version=model_version)
        return 0
    return _points_place(layout=layout, artwork_ids=list(artwork_ids))


def _vector_literal(values: np.ndarray) -> str:
    return "[" + ",".join(f"{float(v):.9g}" for v in values) + "]"


def _points_place(*, layout: MapLayout, artwork_ids: list[int] | None) -> int:
    """Write (or move) the points of the layout's version's predictions — all of them, or those of ``artwork_ids``.

    The one definition of a work's place: ``x = (embedding − mean) · axis₁``, ``y = (embedding − mean) · axis₂``,
    computed by pgvector next to the stored embedding (``<#>`` is the negated inner product).
    """
    if artwork_ids is not None and not artwork_ids:
        return 0
    mean = np.asarray(layout.mean, dtype=np.float64)
    components = np.asarray(layout.components, dtype=np.float64)
    offsets = components @ mean
    only = "AND p.artwork_id = ANY(%s)" if artwork_ids is not None else ""
    sql = f"""
        INSERT INTO {MapPoint._meta.db_table} (layout_id, prediction_id, x, y)
        SELECT %s, p.id, -(p.embedding <#> %s::vector) - %s, -(p.embedding <#> %s::vector) - %s
        FROM {Prediction._meta.db_table} p
        WHERE p.model_version_id = %s {only}
        ON CONFLICT (prediction_id) DO UPDATE SET x = EXCLUDED.x, y = EXCLUDED.y, layout_id = EXCLUDED.layout_id
    """  # noqa: S608 — table names from the models; every value is a parameter
    params: list[Any] = [
        layout.pk,
        _vector_literal(components[0]),
        float(offsets[0]),
        _vector_literal(components[1]),
        float(offsets[1]),
        layout.model_version_id,
    ]
    if artwork_ids is not None:
        params.append(list(artwork_ids))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


def _embedding_sample(*, version: ModelVersion, size: int) -> np.ndarray:
    """Up to ``size`` of the version's embeddings: all of them in a small catalogue; in a large one a sample of the
    table's rows (TABLESAMPLE BERNOULLI, REPEATABLE: the same sample each time). Rows, not pages (SYSTEM): a page
    sample of a small table can miss every row of the version, and the full scan costs seconds at a million works,
    in the background."""
    table = Prediction._meta.db_table
    mine = Prediction.objects.filter(model_version=version).count()
    if mine <= size:
        sql = f"SELECT vector_send(embedding) FROM {table} WHERE model_version_id = %s"  # noqa: S608
        params: list[Any] = [version.pk]
    else:
        # The table holds rows of every version: sample enough to find about 1.3 × size of this version's.
        percent = min(100.0, 100.0 * 1.3 * size / mine)
        sql = (
            f"SELECT vector_send(embedding) FROM {table} TABLESAMPLE BERNOULLI (%s) REPEATABLE (17) "  # noqa: S608
            "WHERE model_version_id = %s LIMIT %s"
        )
        params = [percent, version.pk, size]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if not rows:
        return np.zeros((0, EMBEDDING_DIMENSIONS))
    # pgvector's binary form: int16 dimensions, int16 unused, then big-endian float4s.
    return np.stack([np.frombuffer(bytes(row[0]), dtype=">f4", offset=4) for row in rows])
