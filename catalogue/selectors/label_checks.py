"""Reads of the label checks (the mislabel detector's runs): the one under way, the newest finished one, progress,
and how many labels changed since the last check."""

from __future__ import annotations

from typing import Any

from catalogue.models import LabelCheck, LabelCorrection, LabelIssue


def label_check_active() -> LabelCheck | None:
    """The check queued or running, if any (there is at most one)."""
    return LabelCheck.objects.filter(status__in=LabelCheck.ACTIVE).order_by("-created_at", "-id").first()


def label_check_newest_done() -> LabelCheck | None:
    """The newest finished check: the one whose verdicts the "Possible mislabels" queue shows."""
    return LabelCheck.objects.filter(status=LabelCheck.Status.DONE).order_by("-created_at", "-id").first()


def labels_changed_since_last_check() -> int:
    """Works whose label was added, changed or confirmed since the newest check was requested (every label change
    goes through the audit trail, imports included); all labelled-or-confirmed works when there was none."""
    newest = LabelCheck.objects.order_by("-created_at", "-id").first()
    corrections = LabelCorrection.objects.filter(artwork__isnull=False)  # deleted works are not checked
    if newest is not None:
        corrections = corrections.filter(created_at__gt=newest.created_at)
    return corrections.values("artwork_id").distinct().count()


def label_check_progress(*, check: LabelCheck) -> dict[str, Any]:
    """What a page or the API shows of a check while it runs and after: JSON-ready."""
    return {
        "id": check.pk,
        "status": check.status,
        "stage": check.stage,
        "done": check.done,
        "total": check.total,
        "percent": round(100 * check.done / check.total) if check.total else 0,
        "labelled": check.labelled,
        "flagged": check.flagged,
        "error": check.error,
        "created_at": check.created_at.isoformat(),
        "finished_at": check.finished_at.isoformat() if check.finished_at else None,
    }


def label_check_most_doubtful(*, check: LabelCheck, limit: int = 20) -> list[LabelIssue]:
    """The check's lowest-quality labels, flagged first (for the command line's summary)."""
    return list(
        check.issues.select_related("artwork", "label_type", "suggested_type").order_by(
            "-flagged", "quality", "pk"
        )[:limit]
    )
