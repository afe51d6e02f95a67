"""How well the mislabel detector finds planted label errors (``make bench-label-issues``).

On a labelled folder (``<type>/<images>``), a seeded share of the labels is flipped to another type at random, and
the detector the product runs (:mod:`inference.label_quality`: frozen features, out-of-fold probabilities,
cleanlab) looks for them. The data holds doubtful labels of its own, so besides the naive precision the figures
count the flagged set's precision without the works the same detector already flags on the unflipped labels.

Frozen features are the slow part; they are cached per backbone pass and file sha256 under ``var/bench/`` so a
rerun (or another attempt) only computes what it has not seen.
"""

from __future__ import annotations

import csv
import hashlib
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from inference.datasets import LabelledFile, scan_folder
from inference.label_quality import (
    DEFAULT_METHOD,
    TOP,
    Detection,
    FeatureExtractor,
    FeatureSpec,
    Method,
    ProbeSpec,
    decode_for_features,
    detect,
)

Step = Callable[[str, int, int], None]  # (what, done, total)

#: Every layer the cache keeps per pass: the attempts choose among them.
CACHED_LAYERS = (TOP, "stage6", "stage5")

_LITE0 = FeatureSpec()
#: Training rows per fold on the art-images training set (5 folds of 2,601 works).
_FOLD_ROWS = 2080


def _c(c: float) -> float:
    """The per-row strength that is scikit-learn's ``C=c`` on these folds (how the attempts were first tuned)."""
    return 1.0 / (c * _FOLD_ROWS)


_BOTH = FeatureSpec(backbones=(("lite0", 224), ("lite1", 240)), mirrored=True)

#: The attempts measured (docs/label-quality.md), each adding one thing to the one before; "product" is what label
#: checks run (inference.label_quality.DEFAULT_METHOD).
ATTEMPTS: dict[str, Method] = {
    "baseline": Method(features=_LITE0, probe=ProbeSpec(alpha=_c(1.0))),
    "linear-probe": Method(features=_LITE0, probe=ProbeSpec(alpha=_c(0.01))),
    "stronger-l2": Method(features=_LITE0, probe=ProbeSpec(alpha=_c(0.001))),
    "mirrored": Method(features=replace(_LITE0, mirrored=True), probe=ProbeSpec(alpha=_c(0.001))),
    "lite0+lite1": Method(features=_BOTH, probe=ProbeSpec(alpha=_c(0.001))),
    "+stage6": Method(features=replace(_BOTH, layers=(TOP, "stage6")), probe=ProbeSpec(alpha=_c(0.001))),
    "product": DEFAULT_METHOD,
    "product-noise-rate": replace(
        DEFAULT_METHOD, issues=replace(DEFAULT_METHOD.issues, filter_by="prune_by_noise_rate")
    ),
    "product-2-rounds": replace(DEFAULT_METHOD, rounds=2),
    "product-margin": replace(
        DEFAULT_METHOD, issues=replace(DEFAULT_METHOD.issues, quality="normalized_margin")
    ),
}


@dataclass
class Corpus:
    """The labelled files, their sha256 and the features of every backbone pass computed so far."""

    files: list[LabelledFile]
    sha256: list[str]
    labels: np.ndarray
    classes: tuple[str, ...]
    parts: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    extract_seconds: dict[str, float] = field(default_factory=dict)


def corpus_read(root: Path) -> Corpus:
    """The labelled files under ``root`` with their sha256 (no decoding yet)."""
    files, _ = scan_folder(root)
    if not files:
        raise ValueError(f"No labelled images under {root}: expected one sub-folder per type.")
    with ThreadPoolExecutor(max_workers=4) as pool:
        digests = list(pool.map(lambda f: hashlib.sha256(f.read_bytes()).hexdigest(), files))
    from inference.architectures import CLASSES

    return Corpus(
        files=files,
        sha256=digests,
        labels=np.asarray([f.label for f in files], dtype=np.int64),
        classes=tuple(CLASSES),
    )


def features_ensure(corpus: Corpus, spec: FeatureSpec, cache_dir: Path, progress: Step | None = None) -> None:
    """Fill ``corpus.parts`` with every pass ``spec`` needs, from the cache or computed (and cached)."""
    extractor = FeatureExtractor(replace(spec, layers=CACHED_LAYERS))
    for backbone_pass in spec.passes():
        if backbone_pass.key in corpus.parts:
            continue
        path = cache_dir / f"{backbone_pass.key}.npz"
        cached: dict[str, dict[str, np.ndarray]] = {}
        if path.is_file():
            with np.load(path) as stored:  # each stored[...] reads the whole array: read each once
                arrays = {layer: stored[layer] for layer in CACHED_LAYERS}
                for i, sha in enumerate(stored["sha256"]):
                    cached[str(sha)] = {layer: arrays[layer][i] for layer in CACHED_LAYERS}
        missing = [i for i, sha in enumerate(corpus.sha256) if sha not in cached]
        started = time.perf_counter()
        for start in range(0, len(missing), 128):
            chunk = missing[start : start + 128]
            images = [decode_for_features(corpus.files[i].read_bytes()) for i in chunk]
            pooled = extractor.pass_features(images, backbone_pass)
            for row, i in enumerate(chunk):
                cached[corpus.sha256[i]] = {layer: pooled[layer][row] for layer in CACHED_LAYERS}
            if progress is not None:
                progress(backbone_pass.key, min(start + 128, len(missing)), len(missing))
        corpus.extract_seconds[backbone_pass.key] = time.perf_counter() - started
        if missing:
            cache_dir.mkdir(parents=True, exist_ok=True)
            shas = sorted(cached)
            arrays = {layer: np.stack([cached[s][layer] for s in shas]) for layer in CACHED_LAYERS}
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, sha256=np.asarray(shas), **arrays)
            tmp.replace(path)
        corpus.parts[backbone_pass.key] = {
            layer: np.stack([cached[sha][layer] for sha in corpus.sha256]) for layer in CACHED_LAYERS
        }


def labels_flip(
    labels: np.ndarray, rate: float, *, num_classes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(noisy labels, flipped indices): ``rate`` of the rows, chosen at random, get another class at random."""
    rng = np.random.default_rng(seed)
    flipped = np.sort(rng.choice(len(labels), size=int(round(rate * len(labels))), replace=False))
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + rng.integers(1, num_classes, size=len(flipped))) % num_classes
    return noisy, flipped


@dataclass(frozen=True)
class Timed:
    detection: Detection
    seconds: float


def timed_detect(features: np.ndarray, labels: np.ndarray, method: Method, *, num_classes: int) -> Timed:
    """The product's detector (:func:`inference.label_quality.detect`), timed."""
    started = time.perf_counter()
    detection = detect(features, labels, method=method, num_classes=num_classes)
    return Timed(detection, time.perf_counter() - started)


def noise_figures(timed: Timed, flipped: np.ndarray, before: np.ndarray) -> dict[str, float]:
    """Recall of the flipped labels, precision naive and without the works flagged before flipping (those not
    flipped: the data's own doubtful labels), and the flipped share of the K lowest-quality labels."""
    detection = timed.detection
    n = len(detection.flagged)
    is_flipped = np.zeros(n, bool)
    is_flipped[flipped] = True
    hits = int(np.sum(detection.flagged & is_flipped))
    flagged = int(detection.flagged.sum())
    fresh = int(np.sum(detection.flagged & ~(before & ~is_flipped)))
    top = np.argsort(detection.quality, kind="stable")[: len(flipped)]
    return {
        "flipped": len(flipped),
        "flagged": flagged,
        "recall": hits / max(len(flipped), 1),
        "precision": hits / max(flagged, 1),
        "precision_new": hits / max(fresh, 1),
        "top_k": float(np.mean(is_flipped[top])),
        "seconds": timed.seconds,
    }


def attempt_run(
    corpus: Corpus, method: Method, *, rates: Sequence[float], seeds: Sequence[int]
) -> tuple[Timed, dict[float, dict[str, float]]]:
    """The detector on the unflipped labels, then at each noise rate (figures averaged over ``seeds``)."""
    features = method.features.combine(corpus.parts)
    k = len(corpus.classes)
    clean = timed_detect(features, corpus.labels, method, num_classes=k)
    figures: dict[float, dict[str, float]] = {}
    for rate in rates:
        runs = []
        for seed in seeds:
            noisy, flipped = labels_flip(corpus.labels, rate, num_classes=k, seed=seed)
            timed = timed_detect(features, noisy, method, num_classes=k)
            runs.append(noise_figures(timed, flipped, clean.detection.flagged))
        figures[rate] = {key: float(np.mean([run[key] for run in runs])) for key in runs[0]}
        figures[rate]["top_k_min"] = float(min(run["top_k"] for run in runs))
    return clean, figures


def ranking_write_csv(corpus: Corpus, clean: Detection, path: Path) -> None:
    """Every work, most doubtful first: sha256, path, label, suggested type and probabilities, quality, flagged."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suggested = clean.probabilities.argmax(axis=1)
    rows = np.arange(len(corpus.labels))
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "sha256",
                "path",
                "label",
                "suggested",
                "suggested_probability",
                "label_probability",
                "quality",
                "flagged",
            ]
        )
        for i in np.argsort(clean.quality, kind="stable"):
            writer.writerow(
                [
                    corpus.sha256[i],
                    corpus.files[i].relative,
                    corpus.classes[corpus.labels[i]],
                    corpus.classes[suggested[i]],
                    f"{clean.probabilities[i, suggested[i]]:.4f}",
                    f"{clean.probabilities[rows[i], corpus.labels[i]]:.4f}",
                    f"{clean.quality[i]:.4f}",
                    int(clean.flagged[i]),
                ]
            )


def contact_sheet_write(
    corpus: Corpus, clean: Detection, path: Path, *, count: int = 60, columns: int = 10
) -> None:
    """A PNG of the ``count`` works the detector doubts most: thumbnail, label, suggested type, quality."""
    cell, caption = 180, 54
    order = np.argsort(clean.quality, kind="stable")[:count]
    rows = -(-len(order) // columns)
    sheet = Image.new("RGB", (columns * cell, rows * (cell + caption)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=12)
    suggested = clean.probabilities.argmax(axis=1)
    for slot, i in enumerate(order):
        x, y = (slot % columns) * cell, (slot // columns) * (cell + caption)
        image = decode_for_features(corpus.files[i].read_bytes())
        image.thumbnail((cell - 8, cell - 8))
        sheet.paste(image, (x + (cell - image.width) // 2, y + 4 + (cell - 8 - image.height) // 2))
        text = (
            f"#{slot + 1} label {corpus.classes[corpus.labels[i]]}"
            f"{' FLAGGED' if clean.flagged[i] else ''}\n"
            f"-> {corpus.classes[suggested[i]]} {clean.probabilities[i, suggested[i]]:.2f}  q={clean.quality[i]:.3f}\n"
            f"{Path(corpus.files[i].relative).name[:28]}"
        )
        draw.multiline_text((x + 4, y + cell), text, fill="black", font=font, spacing=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
