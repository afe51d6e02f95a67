"""The collection map: every ready work's embedding projected to two dimensions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.db.models import (
    BinaryField,
    Func,
)

from catalogue.models import Artwork, Prediction, effective_type
from inference.models import ModelVersion
from inference.selectors import model_version_active


@dataclass(frozen=True)
class MapPoint:
    artwork_id: int
    title: str
    x: float  # 0..1, left to right
    y: float  # 0..1, top to bottom
    type_id: int | None  # the effective type
    curated: bool


@dataclass(frozen=True)
class CollectionMap:
    version: ModelVersion | None
    points: list[MapPoint]
    total: int  # ready works with an embedding of this version (points holds a sample when there are more)
    explained_variance: tuple[float, float]  # share of the variance along each of the two axes

    @property
    def sampled(self) -> bool:
        return len(self.points) < self.total


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """Project rows onto their first two principal components.

    The components come from the SVD of the small d × d scatter matrix rather than of the n × d data: the same
    vectors (its singular values are the data's squared ones), about 8× cheaper for 5,000 × 128.
    Returns (n × 2 coordinates, explained variance ratio of the two axes). Each axis's sign is fixed so that its
    largest loading is positive, so the same data always gives the same picture.
    """
    x = np.asarray(vectors, dtype=np.float64)
    n = x.shape[0]
    if n == 0:
        return np.zeros((0, 2)), (0.0, 0.0)
    centred = x - x.mean(axis=0, keepdims=True)
    _, variance, vt = np.linalg.svd(centred.T @ centred)
    components = np.zeros((2, x.shape[1]))
    k = min(2, vt.shape[0])
    components[:k] = vt[:k]
    for i in range(k):
        if components[i, np.argmax(np.abs(components[i]))] < 0:
            components[i] *= -1
    coords = centred @ components.T
    total = float(variance.sum())
    explained = [float(variance[i] / total) if total > 0 and i < len(variance) else 0.0 for i in range(2)]
    return coords, (explained[0], explained[1])


def collection_map(*, version: ModelVersion | None = None, limit: int = 5000, seed: int = 0) -> CollectionMap:
    """Every ready artwork's embedding (default: the active version's) projected to 2-D with PCA.

    Above ``limit`` works a fixed random sample of ``limit`` is drawn (the same one each time for a given
    catalogue), since a picture with more points is neither readable nor quick to draw. Coordinates are scaled
    into 0..1 keeping the aspect ratio, so distances on the map stay comparable along both axes.
    """
    version = version if version is not None else model_version_active()
    if version is None:
        return CollectionMap(version=None, points=[], total=0, explained_variance=(0.0, 0.0))
    base = Prediction.objects.filter(model_version=version, artwork__status=Artwork.Status.READY)
    ids = list(base.order_by("artwork_id").values_list("artwork_id", flat=True))
    total = len(ids)
    if total > limit:
        rng = np.random.default_rng(seed)
        ids = sorted(int(i) for i in rng.choice(np.asarray(ids), size=max(0, limit), replace=False))
        base = base.filter(artwork_id__in=ids)
    # The vectors in pgvector's binary form (vector_send: int16 dimensions, int16 unused, big-endian float4s),
    # read with np.frombuffer: the Vector field's text parsing costs ~0.1 ms per row, too much for 5,000 rows.
    rows = list(
        base.order_by("artwork_id")
        .annotate(
            vector_bytes=Func("embedding", function="vector_send", output_field=BinaryField()),
            effective_type_id=effective_type(
                curator_type="artwork__curator_type_id", predicted_type="predicted_type_id"
            ),
        )
        .values_list(
            "artwork_id", "artwork__title", "effective_type_id", "artwork__curator_type_id", "vector_bytes"
        )
    )
    if not rows:
        return CollectionMap(version=version, points=[], total=total, explained_variance=(0.0, 0.0))
    coords, explained = pca_2d(np.stack([np.frombuffer(row[4], dtype=">f4", offset=4) for row in rows]))
    low = coords.min(axis=0)
    span = float((coords.max(axis=0) - low).max()) or 1.0
    extent = (coords.max(axis=0) - low) / span
    # Centre the shorter axis in the unit square.
    scaled = (coords - low) / span + (1.0 - extent) / 2
    points = [
        MapPoint(
            artwork_id=row[0],
            title=row[1],
            x=float(xy[0]),
            y=float(1.0 - xy[1]),
            type_id=row[2],
            curated=row[3] is not None,
        )
        for row, xy in zip(rows, scaled, strict=True)
    ]
    return CollectionMap(version=version, points=points, total=total, explained_variance=explained)
