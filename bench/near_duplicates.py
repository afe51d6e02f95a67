"""Measuring the near-duplicate rule (``make bench-near-duplicates``): seeded altered copies of real images mixed into
the originals, the product's hashes and the shipped model's embeddings, and a sweep of thresholds.

Every figure compares the copies with their source (recall) and distinct works with each other (false pairs).
"""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from catalogue.perceptual_hash import (
    EMBEDDING_MIN_SIMILARITY,
    EMBEDDING_NEIGHBOURS,
    HASH_MAX_DISTANCE,
    align_frame,
    alignment,
    image_hashes,
    is_candidate,
)
from inference.preprocessing import decode_image

ALTERATIONS = ("crop", "rescale", "jpeg40", "rotate90", "greyscale", "colour", "border")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff"}


def _crop(image: Image.Image, rng: random.Random) -> Image.Image:
    # 70-90 % of each side, at a random place.
    w, h = image.size
    fw, fh = rng.uniform(0.7, 0.9), rng.uniform(0.7, 0.9)
    cw, ch = max(8, int(w * fw)), max(8, int(h * fh))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return image.crop((x, y, x + cw, y + ch))


def _rescale(image: Image.Image, rng: random.Random) -> Image.Image:
    factor = rng.choice([rng.uniform(0.35, 0.7), rng.uniform(1.3, 2.0)])
    w, h = image.size
    return image.resize((max(16, int(w * factor)), max(16, int(h * factor))), Image.Resampling.BICUBIC)


def _rotate(image: Image.Image, rng: random.Random) -> Image.Image:
    return image.transpose(rng.choice([Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270]))


def _greyscale(image: Image.Image, rng: random.Random) -> Image.Image:
    return image.convert("L").convert("RGB")


def _colour(image: Image.Image, rng: random.Random) -> Image.Image:
    # A warmer or cooler cast, more or less saturated, a little brighter or darker: a rescan or a recolouring.
    shifted = ImageEnhance.Color(image).enhance(rng.uniform(0.5, 1.6))
    shifted = ImageEnhance.Brightness(shifted).enhance(rng.uniform(0.85, 1.15))
    offsets = np.array([rng.randint(-30, 30) for _ in range(3)], dtype=np.int16)
    pixels = np.clip(np.asarray(shifted, dtype=np.int16) + offsets, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def _border(image: Image.Image, rng: random.Random) -> Image.Image:
    side = max(2, int(min(image.size) * rng.uniform(0.04, 0.12)))
    colour = rng.choice([(255, 255, 255), (0, 0, 0), (200, 190, 170)])
    return ImageOps.expand(image, border=side, fill=colour)


_ALTER: dict[str, Callable[[Image.Image, random.Random], Image.Image]] = {
    "crop": _crop,
    "rescale": _rescale,
    "rotate90": _rotate,
    "greyscale": _greyscale,
    "colour": _colour,
    "border": _border,
}


def altered_bytes(image: Image.Image, kind: str, rng: random.Random) -> bytes:
    """The altered copy as a file (JPEG, quality 90; quality 40 for ``jpeg40``), as a curator would upload it."""
    out = io.BytesIO()
    if kind == "jpeg40":
        image.save(out, format="JPEG", quality=40)
    else:
        _ALTER[kind](image, rng).save(out, format="JPEG", quality=90)
    return out.getvalue()


@dataclass
class Corpus:
    """Originals then copies: hashes (n, 4) int64 (pHash and its three turns), embeddings (n, d), and for each copy
    its source's row and its alteration."""

    paths: list[str] = field(default_factory=list)
    sha256: list[str] = field(default_factory=list)
    hashes: list[tuple[int, ...]] = field(default_factory=list)
    images: list[Image.Image] = field(default_factory=list)  # model inputs, dropped after embedding
    frames: list[np.ndarray] = field(default_factory=list)  # what the alignment compares
    originals: int = 0
    source: list[int] = field(default_factory=list)  # per copy: the original's row
    kinds: list[str] = field(default_factory=list)  # per copy: its alteration


def image_files(folders: Iterable[Path]) -> list[Path]:
    return sorted(p for folder in folders for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def _add(corpus: Corpus, data: bytes, name: str, model_size: int) -> Image.Image | None:
    try:
        image = decode_image(data).image  # the upload's own decoding
    except Exception:
        return None
    corpus.paths.append(name)
    corpus.sha256.append(hashlib.sha256(data).hexdigest())
    corpus.hashes.append(image_hashes(image).all)
    corpus.frames.append(align_frame(image))
    small = image.copy()
    small.thumbnail((model_size * 2, model_size * 2))
    corpus.images.append(small)
    return image


def corpus_build(
    files: list[Path], *, copies: int, seed: int, model_size: int, progress: Callable[[], None]
) -> Corpus:
    """Decode and hash every original, then make ``copies`` altered copies of originals drawn with ``seed`` (the
    alterations in turn, so each kind gets a seventh of them)."""
    corpus = Corpus()
    decoded: list[Image.Image] = []
    for path in files:
        image = _add(corpus, path.read_bytes(), str(path), model_size)
        if image is not None:
            small = image.copy()
            small.thumbnail((1024, 1024))  # the copies are made from a bounded copy (memory)
            decoded.append(small)
        progress()
    corpus.originals = len(corpus.paths)
    rng = random.Random(seed)
    picks = rng.sample(range(corpus.originals), copies)
    for index, row in enumerate(picks):
        kind = ALTERATIONS[index % len(ALTERATIONS)]
        data = altered_bytes(decoded[row], kind, rng)
        if _add(corpus, data, f"{corpus.paths[row]}#{kind}", model_size) is not None:
            corpus.source.append(row)
            corpus.kinds.append(kind)
        progress()
    return corpus


def hash_distances(hashes: np.ndarray, *, turns: bool) -> np.ndarray:
    """(n, n) uint8: bits differing between row i's hash (closest of its four turns when ``turns``) and row j's."""
    plain = hashes[:, 0].astype(np.uint64)
    used = hashes.shape[1] if turns else 1
    best = np.full((len(plain), len(plain)), 64, dtype=np.uint8)
    for column in range(used):
        rotated = hashes[:, column].astype(np.uint64)
        bits = np.bitwise_count(rotated[:, None] ^ plain[None, :]).astype(np.uint8)
        np.minimum(best, bits, out=best)
    # Symmetric: a pair is as close as its closer direction.
    return np.minimum(best, best.T)


@dataclass(frozen=True)
class Outcome:
    recall: float
    found: int
    positives: int
    false_pairs: int
    distinct_pairs: int
    works_with_false_pair: int
    works: int
    recall_by_kind: dict[str, float]

    @property
    def false_pair_rate(self) -> float:
        return self.false_pairs / max(1, self.distinct_pairs)

    @property
    def work_false_rate(self) -> float:
        return self.works_with_false_pair / max(1, self.works)


class Scorer:
    """Recall of the (copy, source) pairs and false pairs among distinct works, for any candidate matrix."""

    def __init__(self, corpus: Corpus) -> None:
        n, o = len(corpus.paths), corpus.originals
        self.n = n
        self.copy_rows = np.arange(o, n)
        self.source_rows = np.array(corpus.source, dtype=np.int64)
        self.kinds = np.array(corpus.kinds)
        # Which originals each row shows: itself, or for a copy its source. Same origin = same work.
        origin = np.concatenate([np.arange(o), self.source_rows])
        same = origin[:, None] == origin[None, :]
        # Byte-identical files are caught by the sha256 before any of this: they are not pairs to judge.
        digests = np.array(corpus.sha256)
        identical = digests[:, None] == digests[None, :]
        upper = np.triu(np.ones((n, n), dtype=bool), k=1)
        self.distinct = upper & ~same & ~identical
        self.origin = origin

    def score(self, candidate: np.ndarray, *, ignore: np.ndarray | None = None) -> Outcome:
        candidate = candidate | candidate.T
        found = candidate[self.copy_rows, self.source_rows]
        false = candidate & self.distinct & (~ignore if ignore is not None else True)
        # A work (an original) "shows a false pair" when it, or a copy of it, is paired with another work.
        flagged = np.zeros(self.n, dtype=bool)
        rows, cols = np.nonzero(false)
        flagged[self.origin[rows]] = True
        flagged[self.origin[cols]] = True
        by_kind = {
            kind: float(found[self.kinds == kind].mean())
            for kind in ALTERATIONS
            if (self.kinds == kind).any()
        }
        works = int(len(np.unique(self.origin)))
        return Outcome(
            recall=float(found.mean()),
            found=int(found.sum()),
            positives=len(found),
            false_pairs=int(false.sum()),
            distinct_pairs=int(self.distinct.sum()),
            works_with_false_pair=int(flagged[:works].sum()),
            works=works,
            recall_by_kind=by_kind,
        )


def neighbour_pairs(similarity: np.ndarray, *, k: int) -> dict[tuple[int, int], tuple[int, float]]:
    """Each row's k nearest rows by embedding: (i, j), i < j -> (best rank either way, cosine)."""
    scores = similarity.copy()
    np.fill_diagonal(scores, -np.inf)
    order = np.argsort(-scores, axis=1)[:, :k]
    pairs: dict[tuple[int, int], tuple[int, float]] = {}
    for i, row in enumerate(order):
        for rank, j in enumerate(row):
            key = (min(i, int(j)), max(i, int(j)))
            previous = pairs.get(key)
            pairs[key] = (min(rank, previous[0]) if previous else rank, float(similarity[i, j]))
    return pairs


def alignments(corpus: Corpus, pairs: Iterable[tuple[int, int]], progress: Callable[[], None]) -> dict:
    """The product's alignment score of each pair."""
    scores = {}
    for i, j in pairs:
        scores[(i, j)] = alignment(corpus.frames[i], corpus.frames[j])
        progress()
    return scores


def data_duplicates(corpus: Corpus, turned: np.ndarray, similarity: np.ndarray) -> np.ndarray:
    """Pairs of originals that are the same image saved twice (pHash <= 4 and cosine >= 0.97): the data set's own
    duplicates, which any rule rightly pairs. Reported beside the strict figure, never instead of it."""
    o = corpus.originals
    mask = np.zeros_like(turned, dtype=bool)
    mask[:o, :o] = (turned[:o, :o] <= 4) & (similarity[:o, :o] >= 0.97)
    np.fill_diagonal(mask, False)
    return mask


Pairs = dict[tuple[int, int], tuple[int, float]]


def verified(pairs: Pairs, aligned: dict, turned: np.ndarray, *, k: int, minimum: float) -> np.ndarray:
    """Pairs within each other's k nearest by embedding whose images align at ``minimum`` or better."""
    matrix = np.zeros_like(turned, dtype=bool)
    for (i, j), (rank, cosine) in pairs.items():
        matrix[i, j] = rank < k and cosine >= EMBEDDING_MIN_SIMILARITY and aligned[(i, j)] >= minimum
    return matrix


def product_rule(pairs: Pairs, aligned: dict, turned: np.ndarray) -> np.ndarray:
    """The product's own rule (:func:`catalogue.perceptual_hash.is_candidate`) on every pair it looks at."""
    matrix = np.zeros_like(turned, dtype=bool)
    for i, j in zip(*np.nonzero(np.triu(turned <= HASH_MAX_DISTANCE, 1)), strict=True):
        matrix[i, j] = is_candidate(hash_bits=int(turned[i, j]), nearest=False, similarity=None, aligned=None)
    for (i, j), (rank, cosine) in pairs.items():
        matrix[i, j] |= is_candidate(
            hash_bits=int(turned[i, j]),
            nearest=rank < EMBEDDING_NEIGHBOURS,
            similarity=cosine,
            aligned=aligned[(i, j)],
        )
    return matrix
