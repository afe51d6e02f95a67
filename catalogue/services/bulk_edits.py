"""Bulk edits: set the artist, the date, a type or a note on many artworks at once, as ONE action that can be undone.

Every change goes through the services that change one artwork (``artwork_update`` for metadata, ``label_correct``
for the type, source *bulk*), so each artwork's history shows it, pointing at its :class:`BulkEdit`. An undo puts
back each artwork's old value unless that field has changed since (then it is skipped and reported); the undo's
own changes are recorded too (source *undo*). Each runs in one transaction: all of it happens or none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from catalogue.models import Artwork, ArtworkChange, ArtworkType, BulkEdit, LabelCorrection
from catalogue.services.artworks import artwork_update
from catalogue.services.history import type_value
from catalogue.services.labels import label_correct, label_restore

#: The most artworks one bulk edit changes (each is a locked row and a few history rows in one transaction).
BULK_EDIT_MAX = 5000
#: The fields a bulk edit sets, and the longest value each takes (the model's own limits).
BULK_FIELDS = {"artist": 300, "date": 100, "note": 2000}


class BulkEditRefused(Exception):
    """The bulk edit (or its undo) cannot be made; ``str(exc)`` says why, ``field`` names the input."""

    def __init__(self, message: str, *, field: str | None = None, code: str = "invalid") -> None:
        super().__init__(message)
        self.field = field
        self.code = code


@dataclass(frozen=True)
class BulkValues:
    """What to set: None leaves a field as it is. ``note`` is appended to each artwork's notes."""

    artist: str | None = None
    date: str | None = None
    artwork_type: ArtworkType | None = None
    note: str | None = None

    def as_json(self) -> dict[str, Any]:
        values = {"artist": self.artist, "date": self.date, "note": self.note}
        values["type"] = self.artwork_type.slug if self.artwork_type else None
        return {name: value for name, value in values.items() if value is not None}


def _values_check(values: BulkValues) -> BulkValues:
    cleaned = {}
    for name, limit in BULK_FIELDS.items():
        value = getattr(values, name)
        if value is None:
            continue
        value = value.strip()
        if len(value) > limit:
            raise BulkEditRefused(f"The {name} is longer than {limit} characters.", field=name)
        if name == "note" and not value:
            raise BulkEditRefused("The note is empty.", field="note")
        cleaned[name] = value
    checked = BulkValues(artwork_type=values.artwork_type, **cleaned)
    if not checked.as_json():
        raise BulkEditRefused("Choose at least one thing to set: artist, date, type or note.", field="values")
    return checked


def bulk_edit_apply(
    *,
    artworks: QuerySet[Artwork],
    values: BulkValues,
    selection: Mapping[str, Any],
    user: Any,
    source: str,
) -> BulkEdit:
    """Set ``values`` on every artwork of ``artworks`` in one transaction; returns the :class:`BulkEdit` that
    groups the changes (``count`` selected, ``changed`` actually changed). ``selection`` records how they were
    chosen (``{"filter": {...}}`` or ``{"ids": [...]}``). Raises :class:`BulkEditRefused`."""
    values = _values_check(values)
    ids = list(artworks.order_by("pk").values_list("pk", flat=True)[: BULK_EDIT_MAX + 1])
    if not ids:
        raise BulkEditRefused("No artworks are selected.", field="selection")
    if len(ids) > BULK_EDIT_MAX:
        raise BulkEditRefused(
            f"A bulk edit changes at most {BULK_EDIT_MAX} artworks; narrow the selection.", field="selection"
        )
    with transaction.atomic():
        bulk_edit = BulkEdit.objects.create(
            user=user if getattr(user, "pk", None) else None,
            source=source,
            values=values.as_json(),
            selection=dict(selection),
            count=len(ids),
        )
        changed = 0
        # Locked in id order, as every bulk edit locks them: two at once wait rather than deadlock.
        for artwork in (
            Artwork.objects.select_for_update(of=("self",))
            .select_related("curator_type")
            .filter(pk__in=ids)
            .order_by("pk")
        ):
            changed += _artwork_apply(artwork=artwork, values=values, bulk_edit=bulk_edit, user=user)
        bulk_edit.changed = changed
        bulk_edit.save(update_fields=["changed"])
    return bulk_edit


def _artwork_apply(*, artwork: Artwork, values: BulkValues, bulk_edit: BulkEdit, user: Any) -> bool:
    fields: dict[str, str] = {}
    if values.artist is not None and artwork.artist != values.artist:
        fields["artist"] = values.artist
    if values.date is not None and artwork.date != values.date:
        fields["date"] = values.date
    if values.note is not None:
        fields["notes"] = f"{artwork.notes}\n{values.note}" if artwork.notes else values.note
    source = LabelCorrection.Source.BULK
    if fields:
        artwork_update(artwork=artwork, user=user, source=source, bulk_edit=bulk_edit, **fields)
    retype = values.artwork_type is not None and artwork.curator_type_id != values.artwork_type.pk
    if values.artwork_type is not None and retype:
        label_correct(
            artwork=artwork,
            to_type=values.artwork_type,
            user=user,
            source=source,
            note=f"Bulk edit #{bulk_edit.pk}.",
            bulk_edit=bulk_edit,
        )
    return bool(fields) or retype


@dataclass(frozen=True)
class Skipped:
    artwork_id: int
    field: str
    reason: str


def bulk_edit_undo(*, bulk_edit: BulkEdit, user: Any) -> BulkEdit:
    """Put back what ``bulk_edit`` changed, in one transaction. A field changed since (by anyone, anywhere) is
    left as it is and reported in ``undo_result["skipped"]``, as is an artwork deleted since. Raises
    :class:`BulkEditRefused` when the bulk edit was undone already."""
    with transaction.atomic():
        locked = BulkEdit.objects.select_for_update().get(pk=bulk_edit.pk)
        if locked.undone_at is not None:
            raise BulkEditRefused(f"Bulk edit #{locked.pk} was undone already.", code="already_undone")
        changes = list(
            ArtworkChange.objects.filter(bulk_edit=locked, source=LabelCorrection.Source.BULK).order_by("id")
        )
        artworks = {
            a.pk: a
            for a in Artwork.objects.select_for_update(of=("self",))
            .select_related("curator_type")
            .filter(pk__in={c.artwork_ref for c in changes})
            .order_by("pk")
        }
        later = _changed_since(changes)
        restored: set[int] = set()
        skipped: list[Skipped] = []
        for change in changes:
            artwork = artworks.get(change.artwork_ref)
            if artwork is None:
                skipped.append(Skipped(change.artwork_ref, change.field, "deleted since"))
            elif (change.artwork_ref, change.field) in later or _current(
                artwork, change.field
            ) != change.new_value:
                skipped.append(Skipped(change.artwork_ref, change.field, "changed since"))
            else:
                _change_revert(artwork=artwork, change=change, bulk_edit=locked, user=user)
                restored.add(artwork.pk)
        locked.undone_at = timezone.now()
        locked.undone_by = user if getattr(user, "pk", None) else None
        locked.undo_result = {
            "restored": len(restored),
            "skipped": [{"artwork": s.artwork_id, "field": s.field, "reason": s.reason} for s in skipped],
        }
        locked.save(update_fields=["undone_at", "undone_by", "undo_result"])
    return locked


def _changed_since(changes: Iterable[ArtworkChange]) -> set[tuple[int, str]]:
    """(artwork, field) pairs with a history row newer than the bulk edit's own row for that field."""
    newest = {(c.artwork_ref, c.field): c.pk for c in changes}
    if not newest:
        return set()
    rows = ArtworkChange.objects.filter(
        artwork_ref__in={ref for ref, _ in newest}, field__in={field for _, field in newest}
    ).values_list("artwork_ref", "field", "pk")
    return {(ref, field) for ref, field, pk in rows if (ref, field) in newest and pk > newest[(ref, field)]}


def _current(artwork: Artwork, field: str) -> Any:
    """A field's value as the history writes it."""
    if field != "type":
        return getattr(artwork, field)
    return type_value(
        slug=artwork.curator_type.slug if artwork.curator_type else None, provenance=artwork.label_provenance
    )


def _change_revert(*, artwork: Artwork, change: ArtworkChange, bulk_edit: BulkEdit, user: Any) -> None:
    source = LabelCorrection.Source.UNDO
    note = f"Undo of bulk edit #{bulk_edit.pk}."
    if change.field != "type":
        artwork_update(
            artwork=artwork,
            user=user,
            source=source,
            bulk_edit=bulk_edit,
            note=note,
            **{change.field: change.old_value},
        )
        return
    old = change.old_value or {}
    slug = old.get("type")
    label_restore(
        artwork=artwork,
        to_type=ArtworkType.objects.filter(slug=slug).first() if slug else None,
        provenance=old.get("provenance") or "",
        user=user,
        source=source,
        bulk_edit=bulk_edit,
        note=note,
    )
