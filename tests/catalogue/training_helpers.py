"""A small catalogue to train on: generated images with a strong colour cue per type, so a tiny network learns the
types in a few epochs, and a chosen side of the gold split for each work (decided here from the image's own sha256,
independently of the code under test)."""

from __future__ import annotations

import hashlib
import io
import itertools

import numpy as np
from PIL import Image

from catalogue.models import Artwork, ArtworkType, LabelCorrection
from tests.factories import ArtworkFactory

SLUGS = ["drawings", "engraving", "iconography", "painting", "sculpture"]
# One colour per type (by its index in the class list): far apart, so colour alone tells the types apart.
PALETTE = [
    (220, 40, 40),
    (40, 200, 40),
    (40, 60, 220),
    (230, 210, 40),
    (200, 40, 210),
    (30, 210, 210),
    (120, 120, 120),
]
_seeds = itertools.count(10_000)


def cue_image(colour: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = np.ones((40, 48, 3), np.float32) * np.asarray(PALETTE[colour], np.float32)
    pixels = np.clip(pixels + rng.normal(0, 12, pixels.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


def in_gold_split(data: bytes) -> bool:
    """The documented rule, computed here from the file's bytes: int(sha256[:8], 16) % 5 == 0."""
    return int(hashlib.sha256(data).hexdigest()[:8], 16) % 5 == 0


def cue_bytes(colour: int, *, gold_split: bool) -> bytes:
    """A fresh cue image of ``colour`` on the chosen side of the gold split."""
    while True:
        data = cue_image(colour, next(_seeds))
        if in_gold_split(data) == gold_split:
            return data


def work(slug: str, *, colour: int | None = None, gold_split: bool, verified: bool = True) -> Artwork:
    """A ready artwork labelled ``slug``: verified (set by a curator) or imported."""
    colour = SLUGS.index(slug) if colour is None else colour
    return ArtworkFactory(
        data=cue_bytes(colour, gold_split=gold_split),
        status=Artwork.Status.READY,
        curator_type=ArtworkType.objects.get(slug=slug),
        label_source=LabelCorrection.Source.PORTAL if verified else LabelCorrection.Source.IMPORT,
    )


def training_catalogue(
    slugs: list[str] | None = None, *, gold: int = 5, train: int = 8, imported_gold_split: int = 1
) -> dict[str, list[Artwork]]:
    """For each type: ``gold`` gold works (verified, gold split), ``train`` verified works outside the gold split
    and ``imported_gold_split`` works of the gold split with an imported label (they train: not verified)."""
    made: dict[str, list[Artwork]] = {"gold": [], "train": [], "imported_gold_split": []}
    for slug in slugs or SLUGS:
        made["gold"] += [work(slug, gold_split=True) for _ in range(gold)]
        made["train"] += [work(slug, gold_split=False) for _ in range(train)]
        made["imported_gold_split"] += [
            work(slug, gold_split=True, verified=False) for _ in range(imported_gold_split)
        ]
    return made
