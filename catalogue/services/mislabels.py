"""Settling a label the mislabel detector doubts: keep it, take the suggestion, or choose another type.

Every decision goes through :mod:`catalogue.services.labels` with ``source=MISLABELS``, so it lands in the audit
trail and sets the label's provenance; any of them takes the work out of the queue (a kept label becomes
*confirmed*, hence verified and never flagged again; a changed one no longer carries the label that was doubted).
"""

from __future__ import annotations

from typing import Any

from django.db import models, transaction

from catalogue.models import Artwork, ArtworkType, LabelCorrection, LabelIssue
from catalogue.selectors.label_issues import mislabel_issue
from catalogue.services.labels import label_confirm, label_correct


class MislabelDecision(models.TextChoices):
    KEEP = "keep", "Keep the label"
    SUGGESTION = "suggestion", "Take the suggested type"
    TYPE = "type", "Choose another type"


class NotInQueue(Exception):
    """The artwork is not (or no longer) in the possible-mislabels queue: someone settled it a moment ago, a newer
    check does not doubt it, or it was never flagged."""


def mislabel_decide(
    *,
    artwork_id: int,
    decision: str,
    to_type: ArtworkType | None = None,
    user: Any = None,
    note: str = "",
) -> LabelCorrection:
    """Settle the queue entry of one artwork and return the audit row.

    ``decision``: :class:`MislabelDecision`; ``to_type`` is required for ``type`` (and ignored otherwise). Raises
    :class:`NotInQueue` when the artwork has no open entry, ``ValueError`` for a bad decision. The artwork row is
    locked while the entry is checked and settled, so two curators deciding at once settle it once: the second
    gets :class:`NotInQueue`.
    """
    if decision not in MislabelDecision.values:
        raise ValueError(f"Unknown decision {decision!r}; one of: {', '.join(MislabelDecision.values)}.")
    if decision == MislabelDecision.TYPE and to_type is None:
        raise ValueError("The decision 'type' needs the type to set.")
    verb = {
        MislabelDecision.KEEP: "Kept the label",
        MislabelDecision.SUGGESTION: "Took the suggestion",
        MislabelDecision.TYPE: "Chose another type",
    }[MislabelDecision(decision)]
    with transaction.atomic():
        artwork = Artwork.objects.select_for_update().filter(pk=artwork_id).first()
        issue = mislabel_issue(artwork_id=artwork_id) if artwork is not None else None
        if artwork is None or issue is None:
            raise NotInQueue(f"Artwork {artwork_id} is not in the possible-mislabels queue.")
        source, note = LabelCorrection.Source.MISLABELS, note or _default_note(issue, verb)
        if decision == MislabelDecision.KEEP:
            return label_confirm(artwork=artwork, user=user, source=source, note=note)
        chosen = (
            to_type if decision == MislabelDecision.TYPE and to_type is not None else issue.suggested_type
        )
        return label_correct(artwork=artwork, to_type=chosen, user=user, source=source, note=note)


def _default_note(issue: LabelIssue, verb: str) -> str:
    # What the curator saw, for the audit trail: which check doubted which label, and what it suggested.
    return (
        f"{verb} (label check {issue.check_run_id} doubted {issue.label_type.name}, "
        f"{issue.label_probability:.0%} out-of-fold, and suggested {issue.suggested_type.name}, "
        f"{issue.suggested_probability:.0%})."
    )
