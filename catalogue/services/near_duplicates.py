"""Other photographs of the same work: finding candidate pairs (at upload, at import, over the whole catalogue) and
the curators' decisions on them.

A pair is proposed by the rule of :mod:`catalogue.perceptual_hash` (close pHashes at the closest quarter turn, or
the nearest work by embedding whose image aligns with this one). A pair is proposed once: its row keeps the
decision, so a pair decided *different* is never proposed again, whatever search runs later. *Same work* puts both
artworks in one :class:`WorkGroup` (merging groups), which the artwork page and the similar-works lists read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from celery import current_app
from django.db import transaction
from django.utils import timezone
from PIL import Image

from catalogue.models import Artwork, NearDuplicatePair, WorkGroup
from catalogue.perceptual_hash import (
    EMBEDDING_NEIGHBOURS,
    HASH_MAX_DISTANCE,
    align_frame,
    alignment,
    image_hashes,
    is_candidate,
)
from catalogue.selectors.artworks import artwork_prediction
from catalogue.selectors.similarity import embedding_nearest
from catalogue.services.history import artwork_changes_record

logger = logging.getLogger(__name__)

FIND_TASK = "catalogue.tasks.near_duplicates_find"
SCAN_TASK = "catalogue.tasks.near_duplicates_scan"
_MASK = (1 << 64) - 1
_BLOCK = 2048  # rows compared at once in the all-pairs hash pass (a 2048 x N uint8 block at a time)


class DecisionRefused(Exception):
    """The decision cannot be taken (unknown decision, pair decided already)."""


@dataclass
class Found:
    pairs: int = 0  # new pairs recorded
    hashed: int = 0  # artworks whose hashes were computed (works catalogued before hashing existed)


def near_duplicates_enqueue(*, artwork_ids: Sequence[int]) -> None:
    """Look for other photos of these (newly classified) artworks in the background; logged, never raised, when
    the broker is down: the next catalogue scan finds them."""
    try:
        current_app.send_task(FIND_TASK, args=[list(artwork_ids)], retry=False)
    except Exception:  # kombu and redis raise many types
        logger.warning("broker unreachable; near-duplicates of %s wait for the next scan", artwork_ids)


def near_duplicates_scan_enqueue() -> bool:
    try:
        current_app.send_task(SCAN_TASK, retry=False)
    except Exception:
        logger.warning("broker unreachable; the near-duplicate scan was not started", exc_info=True)
        return False
    return True


def _bits(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.bitwise_count(a.astype(np.uint64)[:, None] ^ b.astype(np.uint64)[None, :])


def _turn_matrix(rows: list[tuple[int, int | None, list[int]]]) -> tuple[np.ndarray, np.ndarray]:
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    hashes = np.array([[r[1], *(list(r[2]) + [r[1]] * 3)[:3]] for r in rows], dtype=np.int64).reshape(-1, 4)
    return ids, hashes


def _hash_pairs(new_ids: Iterable[int] | None) -> list[tuple[int, int, int]]:
    """(a, b, bits) with bits <= HASH_MAX_DISTANCE at the closest quarter turn: the new artworks against every
    hashed one (``new_ids``), or every hashed artwork against every other (None), in blocks."""
    rows = list(Artwork.objects.filter(phash__isnull=False).values_list("pk", "phash", "phash_turns"))
    if not rows:
        return []
    ids, hashes = _turn_matrix(rows)
    chosen = np.arange(len(ids)) if new_ids is None else np.flatnonzero(np.isin(ids, list(new_ids)))
    found = []
    for start in range(0, len(chosen), _BLOCK):
        block = chosen[start : start + _BLOCK]
        best = np.full((len(block), len(ids)), 64, dtype=np.uint8)
        for turn in range(4):
            np.minimum(best, _bits(hashes[block, turn], hashes[:, 0]).astype(np.uint8), out=best)
        for i, j in zip(*np.nonzero(best <= HASH_MAX_DISTANCE), strict=True):
            a, b = int(ids[block[i]]), int(ids[j])
            if a != b:
                found.append((a, b, int(best[i, j])))
    return found


def _frame(artwork: Artwork) -> np.ndarray | None:
    """The alignment's view of a stored artwork, from its thumbnail (small, and already decoded once)."""
    name = str(artwork.thumbnail.name or artwork.image.name)
    try:
        with artwork.thumbnail.storage.open(name, "rb") as handle:
            with Image.open(handle) as image:
                return align_frame(image)
    except (OSError, ValueError):
        logger.warning("near-duplicates: cannot read %s", name, exc_info=True)
        return None


def _embedding_pairs(artworks: Iterable[Artwork]) -> list[tuple[int, int, float, float]]:
    """(a, b, cosine, alignment) for each artwork and its nearest work by embedding, when the rule takes them."""
    found = []
    for artwork in artworks:
        prediction = artwork_prediction(artwork=artwork)
        if prediction is None:
            continue
        nearest = embedding_nearest(
            embedding=np.asarray(prediction.embedding, dtype=np.float32),
            version=prediction.model_version,
            k=EMBEDDING_NEIGHBOURS,
            exclude_artwork_id=artwork.pk,
        )
        for work in nearest:
            if not is_candidate(hash_bits=None, nearest=True, similarity=work.similarity, aligned=1.0):
                continue  # not similar enough to be worth aligning
            a, b = _frame(artwork), _frame(work.artwork)
            aligned = alignment(a, b) if a is not None and b is not None else None
            if is_candidate(hash_bits=None, nearest=True, similarity=work.similarity, aligned=aligned):
                found.append((artwork.pk, work.artwork.pk, work.similarity, float(aligned or 0.0)))
    return found


def _record(
    hash_pairs: list[tuple[int, int, int]],
    embedding_pairs: list[tuple[int, int, float, float]],
    *,
    found_by: str,
) -> int:
    """Store the pairs not seen before (whatever their decision) and not in one work already."""
    merged: dict[tuple[int, int], dict[str, float | int | None]] = {}
    for a, b, bits in hash_pairs:
        merged.setdefault((min(a, b), max(a, b)), {"hash_distance": bits, "alignment": 1.0})
    for a, b, cosine, aligned in embedding_pairs:
        entry = merged.setdefault((min(a, b), max(a, b)), {"alignment": aligned})
        entry["similarity"] = cosine
        entry["alignment"] = max(float(entry.get("alignment") or 0.0), aligned)
    if not merged:
        return 0
    ids = {i for pair in merged for i in pair}
    groups = dict(Artwork.objects.filter(pk__in=ids).values_list("pk", "work_group_id"))
    # A pair seen before keeps its row and its decision: a pair decided "different" is never proposed again.
    seen = set(
        NearDuplicatePair.objects.filter(artwork_a_id__in=ids, artwork_b_id__in=ids).values_list(
            "artwork_a_id", "artwork_b_id"
        )
    )
    rows = [
        NearDuplicatePair(artwork_a_id=a, artwork_b_id=b, found_by=found_by, **values)
        for (a, b), values in merged.items()
        if (a, b) not in seen
        and a in groups
        and b in groups
        and (groups[a] is None or groups[a] != groups[b])
    ]
    NearDuplicatePair.objects.bulk_create(
        rows, ignore_conflicts=True
    )  # a concurrent search may record one too
    return len(rows)


def near_duplicates_find(*, artwork_ids: Sequence[int], found_by: str) -> int:
    """Look for other photos of the given artworks (new ones: an upload, an import batch) in the catalogue; record
    the new candidate pairs and return how many."""
    ids = list(artwork_ids)
    if not ids:
        return 0
    artworks = list(Artwork.objects.filter(pk__in=ids, status=Artwork.Status.READY))
    return _record(_hash_pairs(ids), _embedding_pairs(artworks), found_by=found_by)


def near_duplicates_scan(*, progress: Callable[[int, int], None] | None = None) -> Found:
    """The whole catalogue: hash the works catalogued before hashing existed (from their thumbnails), then every
    pair by hash and every work's nearest by embedding. Idempotent: a second scan adds nothing."""
    result = Found()
    for artwork in Artwork.objects.filter(phash__isnull=True).iterator(chunk_size=500):
        frame_source = artwork.thumbnail if artwork.thumbnail else artwork.image
        try:
            with frame_source.open("rb") as handle, Image.open(handle) as image:
                hashes = image_hashes(image)
        except (OSError, ValueError):
            logger.warning("near-duplicates: cannot hash artwork %s", artwork.pk, exc_info=True)
            continue
        Artwork.objects.filter(pk=artwork.pk).update(phash=hashes.phash, phash_turns=list(hashes.turns))
        result.hashed += 1
    ready = Artwork.objects.filter(status=Artwork.Status.READY).order_by("pk")
    total = ready.count()
    embedding_pairs = []
    for done, artwork in enumerate(ready.iterator(chunk_size=500), start=1):
        embedding_pairs += _embedding_pairs([artwork])
        if progress is not None:
            progress(done, total)
    result.pairs = _record(_hash_pairs(None), embedding_pairs, found_by=NearDuplicatePair.Found.SCAN)
    return result


def near_duplicate_decide(
    *, pair: NearDuplicatePair, decision: str, user: object, source: str
) -> NearDuplicatePair:
    """*same*: the two artworks are photos of one work (their groups merge); *different*: remembered, never
    proposed again. Raises :class:`DecisionRefused` for another decision or a pair decided already."""
    if decision not in (NearDuplicatePair.Status.SAME, NearDuplicatePair.Status.DIFFERENT):
        raise DecisionRefused("Decide “same” or “different”.")
    with transaction.atomic():
        locked = NearDuplicatePair.objects.select_for_update().get(pk=pair.pk)
        if locked.status != NearDuplicatePair.Status.OPEN:
            raise DecisionRefused(f"This pair was decided already ({locked.get_status_display()}).")
        if decision == NearDuplicatePair.Status.SAME:
            works_link(artwork_ids=[locked.artwork_a_id, locked.artwork_b_id], user=user, source=source)
        locked.status = decision
        locked.decided_by = user if getattr(user, "pk", None) else None  # type: ignore[assignment]
        locked.decided_at = timezone.now()
        locked.save(update_fields=["status", "decided_by", "decided_at"])
    return locked


def works_link(*, artwork_ids: Sequence[int], user: object, source: str) -> WorkGroup:
    """Make the artworks photos of one work: one group, merging the groups they were in (recorded in each moved
    artwork's history)."""
    with transaction.atomic():
        artworks = list(Artwork.objects.select_for_update().filter(pk__in=artwork_ids).order_by("pk"))
        groups = sorted({a.work_group_id for a in artworks if a.work_group_id is not None})
        group = WorkGroup.objects.get(pk=groups[0]) if groups else WorkGroup.objects.create()
        members = list(
            Artwork.objects.select_for_update().filter(work_group_id__in=groups[1:]).order_by("pk")
        ) + [a for a in artworks if a.work_group_id is None]
        for artwork in {a.pk: a for a in members}.values():
            old = artwork.work_group_id
            Artwork.objects.filter(pk=artwork.pk).update(work_group=group)
            artwork_changes_record(
                artwork=artwork, changes={"work_group": (old, group.pk)}, user=user, source=source
            )
        WorkGroup.objects.filter(pk__in=groups[1:]).delete()
    return group
