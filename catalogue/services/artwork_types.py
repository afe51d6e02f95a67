"""The catalogue's types. The five default types are seeded (migration 0002); curators add more (e.g. "photograph",
"textile") in the admin. A new type is a label at once (the label forms and the API accept any type of the
catalogue); a trained version learns it once it has enough verified works
(:func:`catalogue.selectors.training.training_classes`), and a version that does not know it never predicts it.

The slug is the name a model's card uses for the type (its ``classes``, the keys of stored probabilities), so it may
change only while no model version knows the type; the display name may always change. A type in use (labelled
works, predictions, the audit trail, label checks, a model version) is never deleted.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max, Q
from django.utils.text import slugify

from catalogue.models import Artwork, ArtworkType, LabelCorrection, LabelIssue, Prediction
from catalogue.selectors.artworks import artwork_type_by_slug
from inference import registry
from inference.models import ModelVersion

SLUG_MAX = ArtworkType._meta.get_field("slug").max_length or 40
NAME_MAX = ArtworkType._meta.get_field("name").max_length or 80


def artwork_type_known_by_models(*, slug: str) -> list[str]:
    """The model versions whose class list names ``slug`` (registered, or only on disk)."""
    known = set(ModelVersion.objects.filter(card__classes__contains=[slug]).values_list("version", flat=True))
    known.update(
        str(card["version"]) for card in registry.list_cards() if slug in (card.get("classes") or ())
    )
    return sorted(known)


def artwork_type_uses(*, artwork_type: ArtworkType) -> list[str]:
    """What uses a type, in words (empty: nothing does, it may be deleted)."""
    uses = []
    labelled = Artwork.objects.filter(curator_type=artwork_type).count()
    if labelled:
        uses.append(f"{labelled} labelled works")
    if Prediction.objects.filter(predicted_type=artwork_type).exists():
        uses.append("predictions")
    if LabelCorrection.objects.filter(Q(from_type=artwork_type) | Q(to_type=artwork_type)).exists():
        uses.append("the audit trail")
    if LabelIssue.objects.filter(Q(label_type=artwork_type) | Q(suggested_type=artwork_type)).exists():
        uses.append("label checks")
    versions = artwork_type_known_by_models(slug=artwork_type.slug)
    if versions:
        uses.append("model versions " + ", ".join(versions))
    return uses


def artwork_type_validate(
    *, name: str, slug: str, artwork_type: ArtworkType | None = None
) -> tuple[str, str]:
    """The cleaned (name, slug) of a new type or of ``artwork_type`` renamed; raises ``ValidationError``.

    An empty slug is made from the name. Neither may be taken by another type, nor read as another type's name
    (labels are found by name, singular or plural: "drawing" would be the drawings).
    """
    name = (name or "").strip()[:NAME_MAX]
    slug = slugify(slug or name).replace("-", "_")
    if not name:
        raise ValidationError({"name": "Give the type a name."})
    if not slug or len(slug) > SLUG_MAX:
        raise ValidationError({"slug": f"Give a slug of 1 to {SLUG_MAX} letters, digits or underscores."})
    others = ArtworkType.objects.all()
    if artwork_type is not None:
        others = others.exclude(pk=artwork_type.pk)
    for field, value in (("slug", slug), ("name", name)):
        clash = artwork_type_by_slug(value)
        if clash is not None and clash != artwork_type:
            raise ValidationError(
                {field: f"{value!r} would be read as the type {clash.name} ({clash.slug})."}
            )
    if others.filter(Q(slug__iexact=slug) | Q(name__iexact=name)).exists():
        raise ValidationError("Another type has this name or slug.")
    if artwork_type is not None and slug != artwork_type.slug:
        versions = artwork_type_known_by_models(slug=artwork_type.slug)
        if versions:
            raise ValidationError(
                {
                    "slug": f"The model versions {', '.join(versions)} know this type as {artwork_type.slug!r}: "
                    "its slug cannot change (its name can)."
                }
            )
    return name, slug


def artwork_type_create(*, name: str, slug: str = "") -> ArtworkType:
    """Add a type at the end of the catalogue's order. Raises ``ValidationError``."""
    name, slug = artwork_type_validate(name=name, slug=slug)
    with transaction.atomic():
        last = ArtworkType.objects.aggregate(last=Max("position"))["last"]
        return ArtworkType.objects.create(name=name, slug=slug, position=(last or 0) + 1)


def artwork_type_update(*, artwork_type: ArtworkType, name: str, slug: str) -> ArtworkType:
    """Rename a type (its slug only while no model version knows it). Raises ``ValidationError``."""
    name, slug = artwork_type_validate(name=name, slug=slug, artwork_type=artwork_type)
    artwork_type.name, artwork_type.slug = name, slug
    artwork_type.save(update_fields=["name", "slug"])
    return artwork_type


def artwork_type_delete(*, artwork_type: ArtworkType) -> None:
    """Delete a type nothing uses (added by mistake). Raises ``ValidationError`` saying what uses it."""
    uses = artwork_type_uses(artwork_type=artwork_type)
    if uses:
        raise ValidationError(f"{artwork_type.name} is used ({'; '.join(uses)}): it cannot be deleted.")
    artwork_type.delete()
