"""The history of every artwork: one :class:`ArtworkChange` row per changed field, written by the services that make
the change (metadata by :func:`catalogue.services.artworks.artwork_update`, types by
:mod:`catalogue.services.labels`), inside their transaction, so no path changes an artwork unrecorded."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from catalogue.models import Artwork, ArtworkChange, BulkEdit


def type_value(*, slug: str | None, provenance: str) -> dict[str, Any]:
    """How a label is written in the history: its type (None: no label) and where it came from."""
    return {"type": slug, "provenance": provenance}


def artwork_changes_record(
    *,
    artwork: Artwork,
    changes: Mapping[str, tuple[Any, Any]],
    user: Any,
    source: str,
    bulk_edit: BulkEdit | None = None,
    note: str = "",
) -> list[ArtworkChange]:
    """Record ``{field: (old, new)}`` for one artwork; fields whose value did not change are left out."""
    rows = [
        ArtworkChange(
            artwork=artwork,
            artwork_ref=artwork.pk,
            field=field,
            old_value=old,
            new_value=new,
            user=user if getattr(user, "pk", None) else None,
            source=source,
            bulk_edit=bulk_edit,
            note=note,
        )
        for field, (old, new) in changes.items()
        if old != new
    ]
    return ArtworkChange.objects.bulk_create(rows)
