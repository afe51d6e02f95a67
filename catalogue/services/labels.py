"""The curators' labels: every change of an artwork's type goes through here and into the audit trail."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from catalogue.models import Artwork, ArtworkType, LabelCorrection
from catalogue.selectors.artworks import artwork_effective_type


def label_correct(
    *, artwork: Artwork, to_type: ArtworkType, user: Any = None, source: str, note: str = ""
) -> LabelCorrection:
    """Set the curator's type on an artwork and record it in the audit trail (from → to, who, where, why)."""
    with transaction.atomic():
        locked = Artwork.objects.select_for_update().get(pk=artwork.pk)
        from_type = artwork_effective_type(artwork=locked)
        locked.curator_type = to_type
        locked.save(update_fields=["curator_type", "updated_at"])
        correction = LabelCorrection.objects.create(
            artwork=locked,
            from_type=from_type,
            to_type=to_type,
            user=user if getattr(user, "pk", None) else None,
            source=source,
            note=note or "",
        )
    artwork.curator_type = to_type
    return correction
