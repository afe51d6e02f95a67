"""The collection map: a model version's layout and every placed work, as the page draws them.

The points go to the browser as one compact binary (:func:`map_points_body`), built from the database with a binary
``COPY`` read by NumPy and stored gzipped on the layout (:func:`catalogue.services.maps.map_points_current`), so a
million works cost the browser about 10 bytes each (about half of that gzipped) and the server a build in the
background every few minutes at most.

The binary, little-endian::

    b"AMP1", uint32 n, uint32 h, h bytes of JSON (the header, padded with spaces to a multiple of 4),
    uint32[n] artwork id deltas (ascending ids; the first is the id itself), uint16[n] x, uint16[n] y,
    uint8[n] type (index into header["types"], 255: none), uint8[n] provenance (index into header["provenances"])

x and y are the layout's coordinates scaled into 0..65535 by ``origin`` and ``span`` in the header:
``layout x = origin[0] + x / 65535 × span`` (the same for y), which is what the catalogue's ``map_box`` filter takes.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from django.core.cache import cache
from django.db import connection
from django.db.models import Case, IntegerField, Max, Q, QuerySet, Subquery, Value, When
from django.urls import reverse

from catalogue.models import (
    Artwork,
    ArtworkType,
    LabelCorrection,
    MapLayout,
    MapPoint,
    Prediction,
    effective_type,
)
from catalogue.selectors.artworks import Tally, count_capped
from inference.models import ModelVersion

MAGIC = b"AMP1"
QUANT = 65535
NO_TYPE = 255
#: Provenance codes in the binary: no label (the type is the model's), then the label's provenance.
PROVENANCES = ["none", *Artwork.Provenance.values]
#: How long a built binary is served before it is built again even when nothing it watches changed (a work deleted
#: or failed): a page may show the map as it was a moment ago.
MAP_POINTS_MAX_AGE = 300
#: Most works :func:`map_works` describes in one call (thumbnails drawn when zoomed in close).
MAP_WORKS_LIMIT = 500


def map_layout_of(*, version: ModelVersion | None) -> MapLayout | None:
    if version is None:
        return None
    return MapLayout.objects.filter(model_version=version).defer("points_gzip").first()


def map_points_key(*, layout: MapLayout, types: Sequence[ArtworkType]) -> str:
    """What a build of the layout's points depends on, as a short key (the binary's ETag). It changes when the layout
    is computed again, a work is placed, a label changes or a type is added — each an index lookup — and at least
    every ``MAP_POINTS_MAX_AGE`` seconds for what none of those catch (a work deleted or failed)."""
    parts = [
        layout.pk,
        layout.computed_at.isoformat() if layout.computed_at else "",
        MapPoint.objects.aggregate(m=Max("id"))["m"],
        LabelCorrection.objects.aggregate(m=Max("id"))["m"],
        [t.pk for t in types],
        int(time.time() // MAP_POINTS_MAX_AGE),
    ]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:32]


def map_points_stored(*, layout: MapLayout) -> bytes:
    """The layout's last build, gzipped (kept in this process's cache under its key: a million works are 5 MB)."""
    key = f"map-points:{layout.pk}:{layout.points_key}"
    body = cache.get(key)
    if body is None:
        body = bytes(MapLayout.objects.filter(pk=layout.pk).values_list("points_gzip", flat=True).get())
        cache.set(key, body, MAP_POINTS_MAX_AGE)
    return body


def _points_query(*, layout: MapLayout) -> QuerySet[Any]:
    """(artwork id, x, y, effective type id, provenance code) of every ready work on the layout."""
    provenance = Case(
        When(artwork__curator_type__isnull=True, then=Value(0)),
        *(
            When(artwork__label_provenance=p, then=Value(PROVENANCES.index(p)))
            for p in Artwork.Provenance.values
        ),
        default=Value(0),
        output_field=IntegerField(),
    )
    return (
        Prediction.objects.filter(
            model_version_id=layout.model_version_id,
            artwork__status=Artwork.Status.READY,
            map_point__layout=layout,
        )
        .order_by()  # sorted in NumPy: cheaper than a sort of a million rows in PostgreSQL's work_mem
        .values_list(
            "artwork_id",
            "map_point__x",
            "map_point__y",
            effective_type(curator_type="artwork__curator_type_id", predicted_type="predicted_type_id"),
            provenance,
        )
    )


def _copy_rows(queryset: QuerySet[Any], kinds: str) -> np.ndarray:
    """The rows of ``queryset`` (no NULLs, fixed-width columns of the given kinds: i integer, f float) through a
    binary COPY into a NumPy record array — about 20× faster than fetching a million tuples."""
    sql, params = queryset.query.sql_with_params()
    buffer = io.BytesIO()
    with connection.cursor() as cursor:
        query = cursor.mogrify(sql, params)
        query = query.decode() if isinstance(query, bytes) else query
        cursor.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT binary)", buffer)
    data = buffer.getvalue()
    start = 19  # signature (11), flags (4), header extension length (4, zero)
    if len(data) <= start + 2:
        return np.zeros(0, dtype=[(f"v{i}", "<f8") for i in range(len(kinds))])
    # The first row gives each column's width (the types PostgreSQL chose: int4/int8, float4/float8).
    fields: list[tuple[str, str]] = [("count", ">i2")]
    offset = start + 2
    for i, kind in enumerate(kinds):
        (width,) = struct.unpack_from(">i", data, offset)
        fields += [(f"l{i}", ">i4"), (f"v{i}", f">{kind}{width}")]
        offset += 4 + width
    record = np.dtype(fields)
    rows = (len(data) - start - 2) // record.itemsize
    return np.frombuffer(data, dtype=record, count=rows, offset=start)


def map_points_body(
    *, layout: MapLayout | None, version: ModelVersion, types: Sequence[ArtworkType]
) -> tuple[bytes, int]:
    """Every ready work placed on ``layout`` as the binary above, and how many (an empty map without a layout)."""
    header: dict[str, Any] = {
        "version": version.version,
        "status": layout.status if layout else "missing",
        "types": [t.pk for t in types],
        "provenances": PROVENANCES,
        "origin": [0.0, 0.0],
        "span": 1.0,
    }
    rows = _copy_rows(_points_query(layout=layout), "iffii") if layout is not None else None
    if rows is None or len(rows) == 0:
        return _pack(header, [], 0), 0
    rows = rows[np.argsort(rows["v0"], kind="stable")]
    ids = rows["v0"].astype(np.int64)
    x, y = rows["v1"].astype(np.float64), rows["v2"].astype(np.float64)
    low = np.array([x.min(), y.min()])
    extent = np.array([x.max(), y.max()]) - low
    span = float(extent.max()) or 1.0
    origin = low - (span - extent) / 2  # centre the shorter axis
    header["origin"], header["span"] = origin.tolist(), span
    lookup = np.full(max([t.pk for t in types], default=0) + 1, NO_TYPE, dtype=np.uint8)
    lookup[[t.pk for t in types]] = np.arange(len(types), dtype=np.uint8)
    type_ids = rows["v3"].astype(np.int64)
    known = type_ids < len(lookup)
    type_index = np.where(known, lookup[np.where(known, type_ids, 0)], NO_TYPE).astype(np.uint8)
    arrays = [
        np.diff(ids, prepend=0).astype("<u4"),
        np.clip(np.rint((x - origin[0]) / span * QUANT), 0, QUANT).astype("<u2"),
        np.clip(np.rint((y - origin[1]) / span * QUANT), 0, QUANT).astype("<u2"),
        type_index,
        rows["v4"].astype(np.uint8),
    ]
    return _pack(header, arrays, len(ids)), len(ids)


def _pack(header: dict[str, Any], arrays: list[np.ndarray], count: int) -> bytes:
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)  # keeps the uint32 ids aligned for a typed-array view
    return b"".join([MAGIC, struct.pack("<II", count, len(text)), text, *(a.tobytes() for a in arrays)])


def map_works(*, ids: Sequence[int]) -> list[dict[str, Any]]:
    """Title, artist, thumbnail and page of the given works (those that exist), for the map's hover and the
    thumbnails it draws when zoomed in close."""
    prefix, suffix = reverse("catalogue:artwork-detail", args=[0]).rsplit("0", 1)
    works = Artwork.objects.filter(pk__in=list(ids)[:MAP_WORKS_LIMIT]).only("title", "artist", "thumbnail")
    return [
        {
            "id": work.pk,
            "title": work.title,
            "artist": work.artist,
            "thumbnail": work.thumbnail.url if work.thumbnail else "",
            "url": f"{prefix}{work.pk}{suffix}",
        }
        for work in works.order_by("pk")
    ]


def map_box_count(*, box: tuple[float, float, float, float]) -> Tally:
    """How many works lie inside ``box`` on the active version's layout, counted up to the catalogue's cap
    (:func:`catalogue.selectors.artworks.count_capped`) from the (layout, x, y) index alone: one point per work (a
    point is its prediction's, and a work has one prediction per version), so this is the count of the catalogue
    filtered by the box alone, without a lookup per work."""
    x0, y0, x1, y1 = box
    points = MapPoint.objects.filter(
        layout_id=Subquery(_active_layout()), x__gte=x0, x__lte=x1, y__gte=y0, y__lte=y1
    )
    return count_capped(points)


def _active_layout() -> QuerySet[Any]:
    return MapLayout.objects.filter(model_version__status=ModelVersion.Status.ACTIVE).values("pk")[:1]


def map_box_condition(*, box: tuple[float, float, float, float]) -> Q:
    """The works placed inside ``box`` (x0, y0, x1, y1, in layout units) on the active version's layout, as a condition
    on a queryset of artworks (the catalogue's ``map_box`` filter).

    A condition through each work's predictions and their points rather than a list of the box's ids, so PostgreSQL
    can take either road, by the box's size, which it estimates from the points' x and y statistics (the principal
    axes are uncorrelated, so the product of the two is a fair estimate): a box holding a few works is a range scan
    of the (layout, x, y) index, then their artworks; a box holding many is the catalogue's own order (the
    ``(created_at, id)`` index) walked until a page is full, each work looked up in the box (its prediction, then its
    point) — at 3 % of the works, about 24 / 0.03 = 800 works visited for a first page instead of every work in the
    box fetched and sorted. The active layout is one row, read by a subquery whose result leads the index range.
    A point belongs to the layout of its prediction's version, so a work matches once.
    """
    x0, y0, x1, y1 = box
    return Q(
        predictions__map_point__layout_id=Subquery(_active_layout()),
        predictions__map_point__x__gte=x0,
        predictions__map_point__x__lte=x1,
        predictions__map_point__y__gte=y0,
        predictions__map_point__y__lte=y1,
    )
