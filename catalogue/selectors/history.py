"""Reading the history: an artwork's timeline (every change, metadata and type, newest first) and the bulk edits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from catalogue.filters import ArtworkFilterSet
from catalogue.models import Artwork, ArtworkChange, BulkEdit
from catalogue.selectors.artworks import artwork_types, artworks_with_prediction

FIELD_NAMES = {
    "title": "Title",
    "artist": "Artist",
    "date": "Date",
    "accession_number": "Accession number",
    "description": "Description",
    "notes": "Notes",
    "type": "Type",
    "work_group": "Photos of one work",
}


def artwork_history(*, artwork_id: int) -> QuerySet[ArtworkChange]:
    """Every recorded change of the artwork (also after it was deleted: by its id), newest first."""
    return (
        ArtworkChange.objects.filter(artwork_ref=artwork_id)
        .select_related("user", "bulk_edit")
        .order_by("-id")
    )


def change_value_display(field: str, value: Any) -> str:
    """A history value as people read it: a type by name with where it came from, an empty value as “–”."""
    if field == "type":
        value = value or {}
        names = {t.slug: t.name for t in artwork_types()}
        slug = value.get("type")
        if slug is None:
            return "no label (the model's type)"
        provenance = dict(Artwork.Provenance.choices).get(value.get("provenance") or "", "")
        return f"{names.get(slug, slug)}{f' ({provenance.lower()})' if provenance else ''}"
    if field == "work_group":
        return f"work {value}" if value else "–"
    return str(value) if value not in (None, "") else "–"


def bulk_edits_recent(*, limit: int | None = 50) -> QuerySet[BulkEdit]:
    """Newest first (``limit`` None: all, for a paginated list)."""
    edits = BulkEdit.objects.select_related("user", "undone_by").order_by("-id")
    return edits if limit is None else edits[:limit]


class SelectionInvalid(Exception):
    """The filter of a bulk edit's selection is not valid; ``errors`` maps its fields to their problems."""

    def __init__(self, errors: Mapping[str, list[str]]) -> None:
        super().__init__("The filter is not valid.")
        self.errors = dict(errors)


def artworks_selected(
    *, ids: list[int] | None = None, filters: Mapping[str, Any] | None = None
) -> tuple[QuerySet[Artwork], dict[str, Any]]:
    """The artworks a bulk edit applies to, chosen by hand (``ids``) or by the catalogue's filter (the one
    ``ArtworkFilterSet``, as the catalogue page and the API list read it); with how they were chosen, to record."""
    if ids is not None:
        chosen = sorted({int(i) for i in ids})
        return Artwork.objects.filter(pk__in=chosen), {"ids": chosen}
    params = {
        key: value for key, value in (filters or {}).items() if key not in ("page", "page_size") and value
    }
    filterset = ArtworkFilterSet(params, queryset=artworks_with_prediction())
    if not filterset.is_valid():
        raise SelectionInvalid({name: [str(e) for e in errors] for name, errors in filterset.errors.items()})
    return Artwork.objects.filter(pk__in=filterset.qs.values("pk")), {"filter": params}


@dataclass(frozen=True)
class HistoryEntry:
    """One change as the artwork page and the API show it."""

    change: ArtworkChange
    field_name: str
    old: str
    new: str


def artwork_timeline(*, artwork_id: int) -> list[HistoryEntry]:
    """The artwork's history, newest first, with its values as people read them."""
    return [
        HistoryEntry(
            change=change,
            field_name=FIELD_NAMES.get(change.field, change.field),
            old=change_value_display(change.field, change.old_value),
            new=change_value_display(change.field, change.new_value),
        )
        for change in artwork_history(artwork_id=artwork_id)
    ]
