"""What ``bench_pages``'s newer routes need beyond the seeded catalogue (:mod:`bench.pages_catalogue`), made before
measuring — after a load, and in ``--measure-only`` on a catalogue loaded by an earlier run (or an earlier version
of this command). Every step is idempotent: it checks first and does nothing when its result is there.

* **The map layout** of the active version: computed by the product's own service, the one the background job calls
  (:func:`catalogue.services.maps.map_layout_compute`: PCA on a sample, every work placed with one
  ``INSERT … SELECT``, the points binary built), synchronously, when the version has no ready layout or the layout
  does not place every prediction (a catalogue grown since). Then ``VACUUM ANALYZE`` of the points (index-only range
  scans of a box selection need the visibility map). The one costly step: linear in the catalogue.
* **Near-duplicate pairs** for the triage page: :data:`NEAR_DUPLICATE_WORKS` fixed works (the same at every size)
  get their perceptual hashes, as the catalogue scan gives them (:func:`catalogue.perceptual_hash.image_hashes` of
  the thumbnail, stored as the scan stores it), then the product's search for their other photos
  (:func:`catalogue.services.near_duplicates.near_duplicates_find`) records the pairs. The seeded works share 16
  image files, so works of one file are found as pairs: about 48 open pairs at every size. Seconds.
* **A bulk edit** (the bulk-edits page) of :data:`BULK_EDIT_WORKS` works through
  :func:`catalogue.services.bulk_edits.bulk_edit_apply` (date and a note), which writes their history; and one more
  change to the first of them through :func:`catalogue.services.artworks.artwork_update`, so the artwork whose
  history is timed has three entries. Under a second.

Nothing else is needed: exports stream as they are asked for, the IIIF documents are built per request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from django.db import connection

from catalogue.models import (
    Artwork,
    ArtworkChange,
    BulkEdit,
    LabelCorrection,
    MapLayout,
    MapPoint,
    NearDuplicatePair,
    Prediction,
)
from catalogue.perceptual_hash import image_hashes
from catalogue.services.artworks import artwork_update
from catalogue.services.bulk_edits import BulkValues, bulk_edit_apply
from catalogue.services.maps import map_layout_compute
from catalogue.services.near_duplicates import near_duplicates_find
from inference.models import ModelVersion

#: Works (by id: the seeding makes the same rows at every size) whose other photos are searched for.
NEAR_DUPLICATE_WORKS = range(1001, 1049)
#: Works the bench's bulk edit changes; the first ready one is the work whose history is timed.
BULK_EDIT_WORKS = range(2001, 2025)
BULK_EDIT_NOTE = "bench-pages: a bulk edit for the bulk-edits page"
HISTORY_DESCRIPTION = "bench-pages: a description changed once, for the history."


@dataclass
class SetupStep:
    name: str
    seconds: float
    done: str  # what it did, or why nothing was needed


@dataclass
class PagesSetup:
    """What the routes read from the setup, and what each step cost."""

    history_artwork_id: int
    steps: list[SetupStep] = field(default_factory=list)


def pages_setup_ensure(*, version: ModelVersion, user: Any) -> PagesSetup:
    """Make sure the map layout, the near-duplicate pairs, the bulk edit and the history exist (see the module)."""
    steps = [
        _timed("map layout", lambda: _map_layout_ensure(version=version)),
        _timed("near-duplicate pairs", _near_duplicates_ensure),
        _timed("bulk edit and history", lambda: _bulk_edit_ensure(user=user)),
    ]
    history = _history_work()
    if history is None:
        raise RuntimeError(f"None of the works {BULK_EDIT_WORKS.start}..{BULK_EDIT_WORKS.stop - 1} is ready.")
    return PagesSetup(history_artwork_id=history.pk, steps=steps)


def _history_work() -> Artwork | None:
    """The first ready work of the bulk edit: the one whose history is timed."""
    return (
        Artwork.objects.filter(pk__in=list(BULK_EDIT_WORKS), status=Artwork.Status.READY)
        .order_by("pk")
        .first()
    )


def _timed(name: str, step: Any) -> SetupStep:
    started = time.perf_counter()
    done = step()
    return SetupStep(name=name, seconds=time.perf_counter() - started, done=done)


def _map_layout_ensure(*, version: ModelVersion) -> str:
    layout = MapLayout.objects.filter(model_version=version).defer("points_gzip").first()
    predictions = Prediction.objects.filter(model_version=version).count()
    placed = MapPoint.objects.filter(layout=layout).count() if layout is not None else 0
    ready = layout is not None and layout.status == MapLayout.Status.READY and bool(layout.components)
    if ready and placed == predictions:
        return f"ready already ({placed:,} works placed)"
    started = time.perf_counter()
    layout = map_layout_compute(version=version)
    computed = time.perf_counter() - started
    with connection.cursor() as cursor:
        # VACUUM cannot run in a transaction (a test's); ANALYZE alone then.
        vacuum = "ANALYZE" if connection.in_atomic_block else "VACUUM ANALYZE"
        cursor.execute(f"{vacuum} {MapPoint._meta.db_table}")
    return (
        f"computed by map_layout_compute in {computed:.1f} s: {layout.placed:,} works placed "
        f"(axes fitted on {layout.sample_size:,}, points binary of {layout.points_count:,} built in "
        f"{layout.points_seconds:.1f} s), then VACUUM ANALYZE of the points"
    )


def _near_duplicates_ensure() -> str:
    works = list(
        Artwork.objects.filter(pk__in=list(NEAR_DUPLICATE_WORKS), status=Artwork.Status.READY).order_by("pk")
    )
    ids = [w.pk for w in works]
    open_pairs = NearDuplicatePair.objects.filter(
        status=NearDuplicatePair.Status.OPEN, artwork_a_id__in=ids, artwork_b_id__in=ids
    ).count()
    if open_pairs and all(w.phash is not None for w in works):
        return f"{open_pairs} open pairs already"
    hashes: dict[str, Any] = {}  # the seeded works share a few thumbnails: hash each file once
    for work in works:
        name = str(work.thumbnail.name or work.image.name)
        if name not in hashes:
            from PIL import Image  # noqa: PLC0415  # only this step decodes images

            with work.thumbnail.storage.open(name, "rb") as handle, Image.open(handle) as image:
                hashes[name] = image_hashes(image)
        found = hashes[name]
        Artwork.objects.filter(pk=work.pk).update(phash=found.phash, phash_turns=list(found.turns))
    recorded = near_duplicates_find(artwork_ids=ids, found_by=NearDuplicatePair.Found.SCAN)
    return f"{len(ids)} works hashed, near_duplicates_find recorded {recorded} pairs"


def _bulk_edit_ensure(*, user: Any) -> str:
    done = []
    if not BulkEdit.objects.filter(values__note=BULK_EDIT_NOTE).exists():
        ids = list(BULK_EDIT_WORKS)
        bulk_edit = bulk_edit_apply(
            artworks=Artwork.objects.filter(pk__in=ids),
            values=BulkValues(date="c. 1650", note=BULK_EDIT_NOTE),
            selection={"ids": ids},
            user=user,
            source=LabelCorrection.Source.PORTAL,
        )
        done.append(f"bulk_edit_apply changed {bulk_edit.changed} works")
    work = _history_work()
    if (
        work is not None
        and not ArtworkChange.objects.filter(artwork_ref=work.pk, field="description").exists()
    ):
        artwork_update(
            artwork=work, user=user, source=LabelCorrection.Source.PORTAL, description=HISTORY_DESCRIPTION
        )
        done.append(f"artwork_update gave work {work.pk} a description")
    return "; ".join(done) or "there already"
