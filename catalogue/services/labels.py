"""The curators' labels: every change of an artwork's type, and every confirmation of one, goes through here and
into the audit trail (from → to, who, where, why), sets where the label came from (``label_provenance``) and, in the
same transaction, the moved works' embeddings the typed similar-works search reads
(:func:`catalogue.services.moved_embeddings.moved_embeddings_sync`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from catalogue.models import Artwork, ArtworkType, BulkEdit, LabelCorrection
from catalogue.selectors.artworks import artwork_effective_type
from catalogue.services.agreement import agreement_counts_invalidate
from catalogue.services.history import artwork_changes_record, type_value
from catalogue.services.moved_embeddings import moved_embeddings_sync


class NothingToConfirm(Exception):
    """The artwork has no type yet (neither a label nor a prediction): there is nothing to confirm."""


def provenance_given(*, curator_type: ArtworkType | None, source: str) -> str:
    """The provenance of a label given with a new artwork: *imported* from an import, else *set* (a curator typed it
    in the upload form or the API); blank without a label."""
    if curator_type is None:
        return ""
    return Artwork.Provenance.IMPORTED if source == LabelCorrection.Source.IMPORT else Artwork.Provenance.SET


def label_correct(
    *,
    artwork: Artwork,
    to_type: ArtworkType,
    user: Any = None,
    source: str,
    note: str = "",
    bulk_edit: BulkEdit | None = None,
) -> LabelCorrection:
    """Set the artwork's label and record it in the audit trail.

    Provenance: *imported* when ``source`` is the import; otherwise *confirmed* when the label was already
    ``to_type`` (a curator looked and kept it), else *set*. Curator-set and curator-confirmed labels are verified.
    """

    def provenance(locked: Artwork) -> str:
        if source == LabelCorrection.Source.IMPORT:
            return Artwork.Provenance.IMPORTED
        if locked.curator_type_id == to_type.pk:
            return Artwork.Provenance.CONFIRMED
        return Artwork.Provenance.SET

    return _label_write(
        artwork=artwork,
        to_type=to_type,
        provenance=provenance,
        user=user,
        source=source,
        note=note,
        bulk_edit=bulk_edit,
    )


def label_confirm(*, artwork: Artwork, user: Any = None, source: str, note: str = "") -> LabelCorrection:
    """A curator looked and keeps the artwork's type as it is: its label (or, without one, the model's prediction)
    becomes a *confirmed*, verified label. Recorded in the audit trail with from = to. Raises
    :class:`NothingToConfirm` when the artwork has no type at all."""
    current = artwork_effective_type(artwork=artwork)
    if current is None:
        raise NothingToConfirm(f"Artwork {artwork.pk} has no type to confirm yet.")
    return _label_write(
        artwork=artwork,
        to_type=current,
        provenance=lambda _locked: Artwork.Provenance.CONFIRMED,
        user=user,
        source=source,
        note=note or "Confirmed: the type was kept after a look.",
    )


def _label_write(
    *,
    artwork: Artwork,
    to_type: ArtworkType,
    provenance: Callable[[Artwork], str],
    user: Any,
    source: str,
    note: str,
    bulk_edit: BulkEdit | None = None,
) -> LabelCorrection:
    correction = _label_apply(
        artwork=artwork,
        to_type=to_type,
        provenance=provenance,
        user=user,
        source=source,
        note=note,
        bulk_edit=bulk_edit,
    )
    assert correction is not None  # a type is an audit-trail row
    return correction


def _label_apply(
    *,
    artwork: Artwork,
    to_type: ArtworkType | None,
    provenance: Callable[[Artwork], str],
    user: Any,
    source: str,
    note: str,
    bulk_edit: BulkEdit | None,
) -> LabelCorrection | None:
    """Every label write: under a row lock, the new label (or none) and its provenance (decided on the locked row);
    the agreement figures and the typed similar-works search told; an audit-trail row for a type (the audit trail
    has no row for "no label": a removed label is only in the history); the artwork's history (the label before and
    after, with their provenance). A confirmation (same type, same provenance) changes nothing and is recorded only
    in the audit trail."""
    with transaction.atomic():
        locked = (
            Artwork.objects.select_for_update(of=("self",)).select_related("curator_type").get(pk=artwork.pk)
        )
        from_type = artwork_effective_type(artwork=locked)
        before = _label_value(locked)
        locked.label_provenance = provenance(locked) if to_type is not None else ""
        locked.curator_type = to_type
        locked.save(update_fields=["curator_type", "label_provenance", "updated_at"])
        agreement_counts_invalidate()
        moved_embeddings_sync(artwork_ids=[locked.pk])  # the typed similar-works search sees the new label
        correction = None
        if to_type is not None:
            correction = LabelCorrection.objects.create(
                artwork=locked,
                from_type=from_type,
                to_type=to_type,
                user=user if getattr(user, "pk", None) else None,
                source=source,
                note=note or "",
            )
        artwork_changes_record(
            artwork=locked,
            changes={"type": (before, _label_value(locked))},
            user=user,
            source=source,
            bulk_edit=bulk_edit,
            note=note or "",
        )
    artwork.curator_type = to_type
    artwork.label_provenance = locked.label_provenance
    return correction


def _label_value(artwork: Artwork) -> dict[str, Any]:
    slug = artwork.curator_type.slug if artwork.curator_type is not None else None
    return type_value(slug=slug, provenance=artwork.label_provenance)


def label_restore(
    *,
    artwork: Artwork,
    to_type: ArtworkType | None,
    provenance: str,
    user: Any,
    source: str,
    bulk_edit: BulkEdit | None,
    note: str,
) -> None:
    """Put a label back as it was (undoing a bulk edit): the type, or no label at all, with its old provenance.
    Recorded in the history; a restored type is also an audit-trail row."""
    _label_apply(
        artwork=artwork,
        to_type=to_type,
        provenance=lambda _locked: provenance,
        user=user,
        source=source,
        note=note,
        bulk_edit=bulk_edit,
    )


@dataclass(frozen=True)
class DecisionsApplied:
    changed: int
    confirmed: int
    unchanged: int  # the artwork already had that label, verified
    missing: list[str]  # sha256 of decisions whose artwork is not in the catalogue
    unknown_types: list[str]  # type slugs the catalogue does not have


def label_decisions_apply(
    *, decisions: Iterable[tuple[str, str, str]], user: Any = None, source: str
) -> DecisionsApplied:
    """Apply a reviewed corrections file: ``(sha256, new type slug, note)`` rows. Each artwork found by its file's
    sha256 gets that label, *confirmed* when it already had it, *set* otherwise, through :func:`label_correct` (so
    every change is in the audit trail). Idempotent: a second run changes nothing."""
    types = {t.slug: t for t in ArtworkType.objects.all()}
    changed = confirmed = unchanged = 0
    missing: list[str] = []
    unknown: list[str] = []
    for sha256, slug, note in decisions:
        to_type = types.get(slug)
        if to_type is None:
            unknown.append(slug)
            continue
        artwork = Artwork.objects.filter(sha256=sha256).first()
        if artwork is None:
            missing.append(sha256)
            continue
        if artwork.curator_type_id == to_type.pk and artwork.label_verified:
            unchanged += 1
            continue
        was_label = artwork.curator_type_id == to_type.pk
        label_correct(artwork=artwork, to_type=to_type, user=user, source=source, note=note)
        confirmed += was_label
        changed += not was_label
    return DecisionsApplied(
        changed=changed, confirmed=confirmed, unchanged=unchanged, missing=missing, unknown_types=unknown
    )
