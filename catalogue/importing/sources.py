"""The images of a folder, one at a time: walking the folder, labelling each candidate (folder name or manifest row),
reading and hashing its file, and decoding and checking it with the upload's own checks.

:func:`item_read` and :func:`item_prepare` are the import's whole per-image work; they run in threads (file I/O,
hashlib, Pillow and NumPy release the GIL), and ``bench_import`` times them alone.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np
from PIL import Image

from catalogue.importing.labels import TypeNames
from catalogue.importing.manifest import Manifest, ManifestRow
from catalogue.importing.results import BAD_MANIFEST_ROW, OUTSIDE_FOLDER, READ_ERROR
from catalogue.models import TITLE_MAX_LENGTH, ArtworkType
from catalogue.perceptual_hash import ImageHashes, image_hashes
from catalogue.services.artworks import (
    ArtworkRejected,
    CheckedImage,
    color_histogram,
    image_check,
    thumbnail_bytes,
)
from inference.preprocessing import ALLOWED_EXTENSIONS, to_model_input

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """An image file of the folder (by its extension), with the label and metadata the folder and manifest give."""

    path: Path
    rel: str  # relative to the folder, POSIX
    size: int  # bytes; -1 when the file could not even be listed
    artwork_type: ArtworkType | None = None
    label_origin: str = ""  # where the label came from, for the audit trail's note
    unknown_folder: str | None = None  # top-level folder that names no type (its images go unlabelled)
    row: ManifestRow | None = None


@dataclass
class ImportItem:
    """One candidate on its way through the import: read, hashed, decoded, classified, stored (or skipped)."""

    candidate: Candidate
    data: bytes = b""
    sha256: str = ""
    existing: tuple[int, str] | None = None  # (artwork id, status) when the hash is already catalogued
    checked: CheckedImage | None = None
    thumbnail: bytes = b""
    histogram: dict[str, list[float]] = field(default_factory=dict)
    hashes: ImageHashes | None = None  # perceptual hashes (near-duplicates)
    inputs: dict[int, np.ndarray] = field(default_factory=dict)  # model input size -> uint8 pixels
    predictions: dict[int, tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict
    )  # version pk -> (probabilities, embedding)
    skip: tuple[str, str] | None = None  # (reason, detail)

    def release(self) -> None:
        """Drop the bytes and pixels once the item is stored or skipped (memory stays bounded)."""
        self.data = b""
        self.checked = None
        self.thumbnail = b""
        self.inputs = {}
        self.predictions = {}


def is_image_file(path: Path) -> bool:
    """Whether the file name has an image extension (JPEG, PNG, WebP, TIFF): the walk's test for a candidate."""
    return path.suffix.lower() in ALLOWED_EXTENSIONS


class WalkEntry(NamedTuple):
    path: Path
    rel: str  # relative to the folder, POSIX
    size: int  # bytes; -1 when the file could not be examined
    outside: bool = False  # a link that resolves outside the folder: refused, never read


def folder_walk(folder: Path, *, exclude: frozenset[Path] = frozenset()) -> Iterator[WalkEntry]:
    """Every regular file below ``folder``, in name order, streamed.

    ``exclude``: resolved paths to leave out (the manifest and the report when they sit in the folder). Linked
    folders are not entered; a linked file is looked through, and marked ``outside`` when it resolves outside the
    folder (an import must never read what the folder only points at).
    """
    root = folder.resolve()
    stack: list[tuple[Path, str]] = [(folder, "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            logger.warning("cannot list %s: %s", directory, exc)
            continue
        subdirs = []
        resolved = directory.resolve() if exclude else directory  # once per folder, not per file
        for entry in entries:
            rel = f"{prefix}{entry.name}"
            try:
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append((Path(entry.path), f"{rel}/"))
                elif entry.is_symlink():
                    target = Path(entry.path).resolve()
                    if not target.is_relative_to(root):
                        yield WalkEntry(Path(entry.path), rel, 0, outside=True)
                    elif target.is_file() and (not exclude or target not in exclude):
                        yield WalkEntry(Path(entry.path), rel, target.stat().st_size)
                elif entry.is_file():
                    if not exclude or resolved / entry.name not in exclude:
                        yield WalkEntry(Path(entry.path), rel, entry.stat().st_size)
            except OSError:
                yield WalkEntry(Path(entry.path), rel, -1)
        stack.extend(reversed(subdirs))


def candidates_count(folder: Path, *, exclude: frozenset[Path], limit: int | None) -> int:
    """How many candidates :func:`folder_items` will yield (for a progress bar's total)."""
    count = 0
    for entry in folder_walk(folder, exclude=exclude):
        if is_image_file(entry.path):
            count += 1
            if limit is not None and count >= limit:
                break
    return count


def folder_items(
    folder: Path,
    *,
    exclude: frozenset[Path],
    limit: int | None,
    manifest: Manifest | None,
    types: TypeNames,
    other_file: Callable[[str], None],
) -> Iterator[ImportItem]:
    """The candidates in walk order, labelled, as items; at most ``limit``. Files that are not images go to
    ``other_file`` (their relative path) and never become items. A candidate whose manifest row is bad, or whose
    file cannot be listed, comes already marked skipped."""
    count = 0
    for path, rel, size, outside in folder_walk(folder, exclude=exclude):
        if limit is not None and count >= limit:
            return
        if not is_image_file(path):
            other_file(rel)
            continue
        count += 1
        row = manifest.rows.get(rel) if manifest else None
        artwork_type, origin, unknown = types.folder_label(rel)
        if row is not None and row.artwork_type is not None:
            artwork_type, origin = row.artwork_type, f"manifest line {row.line}"
        item = ImportItem(
            candidate=Candidate(
                path=path,
                rel=rel,
                size=size,
                artwork_type=artwork_type,
                label_origin=origin,
                unknown_folder=unknown if artwork_type is None else None,
                row=row,
            )
        )
        if manifest is not None and rel in manifest.bad:
            bad = manifest.bad[rel]
            item.skip = (BAD_MANIFEST_ROW, f"line {bad.line}: {bad.reason}")
        elif outside:
            item.skip = (OUTSIDE_FOLDER, f"{rel} is a link to a file outside the folder; it was not read.")
        elif size < 0:
            item.skip = (READ_ERROR, "The file could not be read.")
        yield item


def item_read(item: ImportItem, *, max_bytes: int) -> ImportItem:
    """Read and hash the item's file, refusing it unread when it is larger than ``max_bytes`` (the upload limit).
    A problem is recorded in ``item.skip``; returns the item."""
    size = item.candidate.size
    if size > max_bytes:
        item.skip = ("too_large", f"The file is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB.")
        return item
    try:
        with open(item.candidate.path, "rb") as handle:
            item.data = handle.read(max_bytes + 1)
    except OSError as exc:
        item.skip = (READ_ERROR, f"The file could not be read: {exc.strerror or exc}.")
        return item
    if len(item.data) > max_bytes:
        item.skip = ("too_large", f"The file is larger than the {max_bytes / 1e6:.0f} MB limit.")
        item.data = b""
    elif not item.data:
        item.skip = ("empty", "The file is empty.")
    else:
        item.sha256 = hashlib.sha256(item.data).hexdigest()
    return item


def item_prepare(
    item: ImportItem, *, sizes: Sequence[int], draft: int | None, thumbnail_size: int
) -> ImportItem:
    """Decode and check a read item (the upload's checks), then make its model inputs (uint8, one per input size
    in ``sizes``) and, unless it is already catalogued, its thumbnail and colour histogram. ``draft``: decode a
    large JPEG at a reduced scale no smaller than this many pixels a side. A rejected or broken image is recorded
    in ``item.skip`` and its data released; returns the item."""
    try:
        checked = image_check(data=item.data, draft=draft)
        image = checked.decoded.image
        # The one preprocessing path; uint8 is exact here (integer pixels) and a quarter of the memory.
        item.inputs = {size: to_model_input(image, size).astype(np.uint8) for size in sizes}
        if item.existing is None:  # a pending artwork being resumed already has its files and histogram
            item.thumbnail = thumbnail_bytes(image, size=thumbnail_size)
            # The histogram (shares of pixels per bin) of the model's view of the whole image is the same
            # picture as of the upload's 256 px copy, without resizing the image once more (a third of the
            # decoding time on typical 300-400 px photographs).
            source = Image.fromarray(item.inputs[max(sizes)]) if sizes else image
            item.histogram = color_histogram(source)
            item.hashes = image_hashes(image)
    except ArtworkRejected as exc:
        item.skip = (exc.reason, str(exc))
    except Exception as exc:  # one odd file must not stop the import of thousands
        logger.warning("could not process %s", item.candidate.path, exc_info=True)
        item.skip = ("corrupt", f"The image could not be processed: {exc}.")
    else:
        item.checked = checked
        return item
    item.release()
    return item


def title_from_filename(name: str) -> str:
    """``st_jerome_in-his_study.jpg`` -> ``st jerome in his study`` (the file name is all a folder tells), cut at a
    word to the title's length limit."""
    stem = PurePosixPath(name).stem
    title = re.sub(r"[\s_\-]+", " ", stem).strip() or name
    if len(title) > TITLE_MAX_LENGTH:
        cut = title[: TITLE_MAX_LENGTH - 1]
        title = (cut.rsplit(" ", 1)[0] if " " in cut[TITLE_MAX_LENGTH // 2 :] else cut) + "…"
    return title
