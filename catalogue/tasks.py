"""Celery tasks: thin wrappers that load ids, call a service, and own retry policy and time limits.

The services send these by name (``CLASSIFY_TASK``, ``REEMBED_TASK``) so that they need not import this module.
"""

from __future__ import annotations

import logging

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init
from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.utils import timezone

from catalogue.models import LabelCheck, MapLayout, NearDuplicatePair
from catalogue.services import label_checks, maps, near_duplicates, training_jobs
from catalogue.services.classification import (
    artworks_classify_claimed,
    artworks_requeue_pending,
    classification_claimant,
    classification_claims_release,
    classification_held_until,
)
from catalogue.services.model_rollout import model_reembed_batch
from inference.loader import ModelUnavailable, get_classifier
from inference.models import ModelVersion
from inference.selectors import model_versions_serving

logger = logging.getLogger(__name__)

MAX_RETRIES = 3

# The time limits below come from settings that web processes and workers share. Celery (5.7) writes the limits the
# *sending* process knows for a task into its message, and the worker obeys the message, so a sender with other
# settings would impose its own limits (tests/ops/test_real_faults.py sends as a web process does).


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=MAX_RETRIES,
    default_retry_delay=5,
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
)
def classify_artwork(self: Task, artwork_id: int) -> None:
    """Classify an artwork and every other work waiting (up to a batch) in one model call. Idempotent: a
    redelivered or repeated task finds its work ready (or held by another worker) and changes nothing more."""
    claimant = classification_claimant()
    try:
        done = artworks_classify_claimed(claimant=claimant, artwork_ids=[artwork_id])
    except SoftTimeLimitExceeded:
        classification_claims_release(
            claimant=claimant, error="Classification took too long and was stopped."
        )
        return
    except Exception as exc:
        if self.request.retries >= MAX_RETRIES:
            logger.exception("classification of artwork %s failed for good", artwork_id)
            classification_claims_release(claimant=claimant, error=f"Classification failed: {exc}")
            return
        _claims_release_safely(claimant=claimant)  # back to pending: this retry or any worker takes it
        raise self.retry(exc=exc) from exc
    held_until = None if artwork_id in done else classification_held_until(artwork_id=artwork_id)
    if held_until is not None:
        # Held by another claim, maybe a dead worker's: come back when its lease ends (not counted as a failure).
        wait = max(1.0, (held_until - timezone.now()).total_seconds() + 0.5)
        raise self.retry(countdown=wait, max_retries=None)


def _claims_release_safely(*, claimant: str) -> None:
    """Release before a retry; with the database down (the usual reason to retry) the claims cannot be released,
    and their lease runs out instead: the sweep or the retry takes them again a few seconds later."""
    try:
        classification_claims_release(claimant=claimant)
    except DatabaseError:
        logger.warning("claims of %s left to their lease: the database is unreachable", claimant)


@shared_task(ignore_result=True)
def requeue_pending() -> int:
    """Periodic sweep: artworks left pending (broker was down) or stuck in processing go through again."""
    return artworks_requeue_pending()


@worker_process_init.connect
def warm_model(**_: object) -> None:
    """Load the active model as each worker process starts, so the first upload is as fast as the rest."""
    if not getattr(settings, "ARTSITE_WARM_MODEL_ON_START", True):
        return
    try:
        for version in model_versions_serving():
            get_classifier(version.version)
    except ModelUnavailable as exc:
        logger.error("the worker cannot load its model: %s", exc)  # tasks will fail with this reason
    except Exception:
        logger.warning("could not warm the model at start; it will load on first use", exc_info=True)
    finally:
        close_old_connections()


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=5,
    default_retry_delay=10,
    soft_time_limit=300,
    time_limit=360,
)
def reembed_catalogue(self: Task, version_id: int) -> None:
    """Re-embed the catalogue with a version being activated, one batch per run, re-queueing itself until done."""
    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None or version.status != ModelVersion.Status.EMBEDDING:
        return
    try:
        progress = model_reembed_batch(version=version)
    except Exception as exc:
        raise self.retry(exc=exc) from exc
    if progress.remaining > 0:
        reembed_catalogue.apply_async(args=[version_id])


@shared_task(
    # Acknowledged on receipt, never redelivered: a training outlives the broker's visibility timeout, and a job
    # whose worker died is marked failed (catalogue.services.training_jobs) rather than silently run twice.
    acks_late=False,
    ignore_result=True,
    soft_time_limit=max(60, settings.ARTSITE_TRAINING_TIME_LIMIT - 60),
    time_limit=settings.ARTSITE_TRAINING_TIME_LIMIT,
)
def training_job_run(job_id: int) -> None:
    """Train a new model version for a queued training job (the "training" queue's worker). Idempotent."""
    training_jobs.training_job_run(job_id=job_id)


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.ARTSITE_LABEL_CHECK_TIME_LIMIT,
    time_limit=settings.ARTSITE_LABEL_CHECK_TIME_LIMIT + 120,
)
def label_check_run(check_id: int) -> None:
    """Run one label check (on the long-jobs queue). Idempotent: a finished check is left as it is; a redelivered
    one whose worker died starts over. A check that outlives the soft limit ends failed, with the reason."""
    try:
        label_checks.label_check_run(check_id=check_id)
    except LabelCheck.DoesNotExist:
        logger.warning("label check %s no longer exists", check_id)


@shared_task(ignore_result=True)
def label_check_if_due() -> None:
    """Periodic: start a label check when enough labels changed since the last one (or resend a lost one)."""
    label_checks.label_check_request_if_due()


# --- Near-duplicates (catalogue/services/near_duplicates.py) --------------------------------------------------


@shared_task(ignore_result=True, acks_late=True)
def near_duplicates_find(artwork_ids: list[int]) -> None:
    """Other photos of newly classified artworks. Idempotent: a pair is recorded once."""
    near_duplicates.near_duplicates_find(artwork_ids=artwork_ids, found_by=NearDuplicatePair.Found.UPLOAD)


@shared_task(ignore_result=True)
def near_duplicates_scan() -> None:
    """The whole catalogue (routed to the long-jobs queue: a long job at scale). Idempotent."""
    near_duplicates.near_duplicates_scan()


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,  # waits for a re-embedding as long as it takes, a minute at a time
    soft_time_limit=1800,
    time_limit=1900,
)
def map_layout_compute(self: Task, version_id: int) -> None:
    """Compute a version's collection map (default queue). Idempotent; waits while the version re-embeds."""
    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None:
        return
    try:
        maps.map_layout_compute(version=version)
    except maps.EmbeddingsIncomplete as exc:
        raise self.retry(exc=exc, countdown=60) from exc


@shared_task(ignore_result=True)
def map_layout_if_missing() -> None:
    """Periodic: ask for the active version's map layout when it has none (a version was just activated)."""
    maps.map_layout_request_if_missing()


@shared_task(ignore_result=True, soft_time_limit=600, time_limit=660)
def map_points_build(layout_id: int) -> None:
    """Build a layout's points for the map page again (a large catalogue changed since the last build)."""
    layout = MapLayout.objects.filter(pk=layout_id).defer("points_gzip").first()
    if layout is not None:
        maps.map_points_build(layout=layout)
