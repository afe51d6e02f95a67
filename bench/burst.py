"""The burst mode of ``make loadtest`` (``loadtest --burst``): N uploads at once through the API with no browsing,
timed until every work is ready, beside the bulk import's end-to-end rate measured in the same run on the same
kind of images (``import_artworks`` in this process, into the same site).

The worker's rate is read from the database: the works' ``processed_at`` (written when each batch is stored)
against the moment the first upload was accepted, so it counts only what the workers did, not the polling.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.db import close_old_connections, transaction
from django.db.models import Max, Min
from django.utils import timezone

from catalogue.importing import artworks_import
from catalogue.models import Artwork
from catalogue.services.artworks import artwork_create
from catalogue.services.classification import classification_enqueue
from inference.loader import get_classifier
from inference.selectors import model_version_active


@dataclass(frozen=True)
class ImportRate:
    images: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0


def import_rate_measure(*, images: list[bytes], prefix: str) -> ImportRate:
    """Import ``images`` (as files of a temporary folder) into this site with the bulk import, classifying in
    this process as ``import_artworks`` does; returns its end-to-end rate (read, check, store, classify)."""
    version = model_version_active()
    if version is not None:
        get_classifier(version.version)  # loaded before the clock starts, as in a worker that is already up
    with tempfile.TemporaryDirectory(prefix="artsite-burst-") as folder:
        for n, data in enumerate(images):
            Path(folder, f"{prefix}-{n:03d}.jpg").write_bytes(data)
        started = time.perf_counter()
        result = artworks_import(folder=Path(folder), workers=os.cpu_count() or 1)
        seconds = time.perf_counter() - started
    return ImportRate(images=result.imported, seconds=seconds)


@dataclass(frozen=True)
class WorkerRate:
    ready: int
    first_accepted: datetime
    first_processed: datetime | None
    last_processed: datetime | None

    @property
    def seconds_to_all_ready(self) -> float:
        if self.last_processed is None:
            return 0.0
        return (self.last_processed - self.first_accepted).total_seconds()

    @property
    def per_second(self) -> float:
        return self.ready / self.seconds_to_all_ready if self.seconds_to_all_ready else 0.0


def worker_rate_read(*, artwork_ids: list[int], first_accepted: datetime) -> WorkerRate:
    close_old_connections()
    works = Artwork.objects.filter(pk__in=artwork_ids, status=Artwork.Status.READY)
    span = works.aggregate(first=Min("processed_at"), last=Max("processed_at"))
    return WorkerRate(
        ready=works.count(),
        first_accepted=first_accepted,
        first_processed=span["first"],
        last_processed=span["last"],
    )


def worker_backlog_measure(*, images: list[bytes], prefix: str, timeout: float) -> WorkerRate:
    """The workers' own rate on a backlog: store ``images`` as artworks (the upload's service, unqueued), then
    queue them all at once and time until the last is ready. Uploads through a busy web server arrive slower
    than a worker classifies them, so the burst alone measures the web servers; this measures the workers."""
    ids = []
    for n, data in enumerate(images):
        with transaction.atomic():
            ids.append(artwork_create(data=data, title=f"{prefix} #{n:03d}", enqueue=False).pk)
    started = timezone.now()
    classification_enqueue(artwork_ids=ids)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        close_old_connections()
        if not Artwork.objects.filter(pk__in=ids).exclude(status=Artwork.Status.READY).exists():
            break
        time.sleep(0.2)
    return worker_rate_read(artwork_ids=ids, first_accepted=started)
