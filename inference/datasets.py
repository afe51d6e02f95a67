"""Labelled image folders for training and evaluation: ``<root>/<type>/<image files>``.

Type folder names are matched to the class slugs case-insensitively, singular or plural (``Drawing``,
``engravings``, ``Sculptures``...). Files are decoded with the shared preprocessing
(:func:`inference.preprocessing.decode_image` then :func:`~inference.preprocessing.to_model_input`), the same path
uploads take; unreadable files are skipped and counted. Decoding is the bottleneck, so a small thread pool does it
(Pillow releases the GIL while decoding and resizing).

Pixels are kept as uint8: ``to_model_input`` resizes an 8-bit image, so its float32 values are whole numbers and
the round trip is exact, at a quarter of the memory.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance

from inference.classes import CLASSES
from inference.preprocessing import ImageRejected, decode_image, to_model_input

Progress = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class LabelledFile:
    path: Path
    relative: str  # POSIX path relative to the data root: the fingerprint's key
    label: int
    # Where the bytes come from when they are not a local file (e.g. a storage backend); default: ``path``.
    opener: Callable[[], bytes] | None = field(default=None, compare=False, repr=False)

    def read_bytes(self) -> bytes:
        return self.opener() if self.opener is not None else self.path.read_bytes()


@dataclass
class ImageSet:
    """Decoded, labelled images at one input size."""

    images: np.ndarray  # (N, S, S, 3) uint8
    labels: np.ndarray  # (N,) int64, indexes into `classes`
    classes: tuple[str, ...]
    input_size: int
    paths: list[str]  # relative paths, in the order of `images`
    fingerprint: str
    root: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    ignored_folders: list[str] = field(default_factory=list)  # sub-folders that name no type
    files: list[LabelledFile] = field(default_factory=list)  # the source of each image (for augmented views)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {slug: int(n) for slug, n in zip(self.classes, counts, strict=True)}

    def summary(self) -> dict[str, Any]:
        """What the model card records about its data."""
        return {
            "dir": self.root,
            "fingerprint": self.fingerprint,
            "n": len(self),
            "counts": self.counts,
            "skipped": len(self.skipped),
        }

    def subset(self, indices: np.ndarray) -> ImageSet:
        return ImageSet(
            images=self.images[indices],
            labels=self.labels[indices],
            classes=self.classes,
            input_size=self.input_size,
            paths=[self.paths[i] for i in indices],
            fingerprint=self.fingerprint,
            root=self.root,
            files=[self.files[i] for i in indices] if self.files else [],
        )

    def as_float(self) -> np.ndarray:
        return self.images.astype(np.float32)


def match_type(folder_name: str, classes: Sequence[str] = CLASSES) -> int | None:
    """Index of the class a folder name stands for (case-insensitive; singular or plural), or None."""
    name = folder_name.strip().lower().replace(" ", "_").replace("-", "_")
    for index, slug in enumerate(classes):
        stem = slug[:-1] if slug.endswith("s") else slug
        forms = {slug, stem, stem + "s", stem + "es"}
        if stem.endswith("y"):
            forms.add(stem[:-1] + "ies")  # iconography / iconographies
        if name in forms:
            return index
    return None


def scan_folder(root: Path | str, classes: Sequence[str] = CLASSES) -> tuple[list[LabelledFile], list[str]]:
    """The labelled files under ``root`` (recursively inside each type folder; hidden files left out), sorted by
    relative path, and the names of sub-folders that name no type."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    files: list[LabelledFile] = []
    ignored: list[str] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        label = match_type(folder.name, classes)
        if label is None:
            ignored.append(folder.name)
            continue
        for path in folder.rglob("*"):
            if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts):
                files.append(LabelledFile(path=path, relative=path.relative_to(root).as_posix(), label=label))
    files.sort(key=lambda f: f.relative)
    return files, ignored


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _read_one(item: LabelledFile, input_size: int) -> tuple[str, np.ndarray | None, str]:
    """(file sha256, pixels or None, reason when skipped)."""
    try:
        data = item.read_bytes()
    except OSError as exc:
        return "", None, f"unreadable: {exc.strerror or exc}"
    digest = hashlib.sha256(data).hexdigest()
    try:
        pixels = to_model_input(decode_image(data).image, input_size)
    except ImageRejected as exc:
        return digest, None, exc.reason
    return digest, pixels.astype(np.uint8), ""


def read_files(
    files: Sequence[LabelledFile],
    input_size: int,
    *,
    classes: Sequence[str] = CLASSES,
    root: str = "",
    workers: int | None = None,
    progress: Progress | None = None,
) -> ImageSet:
    """Decode ``files`` into an :class:`ImageSet`. The fingerprint covers every file given (skipped ones too):
    sha256 over the sorted ``relative path \\0 file sha256`` lines."""
    ordered = sorted(files, key=lambda f: f.relative)
    images: list[np.ndarray] = []
    labels: list[int] = []
    paths: list[str] = []
    kept: list[LabelledFile] = []
    skipped: list[tuple[str, str]] = []
    fingerprint = hashlib.sha256()
    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        # map() keeps the order, so the result (and the fingerprint) do not depend on thread timing.
        results = pool.map(lambda item: _read_one(item, input_size), ordered)
        for done, (item, (digest, pixels, reason)) in enumerate(zip(ordered, results, strict=True), start=1):
            fingerprint.update(f"{item.relative}\0{digest}\n".encode())
            if pixels is None:
                skipped.append((item.relative, reason))
            else:
                images.append(pixels)
                labels.append(item.label)
                paths.append(item.relative)
                kept.append(item)
            if progress is not None:
                progress(done, len(ordered))
    return ImageSet(
        images=np.stack(images) if images else np.zeros((0, input_size, input_size, 3), np.uint8),
        labels=np.asarray(labels, dtype=np.int64),
        classes=tuple(classes),
        input_size=input_size,
        paths=paths,
        fingerprint=fingerprint.hexdigest(),
        root=root,
        skipped=skipped,
        files=kept,
    )


def read_folder(
    root: Path | str,
    input_size: int,
    *,
    classes: Sequence[str] = CLASSES,
    workers: int | None = None,
    progress: Progress | None = None,
) -> ImageSet:
    """Read a ``<root>/<type>/...`` folder. Raises ``ValueError`` when no type folder is found."""
    files, ignored = scan_folder(root, classes)
    if not files:
        raise ValueError(
            f"No images found in {root}: expected one sub-folder per type ({', '.join(classes)})."
            + (f" Ignored folders: {', '.join(ignored)}." if ignored else "")
        )
    dataset = read_files(
        files, input_size, classes=classes, root=str(Path(root).resolve()), workers=workers, progress=progress
    )
    dataset.ignored_folders = ignored
    return dataset


def stratified_split(labels: np.ndarray, fraction: float, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept indices, held-out indices): ``fraction`` of each class held out (at least one when a class has 2+)."""
    rng = np.random.default_rng(seed)
    kept: list[np.ndarray] = []
    held: list[np.ndarray] = []
    for label in np.unique(labels):
        indices = rng.permutation(np.flatnonzero(labels == label))
        n_held = int(round(len(indices) * fraction))
        if len(indices) >= 2:
            n_held = min(max(n_held, 1), len(indices) - 1)
        else:
            n_held = 0
        held.append(indices[:n_held])
        kept.append(indices[n_held:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


# --- Augmented views (training only) -----------------------------------------------------------------------------


def random_view(image: Image.Image, size: int, rng: np.random.Generator) -> np.ndarray:
    """One augmented model input of a decoded image, as uint8 ``(size, size, 3)``: a random crop of 55-100% of the
    area (aspect 3:4 to 4:3), a horizontal flip half the time, brightness, contrast and saturation each within
    +-20%, then the shared :func:`~inference.preprocessing.to_model_input` resize. The hue is never shifted: colour
    against monochrome is a real cue between the types."""
    width, height = image.size
    crop_w, crop_h = width, height
    for _ in range(10):
        area = rng.uniform(0.55, 1.0) * width * height
        aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
        w, h = int(round(np.sqrt(area * aspect))), int(round(np.sqrt(area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            crop_w, crop_h = w, h
            break
    left, top = int(rng.integers(0, width - crop_w + 1)), int(rng.integers(0, height - crop_h + 1))
    view = image.crop((left, top, left + crop_w, top + crop_h))
    if rng.random() < 0.5:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        view = enhancer(view).enhance(float(rng.uniform(0.8, 1.2)))
    return to_model_input(view, size).astype(np.uint8)


def augmented_views(
    dataset: ImageSet, view: int, *, seed: int, workers: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Augmented view number ``view`` of every image of ``dataset`` (re-read from its files), as
    ``(start index, uint8 batch)`` chunks in dataset order. Each image's randomness comes from
    ``(seed, view, index)`` alone, so the views do not depend on thread timing. A file that can no longer be read
    gets its plain image instead."""
    if len(dataset.files) != len(dataset):
        raise ValueError("This image set does not know its source files; augmented views need them.")

    def one(index: int) -> np.ndarray:
        rng = np.random.default_rng([seed, view, index])
        try:
            image = decode_image(dataset.files[index].read_bytes()).image
        except (OSError, ImageRejected):
            return dataset.images[index]
        return random_view(image, dataset.input_size, rng)

    chunk = 128
    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        for start in range(0, len(dataset), chunk):
            indices = range(start, min(start + chunk, len(dataset)))
            yield start, np.stack(list(pool.map(one, indices)))
