"""Celery tasks: thin wrappers that load ids, call a service, and own retry policy and time limits."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from catalogue import services

logger = logging.getLogger(__name__)

MAX_RETRIES = 3


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=MAX_RETRIES,
    default_retry_delay=5,
    soft_time_limit=120,
    time_limit=180,
)
def classify_artwork(self, artwork_id: int) -> None:  # type: ignore[no-untyped-def]
    """Classify and embed one artwork. Idempotent: a redelivered or repeated task changes nothing more."""
    try:
        services.artwork_classify(artwork_id=artwork_id)
    except SoftTimeLimitExceeded:
        services.artwork_fail(artwork_id=artwork_id, error="Classification took too long and was stopped.")
    except Exception as exc:
        if self.request.retries >= MAX_RETRIES:
            logger.exception("classification of artwork %s failed for good", artwork_id)
            services.artwork_fail(artwork_id=artwork_id, error=f"Classification failed: {exc}")
            return
        raise self.retry(exc=exc) from exc


@shared_task(ignore_result=True)
def requeue_pending() -> int:
    """Periodic sweep: artworks left pending (broker was down) or stuck in processing go through again."""
    return services.artworks_requeue_pending()
