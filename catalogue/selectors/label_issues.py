"""Reads of the mislabel detector's findings: the "Possible mislabels" queue and how far the curators got with it.

The queue is always the newest *finished* label check's: a check that is queued or running has not written all its
rows yet, and an older finished one is stale (its labels may since have been settled).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import F, QuerySet

from catalogue.models import Artwork, LabelCheck, LabelIssue
from catalogue.selectors.curation import labels_generation_cached


def label_check_latest() -> LabelCheck | None:
    """The newest label check in any state (the queue page says whether one is running or failed)."""
    return LabelCheck.objects.order_by("-created_at", "-id").first()


def label_check_latest_done() -> LabelCheck | None:
    """The newest finished label check: the one whose flags the queue shows."""
    return LabelCheck.objects.filter(status=LabelCheck.Status.DONE).order_by("-created_at", "-id").first()


def mislabel_queue(
    *, exclude_ids: Iterable[int] = (), check: LabelCheck | None = None
) -> QuerySet[LabelIssue]:
    """The flagged labels of the newest finished check (``check``: that one, already looked up) that are still
    open, most doubtful (lowest label quality) first.

    Still open: the artwork carries the label that was checked (a curator who changed it since has settled it) and
    the label is not verified (a curator set or confirmed it: a confirmed label is never asked about again, even if
    the same check flagged it). ``exclude_ids``: artwork ids to leave out (the works a curator skipped).
    Rows come with their artwork, both types and the check.
    """
    check = check if check is not None else label_check_latest_done()
    if check is None:
        return LabelIssue.objects.none()
    qs = (
        LabelIssue.objects.filter(check_run=check, flagged=True, artwork__curator_type_id=F("label_type_id"))
        .exclude(artwork__label_provenance__in=Artwork.VERIFIED)
        .select_related("artwork", "artwork__curator_type", "label_type", "suggested_type", "check_run")
    )
    excluded = [int(pk) for pk in exclude_ids]
    if excluded:
        qs = qs.exclude(artwork_id__in=excluded)
    return qs.order_by("quality", "id")


def mislabel_issue(*, artwork_id: int) -> LabelIssue | None:
    """The open queue entry of one artwork, or ``None`` when it is not in the queue (any more)."""
    return mislabel_queue().filter(artwork_id=artwork_id).first()


@dataclass(frozen=True)
class MislabelProgress:
    """Where the queue stands: the check it comes from (if any finished), the newest check of any state, and how
    many of the flagged labels curators have settled."""

    check: LabelCheck | None  # the newest finished check: the queue's
    latest: LabelCheck | None  # the newest check of any state (running, queued or failed ones too)
    flagged: int  # labels the check flagged
    remaining: int  # ... still open

    @property
    def settled(self) -> int:
        return self.flagged - self.remaining

    @property
    def running(self) -> bool:
        return self.latest is not None and self.latest.status in (
            LabelCheck.Status.QUEUED,
            LabelCheck.Status.RUNNING,
        )

    @property
    def settled_share(self) -> float:
        return self.settled / self.flagged if self.flagged else 0.0


def mislabel_progress() -> MislabelProgress:
    """The check's flagged labels are counted through their index; the ones still open (a join of every flagged
    label with its artwork: thousands in a large catalogue) once per labels generation, since only a label's change
    settles one (:func:`catalogue.selectors.curation.labels_generation_cached`)."""
    check = label_check_latest_done()
    flagged = remaining = 0
    if check is not None:
        done = check  # for the closure's type
        flagged = check.issues.filter(flagged=True).count()
        remaining, _ = labels_generation_cached(
            f"mislabels:{check.pk}", lambda: mislabel_queue(check=done).count()
        )
    return MislabelProgress(check=check, latest=label_check_latest(), flagged=flagged, remaining=remaining)
