"""A large catalogue, fast, for ``bench_api``: synthetic ready artworks with realistic embeddings (the model's own
embeddings of generated pictures, scattered around them), written with ``bulk_create``; no file is decoded and no
worker runs. These are benchmark fixtures, not catalogue entries: the import services are for real images."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.utils import timezone
from rich.progress import Progress

from bench.pictures import jpeg_bytes, synthetic_picture
from catalogue.models import Artwork, ArtworkType, Prediction, prediction_uncertainty
from catalogue.services.artworks import thumbnail_bytes
from catalogue.services.moved_embeddings import moved_embeddings_sync

BATCH = 1000
ARTISTS = ["Rembrandt", "Hals", "Vermeer", "Dürer", "Goya", "Hokusai", "Unknown"]


class _Embeddings:
    """Realistic predictions: the model's outputs for 64 varied pictures, each the centre of a cloud of works."""

    def __init__(self, version: Any, classifier: Any, seed: int) -> None:
        anchors = [synthetic_picture(10_000 + i, (224, 224)) for i in range(64)]
        self.probabilities, self.embeddings = classifier.predict_images(anchors)
        self.version, self.classes = version, classifier.classes
        self.rng = np.random.default_rng(seed)
        self.types = {t.slug: t for t in ArtworkType.objects.all()}

    def predictions(self, artwork_ids: list[int]) -> list[Prediction]:
        rng, embeddings = self.rng, self.embeddings
        n = len(artwork_ids)
        picks = rng.integers(0, len(embeddings), n)
        noise = rng.normal(0, 1, (n, embeddings.shape[1])).astype(np.float32)
        spread = 0.35 / np.sqrt(embeddings.shape[1]) * rng.uniform(0.5, 2.0, (n, 1))
        vectors = embeddings[picks] + noise * spread
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        probs = self.probabilities[picks] + rng.dirichlet(np.ones(len(self.classes)) * 0.5, n) * 0.3
        probs /= probs.sum(axis=1, keepdims=True)
        return [
            Prediction(
                artwork_id=artwork_id,
                model_version=self.version,
                predicted_type=self.types[self.classes[int(np.argmax(p))]],
                confidence=float(p.max()),
                probabilities={c: round(float(x), 6) for c, x in zip(self.classes, p, strict=True)},
                embedding=v,
                **prediction_uncertainty(p),
            )
            for artwork_id, p, v in zip(artwork_ids, probs, vectors, strict=True)
        ]


def catalogue_seed(*, version: Any, classifier: Any, target: int) -> int:
    """Top the catalogue up to ``target`` ready artworks with embeddings of ``version``; returns the count.

    Ready artworks that lack a prediction of this version (seeded for another version) get one first; new
    synthetic rows make up the rest.
    """
    ready = Artwork.objects.filter(status=Artwork.Status.READY)
    have = Prediction.objects.filter(model_version=version, artwork__status=Artwork.Status.READY).count()
    if have >= target:
        return have
    done = Prediction.objects.filter(model_version=version).values("artwork_id")
    lacking = list(ready.exclude(pk__in=done).order_by("pk").values_list("pk", flat=True)[: target - have])
    new = target - have - len(lacking)
    embeddings = _Embeddings(version, classifier, seed=have)
    with Progress(transient=True) as progress:
        task = progress.add_task("Seeding the catalogue", total=len(lacking) + new)
        for start in range(0, len(lacking), BATCH):
            Prediction.objects.bulk_create(embeddings.predictions(lacking[start : start + BATCH]))
            progress.advance(task, len(lacking[start : start + BATCH]))
        if new:
            _artworks_add(new, embeddings, lambda n: progress.advance(task, n))
    # Predictions written past prediction_store (bulk_create): the moved works' embeddings of the whole catalogue.
    moved_embeddings_sync(artwork_ids=None)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalogue_artwork")
        cursor.execute("ANALYZE catalogue_prediction")
    return Prediction.objects.filter(model_version=version, artwork__status=Artwork.Status.READY).count()


def _artworks_add(new: int, embeddings: _Embeddings, advance: Any) -> None:
    """``new`` synthetic ready artworks with their predictions, a thousand per transaction."""
    files = shared_files()
    serial = Artwork.objects.count()
    now = timezone.now()
    for start in range(0, new, BATCH):
        rows = []
        for _ in range(min(BATCH, new - start)):
            image_name, thumb = files[serial % len(files)]
            rows.append(
                Artwork(
                    title=f"Bench work {serial:06d}",
                    artist=ARTISTS[serial % len(ARTISTS)],
                    accession_number=f"BENCH-{uuid.uuid4().hex[:16]}",
                    image=image_name,
                    thumbnail=thumb,
                    sha256=hashlib.sha256(uuid.uuid4().bytes).hexdigest(),
                    width=300,
                    height=320,
                    file_size=20_000,
                    status=Artwork.Status.READY,
                    processed_at=now,
                )
            )
            serial += 1
        with transaction.atomic():
            created = Artwork.objects.bulk_create(rows)
            Prediction.objects.bulk_create(embeddings.predictions([a.pk for a in created]))
        advance(len(rows))


def shared_files() -> list[tuple[str, str]]:
    """A few real files that every synthetic row points to (similar works' URLs and ?inline=1 need files)."""
    files = []
    for i in range(16):
        picture = synthetic_picture(20_000 + i)
        image_name = default_storage.save(f"bench/{i:02d}.jpg", ContentFile(jpeg_bytes(picture)))
        thumb = default_storage.save(f"bench/{i:02d}-thumb.jpg", ContentFile(thumbnail_bytes(picture)))
        files.append((image_name, thumb))
    return files
