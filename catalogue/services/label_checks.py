"""Label checks: the mislabel detector run over the labelled catalogue, in the background.

A check (:class:`~catalogue.models.LabelCheck`) gives every ready, labelled artwork an out-of-fold prediction over
the labels' types (frozen ImageNet features, k-fold probes: :mod:`inference.label_quality`) and asks confident
learning which labels it doubts; one :class:`~catalogue.models.LabelIssue` per checked artwork records the verdict.
Labels a curator set or confirmed (``Artwork.VERIFIED``) still teach the probes but are never flagged.

One check at a time (a partial unique index); it runs on the long-jobs queue (``ARTSITE_TRAINING_QUEUE``), on
request (:func:`label_check_request`) or when enough labels changed since the last one (:func:`label_check_due`,
from the beat). Features are cached per artwork (:class:`~catalogue.models.ArtworkFeatures`), so a check computes
only the new works'.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
from celery import current_app
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from PIL import Image

from catalogue.models import Artwork, ArtworkFeatures, ArtworkType, LabelCheck, LabelIssue
from catalogue.selectors.label_checks import label_check_active, labels_changed_since_last_check
from inference.label_quality import (
    DEFAULT_METHOD,
    Detection,
    FeatureExtractor,
    Features,
    Method,
    decode_for_features,
    detect,
)
from inference.preprocessing import ImageRejected

logger = logging.getLogger(__name__)

#: Sent by name: services never import the tasks module (``catalogue/tasks.py``).
LABEL_CHECK_TASK = "catalogue.tasks.label_check_run"
#: Works whose features are computed (and stored) per step; progress is written after each.
FEATURE_BATCH = 64
#: First key of the PostgreSQL advisory lock a running check holds (the second is the check's id).
_LOCK_NAMESPACE = 14_001

Progress = Callable[[LabelCheck], None]


class LabelCheckBusy(Exception):
    """Another label check is queued or running; ``check`` is that one."""

    def __init__(self, check: LabelCheck | None) -> None:
        number = f" (#{check.pk}, {check.status})" if check is not None else ""
        super().__init__(f"A label check is already under way{number}; wait for it to finish.")
        self.check = check


class LabelCheckImpossible(Exception):
    """The catalogue cannot be checked yet (too few labelled works per type); the message says what is missing."""


def label_check_request(*, user: Any = None, enqueue: bool = True) -> LabelCheck:
    """Create a queued check and (once committed) send it to the long-jobs worker. Raises :class:`LabelCheckBusy`
    while another one is queued or running. When the broker is down the check stays queued (logged); the periodic
    :func:`label_check_request_if_due` sends it again. ``enqueue=False``: the caller runs it itself."""
    active = label_check_active()
    if active is not None:
        raise LabelCheckBusy(active)
    try:
        with transaction.atomic():
            check = LabelCheck.objects.create(
                requested_by=user if getattr(user, "pk", None) else None,
                folds=DEFAULT_METHOD.folds,
                method=DEFAULT_METHOD.describe(),
                stage="Waiting for the long-jobs worker",
            )
    except IntegrityError:  # another request won the race for the one-at-a-time index
        raise LabelCheckBusy(label_check_active()) from None
    if enqueue:
        transaction.on_commit(lambda: label_check_send(check_id=check.pk))
    return check


def label_check_send(*, check_id: int) -> bool:
    """Send the check to the workers; False (logged) when the broker cannot be reached."""
    try:
        current_app.send_task(
            LABEL_CHECK_TASK, args=[check_id], queue=settings.ARTSITE_TRAINING_QUEUE, retry=False
        )
    except Exception:  # kombu OperationalError, redis ConnectionError, socket errors...
        logger.warning(
            "broker unreachable; label check %s stays queued until the next sweep", check_id, exc_info=True
        )
        return False
    return True


def label_check_due() -> bool:
    """Whether a check should start: none is under way, and either there has never been one and at least
    ``ARTSITE_LABEL_CHECK_MIN_LABELS`` works are labelled, or ``ARTSITE_LABEL_CHECK_AFTER`` works had their label
    added, changed or confirmed since the newest check was requested."""
    if label_check_active() is not None:
        return False
    if not LabelCheck.objects.exists():
        labelled = Artwork.objects.filter(status=Artwork.Status.READY, curator_type__isnull=False).count()
        return labelled >= settings.ARTSITE_LABEL_CHECK_MIN_LABELS
    return labels_changed_since_last_check() >= settings.ARTSITE_LABEL_CHECK_AFTER


def label_check_request_if_due(*, resend_after: timedelta = timedelta(minutes=30)) -> LabelCheck | None:
    """The beat's sweep: send again a check still queued after ``resend_after`` (the broker was down, or lost it),
    else request a new one when :func:`label_check_due`. Returns the check sent, if any."""
    stale = LabelCheck.objects.filter(
        status=LabelCheck.Status.QUEUED, created_at__lt=timezone.now() - resend_after
    ).first()
    if stale is not None:
        label_check_send(check_id=stale.pk)
        return stale
    if not label_check_due():
        return None
    try:
        return label_check_request()
    except LabelCheckBusy:
        return None


@dataclass(frozen=True)
class _Labelled:
    """The labelled catalogue as the check sees it: one row per work, in id order."""

    artwork_ids: np.ndarray
    image_names: list[str]
    labels: np.ndarray  # index into types
    verified: np.ndarray  # bool
    types: list[ArtworkType]


def label_check_run(
    *, check_id: int, extractor: Features | None = None, progress: Progress | None = None
) -> LabelCheck:
    """Run a queued check to the end: DONE with one LabelIssue per checked work, or FAILED with the reason.

    Idempotent: a finished check is returned as it is; a check left running by a worker that died starts over
    (its partial rows are replaced); a check another process is running right now is left to it. ``extractor``
    (default: the product's frozen ImageNet features) and ``progress`` (called after every progress write) are
    for the command line and the tests. Raises ``LabelCheck.DoesNotExist`` for an unknown id.
    """
    check = LabelCheck.objects.get(pk=check_id)
    if check.status not in LabelCheck.ACTIVE:
        return check
    with _exclusive(check_id) as acquired:
        if not acquired:
            return check  # another process runs it now
        check.refresh_from_db()
        if check.status not in LabelCheck.ACTIVE:
            return check
        with transaction.atomic():
            check.issues.all().delete()
            _progress(
                check, progress, status=LabelCheck.Status.RUNNING, stage="Reading the labelled catalogue"
            )
        try:
            _check(check, extractor or FeatureExtractor(DEFAULT_METHOD.features), DEFAULT_METHOD, progress)
        except Exception as exc:
            logger.exception("label check %s failed", check_id)
            _progress(
                check,
                progress,
                status=LabelCheck.Status.FAILED,
                stage="Failed",
                error=str(exc) or type(exc).__name__,
                finished_at=timezone.now(),
            )
    return check


def _check(check: LabelCheck, extractor: Features, method: Method, progress: Progress | None) -> None:
    labelled, left_out = _labelled(folds=method.folds)
    _progress(check, progress, total=len(labelled.artwork_ids), done=0, stage="Image features")
    features, readable = _features(check, labelled, extractor, progress)
    if not readable.all():
        labelled = _Labelled(
            labelled.artwork_ids[readable],
            [name for name, ok in zip(labelled.image_names, readable, strict=True) if ok],
            labelled.labels[readable],
            labelled.verified[readable],
            labelled.types,
        )
    _progress(check, progress, stage=f"Out-of-fold predictions ({method.folds} folds) and confident learning")
    detection = detect(
        features,
        labelled.labels,
        method=method,
        num_classes=len(labelled.types),
        never_flag=labelled.verified,
        seed=check.pk,
    )
    _issues_write(check, labelled, detection)
    _progress(
        check,
        progress,
        status=LabelCheck.Status.DONE,
        stage="Done",
        labelled=len(labelled.artwork_ids),
        flagged=int(detection.flagged.sum()),
        method={
            **method.describe(),
            "features": extractor.name,
            "types": [t.slug for t in labelled.types],
            "left_out_types": left_out,
            "unreadable": int((~readable).sum()),
        },
        finished_at=timezone.now(),
    )


def _labelled(*, folds: int) -> tuple[_Labelled, list[str]]:
    """Ready labelled works of every type with at least ``folds`` of them (fewer cannot be split into folds: those
    types are left out, and named)."""
    rows = list(
        Artwork.objects.filter(status=Artwork.Status.READY, curator_type__isnull=False)
        .order_by("pk")
        .values_list("pk", "image", "curator_type_id", "label_provenance")
    )
    counts: dict[int, int] = {}
    for _, _, type_id, _ in rows:
        counts[type_id] = counts.get(type_id, 0) + 1
    all_types = {t.pk: t for t in ArtworkType.objects.filter(pk__in=counts)}
    types = list(ArtworkType.objects.filter(pk__in=[k for k, n in counts.items() if n >= folds]))
    left_out = sorted(all_types[k].slug for k, n in counts.items() if n < folds)
    if len(types) < 2:
        raise LabelCheckImpossible(
            f"A label check needs at least two types with {folds} or more labelled works each; "
            f"the catalogue has {sum(1 for n in counts.values() if n >= folds)}."
        )
    index = {t.pk: i for i, t in enumerate(types)}
    kept = [row for row in rows if row[2] in index]
    return (
        _Labelled(
            artwork_ids=np.asarray([row[0] for row in kept], dtype=np.int64),
            image_names=[row[1] for row in kept],
            labels=np.asarray([index[row[2]] for row in kept], dtype=np.int64),
            verified=np.asarray([row[3] in Artwork.VERIFIED for row in kept], dtype=bool),
            types=types,
        ),
        left_out,
    )


def _features(
    check: LabelCheck, labelled: _Labelled, extractor: Features, progress: Progress | None
) -> tuple[np.ndarray, np.ndarray]:
    """(features of the readable works, which works were readable): cached vectors where there are some, the rest
    computed from the stored images a batch at a time and cached."""
    ids = [int(pk) for pk in labelled.artwork_ids]
    cached = {
        artwork_id: np.frombuffer(bytes(vector), dtype=np.float16)
        for artwork_id, vector in ArtworkFeatures.objects.filter(
            artwork_id__in=ids, extractor=extractor.name
        ).values_list("artwork_id", "vector")
    }
    missing = [i for i, pk in enumerate(ids) if pk not in cached]
    _progress(check, progress, done=len(ids) - len(missing))
    unreadable: set[int] = set()
    for start in range(0, len(missing), FEATURE_BATCH):
        rows = missing[start : start + FEATURE_BATCH]
        images, computed = _images_read(check, labelled, rows, unreadable)
        vectors = np.asarray(extractor(images), dtype=np.float16) if images else np.zeros((0, 0), np.float16)
        ArtworkFeatures.objects.bulk_create(
            [
                ArtworkFeatures(artwork_id=ids[i], extractor=extractor.name, vector=vector.tobytes())
                for i, vector in zip(computed, vectors, strict=True)
            ],
            ignore_conflicts=True,  # a concurrent check may have stored the same work's features
        )
        cached.update({ids[i]: vector for i, vector in zip(computed, vectors, strict=True)})
        _progress(check, progress, done=len(ids) - len(missing) + start + len(rows))
    readable = np.asarray([pk not in unreadable for pk in ids], dtype=bool)
    if not readable.any():
        raise LabelCheckImpossible("None of the labelled works' stored images could be read.")
    return np.stack([cached[pk] for pk in ids if pk not in unreadable]).astype(np.float32), readable


def _images_read(
    check: LabelCheck, labelled: _Labelled, rows: list[int], unreadable: set[int]
) -> tuple[list[Image.Image], list[int]]:
    """The decoded stored images of ``rows`` and the rows they belong to; works whose image cannot be read are
    added to ``unreadable`` (logged) and left out of the check."""
    images: list[Image.Image] = []
    computed: list[int] = []
    for i in rows:
        try:
            with default_storage.open(labelled.image_names[i], "rb") as handle:
                images.append(decode_for_features(handle.read()))
            computed.append(i)
        except (ImageRejected, OSError) as exc:
            logger.warning("label check %s: artwork %s skipped: %s", check.pk, labelled.artwork_ids[i], exc)
            unreadable.add(int(labelled.artwork_ids[i]))
    return images, computed


def _issues_write(check: LabelCheck, labelled: _Labelled, detection: Detection) -> None:
    probabilities = detection.probabilities
    suggested = probabilities.argmax(axis=1)
    slugs = [t.slug for t in labelled.types]
    rows = np.arange(len(labelled.labels))
    label_probability = probabilities[rows, labelled.labels]
    with transaction.atomic():
        LabelIssue.objects.bulk_create(
            [
                LabelIssue(
                    check_run=check,
                    artwork_id=int(labelled.artwork_ids[i]),
                    label_type=labelled.types[labelled.labels[i]],
                    suggested_type=labelled.types[suggested[i]],
                    label_probability=float(label_probability[i]),
                    suggested_probability=float(probabilities[i, suggested[i]]),
                    probabilities={
                        slug: round(float(p), 6) for slug, p in zip(slugs, probabilities[i], strict=True)
                    },
                    quality=float(detection.quality[i]),
                    flagged=bool(detection.flagged[i]),
                )
                for i in rows
            ],
            batch_size=1000,
        )


def _progress(check: LabelCheck, progress: Progress | None, **fields: Any) -> None:
    """Write progress at once (outside any long transaction, so the pages see it) and tell the caller."""
    for name, value in fields.items():
        setattr(check, name, value)
    LabelCheck.objects.filter(pk=check.pk).update(**fields)
    if progress is not None:
        progress(check)


@contextmanager
def _exclusive(check_id: int) -> Iterator[bool]:
    """A session-level PostgreSQL advisory lock on the check: held while it runs, released at the end or when the
    process dies (its connection closes), so a redelivered task can tell a live run from a dead one."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_LOCK_NAMESPACE, check_id])
        acquired = bool(cursor.fetchone()[0])
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOCK_NAMESPACE, check_id])
