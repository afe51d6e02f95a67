"""Announcing a change of the counts behind the model's agreement with the labels (the quality page, the review
queue's progress line): the figures are cached under a labels generation (``catalogue/selectors/curation.py`` says
why), and each write that can move a count replaces it here.

The writes that do, each calling :func:`agreement_counts_invalidate`: a label set, confirmed or restored
(``catalogue.services.labels``, which the review and mislabels queues, bulk edits and their undo, the admin, the
API and the corrections file all go through), a prediction stored for a labelled work
(``catalogue.services.classification.prediction_store``: the workers, the import, re-embedding for a new version) and
a labelled work deleted (``catalogue.services.artworks.artwork_delete``). A work created with a label has no
prediction yet: its first prediction announces it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from django.core.cache import caches
from django.db import transaction
from redis.exceptions import RedisError

from catalogue.models import Artwork
from catalogue.selectors.curation import SHARED_CACHE, agreement_generation_key

logger = logging.getLogger(__name__)


def agreement_counts_invalidate(*, artwork_ids: Sequence[int] | None = None) -> None:
    """Replace the labels generation at once — this transaction's own later reads count afresh — and again once the
    transaction commits, so that no process keeps figures it counted from a snapshot taken before the commit.

    ``artwork_ids``: the change concerns only these works' predictions, which move a count only for a labelled work;
    the generation is then replaced only when one of them is labelled, looked at each time (a label committed by
    someone else in between is seen by the second look)."""
    ids = list(artwork_ids) if artwork_ids is not None else None

    def replace() -> None:
        if ids is not None and not Artwork.objects.filter(pk__in=ids, curator_type__isnull=False).exists():
            return
        try:
            caches[SHARED_CACHE].set(agreement_generation_key(), uuid.uuid4().hex, timeout=None)
        except (RedisError, OSError) as exc:
            # The cached figures expire by themselves (AGREEMENT_MAX_AGE); the write itself must not fail for this.
            logger.warning("could not announce a change of the agreement counts: %s", exc)

    replace()
    transaction.on_commit(replace)
