"""Reading near-duplicates: the triage queue (open pairs, most alike first) and the photos of one work."""

from __future__ import annotations

from django.db.models import F, Q, QuerySet

from catalogue.models import Artwork, NearDuplicatePair


def near_duplicate_queue() -> QuerySet[NearDuplicatePair]:
    """Pairs still to decide, most alike first; pairs whose two works were linked meanwhile (through a third
    photo) are left out."""
    return (
        NearDuplicatePair.objects.filter(status=NearDuplicatePair.Status.OPEN)
        .exclude(Q(artwork_a__work_group__isnull=False) & Q(artwork_a__work_group=F("artwork_b__work_group")))
        .select_related("artwork_a", "artwork_b")
        .order_by("-alignment", "hash_distance", "id")
    )


def artwork_photos(*, artwork: Artwork) -> QuerySet[Artwork]:
    """The other photos of the artwork's work (none when it is linked with no other)."""
    if artwork.work_group_id is None:
        return Artwork.objects.none()
    return Artwork.objects.filter(work_group_id=artwork.work_group_id).exclude(pk=artwork.pk).order_by("pk")


def artwork_open_pairs(*, artwork: Artwork) -> QuerySet[NearDuplicatePair]:
    return near_duplicate_queue().filter(Q(artwork_a=artwork) | Q(artwork_b=artwork))
