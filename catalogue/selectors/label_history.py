"""The curators' label decisions as a reviewed corrections file: one row per artwork a curator has looked at."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from catalogue.models import Artwork, LabelCorrection


@dataclass(frozen=True)
class LabelDecision:
    """What curators settled for one artwork: the label it had before they looked, and the one it has now."""

    sha256: str
    title: str
    old_type: str  # slug; "" when the artwork had no label before
    new_type: str  # slug
    decision: str  # "changed" or "confirmed"
    note: str  # the last decision's note
    source: str  # where the last decision was made (portal, mislabels, api, ...)
    user: str
    decided_at: str  # ISO 8601


def label_decisions(*, sources: Sequence[str] | None = None) -> list[LabelDecision]:
    """Every artwork whose current label a curator set or confirmed, oldest decision first.

    ``old_type`` is the label before the first curator decision (the imported one, or none); ``sources`` keeps only
    artworks whose last decision came from those places (default: every place but the import).
    """
    wanted = list(sources) if sources else [s for s in LabelCorrection.Source.values if s != "import"]
    artworks = Artwork.objects.filter(label_provenance__in=Artwork.VERIFIED).only("pk", "sha256", "title")
    by_id = {a.pk: a for a in artworks}
    history: dict[int, list[LabelCorrection]] = {}
    rows = (
        LabelCorrection.objects.filter(artwork_id__in=list(by_id))
        .select_related("from_type", "to_type", "user")
        .order_by("created_at", "id")
    )
    for correction in rows:
        if correction.artwork_id is not None:  # filtered by id above; typed optional (a deleted work's rows)
            history.setdefault(correction.artwork_id, []).append(correction)
    decisions = []
    for artwork_id, trail in history.items():
        curated = [c for c in trail if c.source != LabelCorrection.Source.IMPORT]
        if not curated or curated[-1].source not in wanted:
            continue
        first, last = curated[0], curated[-1]
        old = first.from_type.slug if first.from_type else ""
        decisions.append(
            LabelDecision(
                sha256=by_id[artwork_id].sha256,
                title=by_id[artwork_id].title,
                old_type=old,
                new_type=last.to_type.slug,
                decision="confirmed" if old == last.to_type.slug else "changed",
                note=last.note,
                source=last.source,
                user=last.user.get_username() if last.user else "",
                decided_at=last.created_at.isoformat(),
            )
        )
    return sorted(decisions, key=lambda d: d.decided_at)
