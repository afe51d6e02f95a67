"""Bulk import of a folder of images (``manage.py import_artworks``): fast, resumable, exact about what it skipped.

How one run goes:

* The folder is walked in name order (``os.scandir``, streamed); files with an image extension are *candidates*,
  every other file is listed as skipped. A sub-folder named after a type (``painting/``, ``Drawings/``...) labels
  the images below it; an optional manifest (CSV or JSON lines) gives titles, artists, accession numbers and types.
* Two reader threads read and hash each candidate; the main thread asks the database, one query per batch,
  which hashes are already catalogued (those are not decoded at all). A pool of decoder threads (one per core)
  decodes and checks the rest with the upload's own checks (``image_check``, JPEGs in draft mode), makes
  the thumbnail, the colour histogram and the model-size input, up to four batches ahead.
* Per batch of 64: the main thread re-checks the hashes (the authoritative duplicate check) and hands the batch to
  the model thread, which classifies and embeds it with every serving model version
  (``Classifier.predict_arrays``). Meanwhile the main thread stores the batch before: writer threads save image
  and thumbnail through the storage backend under content-addressed names, then one transaction inserts the rows
  (ready), the label audit trail and the predictions (``prediction_store``). With ``enqueue=True`` the
  rows are inserted pending and their ids go to the Celery workers once committed. Pillow, hashlib, file I/O and
  TensorFlow release the GIL, so threads keep both cores busy.

Interrupting it is safe at any moment. Files are written before their rows are committed, so a kill in between
leaves files whose rows do not exist yet; their names come from the sha256, so the next run writes the same names
again (replacing the leftovers) and commits the rows. Artworks stored pending (``enqueue``, or while no model was
active) are found by hash by the next run and classified (or queued again). A run over a finished folder therefore
imports nothing, writes nothing and does not even load the model.

Memory stays bounded: images are streamed through a window of a few batches (and a cap on the bytes in flight),
duplicates within the run are found through the database rather than an in-memory set (only ``dry_run``, which
writes no rows, remembers the hashes it has seen), and skipped files go straight to the report file.
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import io
import json
import logging
import os
import re
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

import numpy as np
from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from PIL import Image

from catalogue.models import Artwork, ArtworkType, LabelCorrection, artwork_image_path, artwork_thumbnail_path
from catalogue.selectors.artworks import artwork_type_by_slug
from catalogue.services.artworks import (
    ArtworkRejected,
    CheckedImage,
    color_histogram,
    image_check,
    stored_files_delete,
    thumbnail_bytes,
)
from catalogue.services.classification import classification_enqueue, prediction_store
from inference.preprocessing import ALLOWED_EXTENSIONS, to_model_input

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 64
DECODE_AHEAD = 4  # batches
READERS = 2  # threads reading and hashing files (I/O: a slow disk or network share)
WRITERS = 4  # threads writing images and thumbnails through the storage backend (I/O: disk or S3)
# Bytes of file data held between reading and storing (files are up to ARTSITE_MAX_UPLOAD_BYTES each).
MAX_BYTES_IN_FLIGHT = 256 * 1024 * 1024
MANIFEST_COLUMNS = ("path", "title", "artist", "date", "accession", "type", "description")
FIELD_LIMITS = {"title": 300, "artist": 300, "date": 100, "accession": 100}

# Reasons a file is skipped (the report's `reason` column); unreadable files carry the upload check's own reason
# (not_image, truncated, corrupt, too_large, too_many_pixels, unsupported_format, empty) or `read_error`.
NOT_AN_IMAGE_FILE = "not_an_image_file"
DUPLICATE_IN_CATALOGUE = "duplicate_in_catalogue"
DUPLICATE_IN_RUN = "duplicate_in_run"
BAD_MANIFEST_ROW = "bad_manifest_row"
DUPLICATE_ACCESSION = "duplicate_accession"
READ_ERROR = "read_error"
NOT_UNREADABLE = {
    NOT_AN_IMAGE_FILE,
    DUPLICATE_IN_CATALOGUE,
    DUPLICATE_IN_RUN,
    BAD_MANIFEST_ROW,
    DUPLICATE_ACCESSION,
}


class _Conflict(Exception):
    """A file of this batch was stored by someone else a moment ago (see ``_ImportRun._save_file``)."""


class ImportFailed(Exception):
    """The import cannot start (no such folder, unreadable manifest, unavailable model); nothing was written."""


# --- What a run reports -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadRow:
    line: int
    path: str
    reason: str


@dataclass
class ImportResult:
    """Counts of one run. ``imported`` artworks were stored; every other candidate is in exactly one skip count."""

    dry_run: bool = False
    enqueue: bool = False
    candidates: int = 0  # image files considered (after --limit)
    imported: int = 0
    duplicates_in_catalogue: int = 0
    duplicates_in_run: int = 0
    unreadable: Counter[str] = field(default_factory=Counter)
    other_files: int = 0  # files without an image extension (listed in the report, not errors)
    bad_rows: list[BadRow] = field(default_factory=list)
    bad_row_files: int = 0  # files not imported because their manifest row is bad
    duplicate_accessions: int = 0
    unknown_folders: Counter[str] = field(
        default_factory=Counter
    )  # top-level folder -> images without a type
    unlabelled: int = 0
    labelled: Counter[str] = field(default_factory=Counter)  # type slug -> imported with that label
    predicted: Counter[str] = field(default_factory=Counter)  # type slug -> active model's prediction
    labels_checked: int = 0  # labelled artworks classified in this run...
    labels_agreed: int = 0  # ...whose label the active model predicts too
    classified: int = 0  # artworks classified in-process (imported + resumed)
    resumed: int = 0  # artworks of an earlier, interrupted run that were still pending, classified/queued now
    queued: int = 0  # sent to the Celery workers (enqueue=True)
    left_pending: int = 0  # stored but neither classified nor queued (no model, broker down)
    versions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    model_load_seconds: float = 0.0  # part of elapsed: loading (and compiling) the model on first use

    @property
    def duplicates(self) -> int:
        return self.duplicates_in_catalogue + self.duplicates_in_run

    @property
    def unreadable_total(self) -> int:
        return sum(self.unreadable.values())

    @property
    def images_per_second(self) -> float:
        return self.candidates / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def images_per_second_loaded(self) -> float:
        """The rate once the model is loaded (what a long import runs at)."""
        seconds = self.elapsed - self.model_load_seconds
        return self.candidates / seconds if seconds > 0 else 0.0


@dataclass
class ImportEvents:
    """Optional hooks for a command's progress bar (and for tests that interrupt a run)."""

    total: Callable[[int], None] | None = None  # number of candidates, once counted
    advance: Callable[[int], None] | None = None  # candidates finished (imported or skipped)
    batch_done: Callable[[int], None] | None = None  # a batch committed (and classified): its number, from 1


class _Report:
    """The skipped files, streamed to a CSV file as they happen (never held in memory)."""

    def __init__(self, handle: TextIO | None) -> None:
        self._writer = csv.writer(handle) if handle is not None else None
        if self._writer is not None:
            self._writer.writerow(["path", "reason", "detail"])

    def skip(self, path: str, reason: str, detail: str = "") -> None:
        if self._writer is not None:
            self._writer.writerow([path, reason, detail])


# --- Manifest -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestRow:
    line: int
    path: str  # relative to the folder, POSIX
    title: str = ""
    artist: str = ""
    date: str = ""
    accession: str = ""
    description: str = ""
    artwork_type: ArtworkType | None = None


@dataclass
class Manifest:
    rows: dict[str, ManifestRow] = field(default_factory=dict)
    bad: dict[str, BadRow] = field(default_factory=dict)  # files named by a bad row: not imported
    bad_rows: list[BadRow] = field(default_factory=list)  # every bad row, in line order


def manifest_read(*, path: Path, folder: Path, types: _Types | None = None) -> Manifest:
    """Parse and check a manifest. Each bad row (missing file, unknown type, duplicate path or accession, bad
    encoding, malformed line) is kept with its line number; the good rows import. Raises :class:`ImportFailed`
    only when the file cannot be used at all (missing, no ``path`` column)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImportFailed(f"The manifest {path} cannot be read: {exc.strerror or exc}.") from None
    is_json = path.suffix.lower() in (".jsonl", ".ndjson", ".json") or raw.lstrip()[:1] == b"{"
    records = _jsonl_records(raw) if is_json else _csv_records(raw, path)
    folder = folder.resolve()
    types = types or _Types()
    manifest = Manifest()
    accessions: dict[str, int] = {}
    for line, record, problem in records:
        path_value = record.get("path", "")
        rel = _manifest_rel_path(path_value, folder) if path_value and not _has_surrogates(path_value) else ""
        if problem is None:
            problem = _manifest_row_problem(record, rel, folder, manifest, accessions, types)
        if problem is not None:
            bad = BadRow(line=line, path=rel or str(record.get("path", "") if record else ""), reason=problem)
            manifest.bad_rows.append(bad)
            if rel and rel not in manifest.rows and rel not in manifest.bad and _walked_image(folder, rel):
                manifest.bad[rel] = bad  # the walk will meet this file: it is skipped, with this row's reason
            continue
        accession = record.get("accession", "")
        if accession:
            accessions[accession] = line
        manifest.rows[rel] = ManifestRow(
            line=line,
            path=rel,
            title=record.get("title", ""),
            artist=record.get("artist", ""),
            date=record.get("date", ""),
            accession=accession,
            description=record.get("description", ""),
            artwork_type=types(record.get("type", "")),
        )
    return manifest


def _csv_records(raw: bytes, path: Path) -> Iterator[tuple[int, dict[str, str], str | None]]:
    # surrogateescape keeps undecodable bytes as lone surrogates, so a bad line is found and reported by number
    # instead of failing the whole file.
    text = raw.decode("utf-8-sig", errors="surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise ImportFailed(f"The manifest {path} is empty.") from None
    except csv.Error as exc:
        raise ImportFailed(f"The manifest {path} has an unreadable header: {exc}.") from None
    columns = [c.strip().lower() for c in header]
    if "path" not in columns:
        raise ImportFailed(
            f"The manifest {path} has no 'path' column; its header must name the columns "
            f"({', '.join(MANIFEST_COLUMNS)})."
        )
    previous_end = reader.line_num
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield previous_end + 1, {}, f"malformed CSV ({exc})"
            previous_end = reader.line_num
            continue
        line, previous_end = previous_end + 1, reader.line_num
        if not any(v.strip() for v in values):
            continue
        # The record comes along with a problem too, so the file it names is known (and not imported).
        record = {c: v.strip() for c, v in zip(columns, values, strict=False) if c in MANIFEST_COLUMNS}
        if any(_has_surrogates(v) for v in values):
            yield line, record, "bad encoding (not UTF-8)"
        elif len(values) > len(columns):
            yield line, record, f"{len(values)} values but the header names {len(columns)} columns"
        else:
            yield line, record, None


def _jsonl_records(raw: bytes) -> Iterator[tuple[int, dict[str, str], str | None]]:
    for number, chunk in enumerate(raw.splitlines(), start=1):
        if not chunk.strip():
            continue
        if number == 1 and chunk.startswith(b"\xef\xbb\xbf"):
            chunk = chunk[3:]
        problem = None
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError:
            text, problem = chunk.decode("utf-8", errors="surrogateescape"), "bad encoding (not UTF-8)"
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            yield number, {}, problem or f"not valid JSON ({exc.msg})"
            continue
        if not isinstance(record, dict):
            yield number, {}, "not a JSON object"
            continue
        cleaned: dict[str, str] = {}
        for key, value in record.items():
            key = str(key).strip().lower()
            if key not in MANIFEST_COLUMNS or value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                problem = problem or f"'{key}' must be a string"
                continue
            cleaned[key] = str(value).strip()
        yield number, cleaned, problem


def _walked_image(folder: Path, rel: str) -> bool:
    full = (folder / rel).resolve()
    return full.is_relative_to(folder) and full.is_file() and full.suffix.lower() in ALLOWED_EXTENSIONS


def _has_surrogates(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def _manifest_rel_path(value: str, folder: Path) -> str:
    value = (value or "").strip().replace("\\", "/")
    if not value:
        return ""
    candidate = Path(value)
    if candidate.is_absolute():
        try:
            return candidate.resolve().relative_to(folder).as_posix()
        except ValueError:
            return value  # reported as outside the folder
    parts = [p for p in PurePosixPath(value).parts if p not in ("", ".")]
    return PurePosixPath(*parts).as_posix() if parts else ""


def _manifest_row_problem(
    record: dict[str, str],
    rel: str,
    folder: Path,
    manifest: Manifest,
    accessions: dict[str, int],
    types: _Types,
) -> str | None:
    if not rel:
        return "no path"
    full = (folder / rel).resolve()
    if Path(rel).is_absolute() or ".." in PurePosixPath(rel).parts or not full.is_relative_to(folder):
        return f"the path {rel} is outside the folder"
    if rel in manifest.rows:
        return f"the file {rel} is already listed on line {manifest.rows[rel].line}"
    if not full.is_file():
        return f"no file {rel} in the folder"
    if full.suffix.lower() not in ALLOWED_EXTENSIONS:
        return f"{rel} is not an image file (JPEG, PNG, WebP or TIFF)"
    type_name = record.get("type", "")
    if type_name and types(type_name) is None:
        slugs = ", ".join(ArtworkType.objects.values_list("slug", flat=True))
        return f"unknown type {type_name!r} (one of: {slugs})"
    for name, limit in FIELD_LIMITS.items():
        if len(record.get(name, "")) > limit:
            return f"{name} is longer than {limit} characters"
    accession = record.get("accession", "")
    if accession and accession in accessions:
        return f"accession number {accession} is already used on line {accessions[accession]}"
    return None


class _Types:
    """Folder and manifest names to types (``artwork_type_by_slug``), remembered for one run."""

    def __init__(self) -> None:
        self._cache: dict[str, ArtworkType | None] = {}

    def __call__(self, name: str) -> ArtworkType | None:
        key = (name or "").strip().lower()
        if not key:
            return None
        if key not in self._cache:
            self._cache[key] = artwork_type_by_slug(key)
        return self._cache[key]

    def folder_label(self, rel: str) -> tuple[ArtworkType | None, str, str | None]:
        """The type named by the nearest enclosing folder (so ``painting/italian/x.jpg`` and
        ``museum/painting/x.jpg`` are both paintings), that folder, and else the top-level folder that names no
        type (reported as unknown)."""
        folders = list(PurePosixPath(rel).parts[:-1])
        for index in range(len(folders) - 1, -1, -1):
            artwork_type = self(folders[index])
            if artwork_type is not None:
                return artwork_type, "folder " + "/".join(folders[: index + 1]) + "/", None
        return None, "", (folders[0] if folders else None)


# --- Walking the folder ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    path: Path
    rel: str
    size: int
    artwork_type: ArtworkType | None
    label_origin: str  # where the label came from, for the audit trail's note
    unknown_folder: str | None  # top-level folder that names no type (its images go unlabelled)
    row: ManifestRow | None


def _walk(folder: Path, exclude: set[Path]) -> Iterator[tuple[Path, str, int]]:
    """Every regular file below ``folder`` as (path, relative POSIX path, size), in name order, streamed."""
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
                elif entry.is_file():
                    if not exclude or resolved / entry.name not in exclude:
                        yield Path(entry.path), rel, entry.stat().st_size
            except OSError:
                yield Path(entry.path), rel, -1
        stack.extend(reversed(subdirs))


# --- Per-image work (runs in the pool) -------------------------------------------------------------------------------


@dataclass
class _Item:
    """One candidate on its way through the pipeline."""

    candidate: Candidate
    data: bytes = b""
    sha256: str = ""
    existing: tuple[int, str] | None = None  # (artwork id, status) when the hash is already catalogued
    checked: CheckedImage | None = None
    thumbnail: bytes = b""
    histogram: dict[str, list[float]] = field(default_factory=dict)
    inputs: dict[int, np.ndarray] = field(default_factory=dict)  # model input size -> uint8 pixels
    predictions: dict[int, tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict
    )  # version pk -> output
    skip: tuple[str, str] | None = None  # (reason, detail)

    def release(self) -> None:
        self.data = b""
        self.checked = None
        self.thumbnail = b""
        self.inputs = {}
        self.predictions = {}


def _read(item: _Item, max_bytes: int) -> _Item:
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


def prepare_image(item: _Item, *, sizes: Sequence[int], draft: int | None, thumbnail_size: int) -> _Item:
    """Decode and check (the upload's checks), thumbnail, histogram and model inputs for one image."""
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


# --- The run ------------------------------------------------------------------------------------------------------


@dataclass
class _Batch:
    items: list[_Item]
    resumed: list[_Item]  # stored by an earlier run, still pending: classify (or queue) only
    new: list[_Item]
    prediction: Future[None] | None


@dataclass
class _Version:
    model_version: Any
    input_size: int
    classifier: Any = None  # loaded when the first batch needs it (a run with nothing new never loads it)


def artworks_import(
    *,
    folder: Path | str,
    manifest: Path | str | None = None,
    dry_run: bool = False,
    enqueue: bool = False,
    limit: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    draft: bool = True,
    report: TextIO | None = None,
    events: ImportEvents | None = None,
) -> ImportResult:
    """Import every image below ``folder``; see the module docstring. Returns the run's counts.

    ``enqueue``: queue classification for the Celery workers instead of classifying in-process. ``dry_run``:
    read, check and count everything, write nothing (no rows, no files, no tasks). ``limit``: consider at most
    this many image files. ``report``: an open text file that receives every skipped file as CSV
    (path, reason, detail). Raises :class:`ImportFailed` before writing anything if the run cannot start.
    """
    run = _ImportRun(
        folder=Path(folder),
        manifest=Path(manifest) if manifest else None,
        dry_run=dry_run,
        enqueue=enqueue,
        limit=limit,
        batch_size=batch_size,
        workers=workers,
        draft=draft,
        report=report,
        events=events,
    )
    return run.run()


class _ImportRun:
    def __init__(
        self,
        *,
        folder: Path,
        manifest: Path | None,
        dry_run: bool,
        enqueue: bool,
        limit: int | None,
        batch_size: int,
        workers: int | None,
        draft: bool,
        report: TextIO | None,
        events: ImportEvents | None,
    ) -> None:
        if not folder.is_dir():
            raise ImportFailed(f"{folder} is not a folder.")
        if limit is not None and limit < 0:
            raise ImportFailed("--limit must be zero or more.")
        self.folder = folder.resolve()
        self.manifest_path = manifest.resolve() if manifest else None
        self.dry_run = dry_run
        self.enqueue = enqueue and not dry_run
        self.limit = limit
        self.batch_size = max(1, min(int(batch_size), 1024))
        self.workers = max(1, int(workers or os.cpu_count() or 1))
        self.report = _Report(report)
        self.types = _Types()
        self.events = events or ImportEvents()
        self.result = ImportResult(dry_run=dry_run, enqueue=self.enqueue)
        self.max_bytes = int(settings.ARTSITE_MAX_UPLOAD_BYTES)
        self.thumbnail_size = int(settings.ARTSITE_THUMBNAIL_SIZE)
        self.versions: list[_Version] = []
        self.draft: int | None = None
        self.use_draft = draft
        self.batch: list[_Item] = []
        self.batch_bytes = 0
        self.batches_done = 0
        self.seen: set[bytes] = set()  # dry run only: it inserts no rows through which to find repeats
        # Hashes of the batches not committed yet (the one filling, the one at the model) -> path
        self.pending_hashes: dict[str, str] = {}
        self.in_flight: _Batch | None = None
        self.classify = False
        report_path = getattr(report, "name", None)
        self.exclude = {
            p for p in (self.manifest_path, Path(report_path).resolve() if report_path else None) if p
        }

    # -- set-up --

    def _load_models(self) -> None:
        from inference.registry import MODEL_FILE, ModelUnavailable, find_version, read_card
        from inference.selectors import model_versions_serving

        if self.dry_run or self.enqueue:
            return
        from inference.services import model_ensure_active

        versions = model_versions_serving()
        if not versions:  # a fresh database: activate the default version, if there is one
            try:
                model_ensure_active()
            except ObjectDoesNotExist:  # ARTSITE_DEFAULT_MODEL names a version with no folder
                logger.warning("the default model version is not in %s", settings.ARTSITE_MODEL_DIRS)
            versions = model_versions_serving()
        if not versions:
            self.result.warnings.append(
                "No model version is active: the artworks are stored pending and are classified once a version "
                "is activated (run the import again, or let the workers' sweep queue them)."
            )
            return
        for version in versions:
            entry = _Version(model_version=version, input_size=0)
            try:
                path = find_version(version.version)
                if not (path / MODEL_FILE).is_file():
                    raise ModelUnavailable(version.version, f"{path / MODEL_FILE} is missing")
                entry.input_size = int(read_card(path).get("input_size") or 0)
            except (ModelUnavailable, ValueError) as exc:
                raise ImportFailed(
                    f"{exc} Fix it, or import with --async and let the workers retry."
                ) from None
            if not entry.input_size:  # a card without it: the model itself says
                self._classifier(entry)
            self.versions.append(entry)
        self.result.versions = [v.model_version.version for v in self.versions]

    def _classifier(self, version: _Version) -> Any:
        from inference.loader import ModelUnavailable, get_classifier

        if version.classifier is None:
            started = time.perf_counter()
            try:
                version.classifier = get_classifier(version.model_version.version)
            except ModelUnavailable as exc:
                # Nothing of the batch that needed it has been written yet.
                raise ImportFailed(
                    f"{exc} Fix it, or import with --async and let the workers retry."
                ) from None
            self.result.model_load_seconds += time.perf_counter() - started
            if version.input_size and version.classifier.input_size != version.input_size:
                raise ImportFailed(f"Model {version.model_version.version}: the card and the model disagree.")
            version.input_size = version.classifier.input_size
        return version.classifier

    @property
    def sizes(self) -> list[int]:
        return sorted({v.input_size for v in self.versions})

    # -- main loop --

    def run(self) -> ImportResult:
        started = time.perf_counter()
        self.manifest = (
            manifest_read(path=self.manifest_path, folder=self.folder, types=self.types)
            if self.manifest_path
            else None
        )
        if self.manifest is not None:
            self.result.bad_rows = list(self.manifest.bad_rows)
            for bad in self.manifest.bad_rows:
                # Rows naming no image the walk will meet (missing, outside, not an image) are reported here;
                # the others when their file comes by.
                if bad.path not in self.manifest.bad and bad.path not in self.manifest.rows:
                    self.report.skip(bad.path, BAD_MANIFEST_ROW, f"line {bad.line}: {bad.reason}")
        self._load_models()
        if self.use_draft and self.sizes:
            self.draft = max(self.thumbnail_size, *self.sizes)
        elif self.use_draft:
            self.draft = self.thumbnail_size
        self.our_ids: list[tuple[int, int]] = []  # id ranges this run inserted
        if self.events.total:
            self.events.total(self._count_candidates())
        self.classify = bool(self.versions) and not self.enqueue and not self.dry_run
        # Readers apart from decoders, so that reading ahead never queues behind a batch of decoding; the model
        # in a thread of its own, so that it runs while the main thread writes the batch before.
        reader = ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="import-read")
        decoder = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="import-decode")
        self.model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-model")
        self.writer = ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="import-write")
        try:
            self._pipeline(reader, decoder)
            self._flush(final=True)
        finally:
            for pool in (reader, decoder, self.model_thread, self.writer):
                pool.shutdown(wait=True, cancel_futures=True)
            self.result.elapsed = time.perf_counter() - started
        return self.result

    def _count_candidates(self) -> int:
        count = 0
        for path, _rel, _size in _walk(self.folder, self.exclude):
            if path.suffix.lower() in ALLOWED_EXTENSIONS:
                count += 1
                if self.limit is not None and count >= self.limit:
                    break
        return count

    def _candidates(self) -> Iterator[_Item]:
        """Candidates in walk order; files that are not images are reported here and never enter the pool."""
        count = 0
        for path, rel, size in _walk(self.folder, self.exclude):
            if self.limit is not None and count >= self.limit:
                return
            if path.suffix.lower() not in ALLOWED_EXTENSIONS:
                self.result.other_files += 1
                self.report.skip(
                    rel, NOT_AN_IMAGE_FILE, "Not a JPEG, PNG, WebP or TIFF file name; not imported."
                )
                continue
            count += 1
            row = self.manifest.rows.get(rel) if self.manifest else None
            artwork_type, origin, unknown = self.types.folder_label(rel)
            if row is not None and row.artwork_type is not None:
                artwork_type, origin = row.artwork_type, f"manifest line {row.line}"
            candidate = Candidate(
                path=path,
                rel=rel,
                size=size,
                artwork_type=artwork_type,
                label_origin=origin,
                unknown_folder=unknown if artwork_type is None else None,
                row=row,
            )
            item = _Item(candidate=candidate)
            if self.manifest is not None and rel in self.manifest.bad:
                bad = self.manifest.bad[rel]
                item.skip = (BAD_MANIFEST_ROW, f"line {bad.line}: {bad.reason}")
            elif size < 0:
                item.skip = (READ_ERROR, "The file could not be read.")
            yield item

    def _pipeline(self, reader: ThreadPoolExecutor, decoder: ThreadPoolExecutor) -> None:
        """Read ahead and decode ahead in the pool, a few batches deep, consuming results in walk order."""
        candidates = self._candidates()
        # Decoding runs up to DECODE_AHEAD batches ahead, so the decoders never run dry while the main thread
        # runs the model and writes a batch.
        read_window, decode_window = 2 * self.batch_size, DECODE_AHEAD * self.batch_size
        reads: deque[Future[_Item] | _Item] = deque()
        decodes: deque[Future[_Item] | _Item] = deque()
        bytes_in_flight = 0
        exhausted = False
        while True:
            while (
                not exhausted
                and len(reads) < read_window
                and (bytes_in_flight < MAX_BYTES_IN_FLIGHT or not reads)
            ):
                item = next(candidates, None)
                if item is None:
                    exhausted = True
                    break
                if item.skip is None:
                    bytes_in_flight += max(0, item.candidate.size)
                    reads.append(reader.submit(_read, item, self.max_bytes))
                else:
                    reads.append(item)
            if reads and len(decodes) < decode_window:
                group = [_result(reads.popleft()) for _ in range(min(len(reads), self.batch_size))]
                self._route(group, decodes, decoder)
                continue
            if decodes:
                item = _result(decodes.popleft())
                bytes_in_flight -= max(0, item.candidate.size)
                self._accept(item)
                continue
            if exhausted and not reads:
                return

    def _route(
        self, group: list[_Item], decodes: deque[Future[_Item] | _Item], executor: ThreadPoolExecutor
    ) -> None:
        """One query for the group's hashes: catalogued ones skip the decoder (pending ones are resumed)."""
        hashes = [item.sha256 for item in group if item.skip is None]
        existing = (
            {
                sha: (pk, status)
                for sha, pk, status in Artwork.objects.filter(sha256__in=hashes).values_list(
                    "sha256", "id", "status"
                )
            }
            if hashes
            else {}
        )
        for item in group:
            if item.skip is None and item.sha256 in existing:
                item.existing = existing[item.sha256]
                if not self._needs_resume(item):
                    decodes.append(item)
                    continue
                if self.enqueue:  # the workers decode it themselves
                    decodes.append(item)
                    continue
            if item.skip is None:
                decodes.append(
                    executor.submit(
                        prepare_image,
                        item,
                        sizes=self.sizes,
                        draft=self.draft,
                        thumbnail_size=self.thumbnail_size,
                    )
                )
            else:
                decodes.append(item)

    def _needs_resume(self, item: _Item) -> bool:
        """An artwork of an interrupted import: stored, never classified. Classify it (or queue it) now."""
        return (
            item.existing is not None
            and item.existing[1] == Artwork.Status.PENDING
            and not self._ours(item.existing[0])
            and not self.dry_run
            and (self.enqueue or bool(self.versions))
        )

    def _accept(self, item: _Item) -> None:
        if item.skip is not None:
            self._skip(item, *item.skip)
            return
        if item.existing is not None and not self._needs_resume(item):
            self._skip_duplicate(item, item.existing[0])
            return
        if self.dry_run:
            digest = bytes.fromhex(item.sha256)
            if digest in self.seen:
                self._skip(item, DUPLICATE_IN_RUN, "The same file appears earlier in this folder.")
                return
            self.seen.add(digest)
        elif item.sha256 in self.pending_hashes:
            self._skip(item, DUPLICATE_IN_RUN, f"The same file as {self.pending_hashes[item.sha256]}.")
            return
        self.pending_hashes[item.sha256] = item.candidate.rel
        self.batch.append(item)
        self.batch_bytes += len(item.data)
        if len(self.batch) >= self.batch_size or self.batch_bytes >= MAX_BYTES_IN_FLIGHT // 2:
            self._flush()

    def _skip(self, item: _Item, reason: str, detail: str) -> None:
        result = self.result
        if reason == DUPLICATE_IN_CATALOGUE:
            result.duplicates_in_catalogue += 1
        elif reason == DUPLICATE_IN_RUN:
            result.duplicates_in_run += 1
        elif reason == BAD_MANIFEST_ROW:
            result.bad_row_files += 1
        elif reason == DUPLICATE_ACCESSION:
            result.duplicate_accessions += 1
        else:
            result.unreadable[reason] += 1
        result.candidates += 1
        self.report.skip(item.candidate.rel, reason, detail)
        item.release()
        self._advance(1)

    def _skip_duplicate(self, item: _Item, artwork_id: int) -> None:
        if self._ours(artwork_id):
            self._skip(
                item, DUPLICATE_IN_RUN, f"The same file was imported earlier in this run as #{artwork_id}."
            )
        else:
            self._skip(item, DUPLICATE_IN_CATALOGUE, f"Already in the catalogue as #{artwork_id}.")

    def _ours(self, artwork_id: int) -> bool:
        """Whether this run inserted the artwork (kept as id ranges: a batch's ids are nearly always contiguous)."""
        index = bisect.bisect_right(self.our_ids, (artwork_id, float("inf"))) - 1
        return index >= 0 and self.our_ids[index][0] <= artwork_id <= self.our_ids[index][1]

    def _remember(self, ids: list[int]) -> None:
        for artwork_id in sorted(ids):
            last = self.our_ids[-1] if self.our_ids else None
            if last is not None and artwork_id == last[1] + 1:
                self.our_ids[-1] = (last[0], artwork_id)
            else:
                bisect.insort(self.our_ids, (artwork_id, artwork_id))

    def _advance(self, n: int) -> None:
        if self.events.advance and n:
            self.events.advance(n)

    # -- a batch --

    def _flush(self, *, final: bool = False) -> None:
        """Send the batch to the model thread, and meanwhile write the previous batch (its predictions are
        ready by then): the model runs while files and rows of the batch before are written."""
        batch, self.batch, self.batch_bytes = self.batch, [], 0
        if self.dry_run:  # nothing is resumed in a dry run: every catalogued hash was a duplicate
            self._count_imported(batch)
            for item in batch:
                item.release()
            self._advance(len(batch))
            self.pending_hashes = {}
            return
        current = None
        if batch:
            resumed = [item for item in batch if item.existing is not None]
            new = self._drop_conflicts([item for item in batch if item.existing is None])
            prediction = None
            if self.classify and (resumed or new):
                # The model runs before anything is written: rows are then inserted ready, with their
                # predictions, in one transaction, so a row is never left half-done by this path.
                prediction = self.model_thread.submit(self._predict, resumed + new)
            current = _Batch(items=batch, resumed=resumed, new=new, prediction=prediction)
        previous, self.in_flight = self.in_flight, current
        if previous is not None:
            self._complete(previous)
        if final and self.in_flight is not None:
            last, self.in_flight = self.in_flight, None
            self._complete(last)

    def _complete(self, batch: _Batch) -> None:
        if batch.prediction is not None:
            batch.prediction.result()
        stored = self._store(batch.new, ready=self.classify)
        ids = [item.existing[0] for item in batch.resumed if item.existing]
        if ids:
            if self.classify:
                with transaction.atomic():
                    self._store_predictions(ids, batch.resumed)
                    now = timezone.now()
                    Artwork.objects.filter(pk__in=ids, status=Artwork.Status.PENDING).update(
                        status=Artwork.Status.READY, error="", processed_at=now, updated_at=now
                    )
                self.result.classified += len(ids)
            self.result.resumed += len(ids)
            self.result.candidates += len(ids)
        todo = ids + [pk for pk, _ in stored]
        if self.enqueue:
            self._enqueue(todo)
        elif not self.classify:
            self.result.left_pending += len(todo)
        for item in batch.items:
            # Committed now (or skipped): the database finds repeats of these from here on.
            self.pending_hashes.pop(item.sha256, None)
            item.release()
        self._advance(len(ids) + len(stored))
        self.batches_done += 1
        if self.events.batch_done:
            self.events.batch_done(self.batches_done)

    def _predict(self, items: list[_Item]) -> None:
        """Classify and embed a batch with every serving version (the loader's batched fast path)."""
        if not items:
            return
        for version in self.versions:
            classifier = self._classifier(version)
            pixels = np.stack([item.inputs[classifier.input_size] for item in items])
            probabilities, embeddings = classifier.predict_arrays(pixels)
            for item, probs, embedding in zip(items, probabilities, embeddings, strict=True):
                item.predictions[version.model_version.pk] = (probs, embedding)

    def _store_predictions(self, ids: list[int], items: list[_Item]) -> None:
        for version in self.versions:
            classifier, key = version.classifier, version.model_version.pk
            probabilities = np.stack([item.predictions[key][0] for item in items])
            prediction_store(
                artwork_ids=ids,
                model_version=version.model_version,
                classes=classifier.classes,
                probabilities=probabilities,
                embeddings=np.stack([item.predictions[key][1] for item in items]),
            )
            if version.model_version.is_active:
                for item, best in zip(items, np.argmax(probabilities, 1), strict=True):
                    slug = classifier.classes[int(best)]
                    self.result.predicted[slug] += 1
                    label = item.candidate.artwork_type
                    if label is not None:
                        self.result.labels_checked += 1
                        self.result.labels_agreed += int(label.slug == slug)

    def _store(self, items: list[_Item], *, ready: bool) -> list[tuple[int, _Item]]:
        """Write the files, then insert the rows (ready, with their predictions, when ``ready``) and the label
        audit trail in one transaction. Returns (artwork id, item) of those stored; the others are reported as
        skipped. A failure removes the files this batch wrote."""
        for attempt in range(3):
            if attempt:
                items = self._drop_conflicts(items)
            if not items:
                return []
            written: list[str] = []
            try:
                artworks = [self._artwork(item, ready=ready) for item in items]
                self._write_files(artworks, items, written)
                with transaction.atomic():
                    Artwork.objects.bulk_create(artworks)
                    LabelCorrection.objects.bulk_create(
                        LabelCorrection(
                            artwork=artwork,
                            from_type=None,
                            to_type=item.candidate.artwork_type,
                            source=LabelCorrection.Source.IMPORT,
                            note=f"Type given at import ({item.candidate.label_origin}).",
                        )
                        for artwork, item in zip(artworks, items, strict=True)
                        if item.candidate.artwork_type is not None
                    )
                    if ready:
                        self._store_predictions([a.pk for a in artworks], items)
            except (IntegrityError, _Conflict):
                # Another upload or import stored one of these files (or accession numbers) a moment ago: keep
                # any file a committed row now points at, drop ours, and try again without the conflicts.
                self._delete_unreferenced(written)
                continue
            except BaseException:
                self._delete_unreferenced(written)
                raise
            self._count_imported(items)
            self._remember([artwork.pk for artwork in artworks])
            if ready:
                self.result.classified += len(items)
            return [(artwork.pk, item) for artwork, item in zip(artworks, items, strict=True)]
        raise ImportFailed("The batch kept conflicting with concurrent writes; run the import again.")

    def _drop_conflicts(self, items: list[_Item]) -> list[_Item]:
        """The authoritative duplicate check, just before writing: hashes and accession numbers already used."""
        existing = dict(
            Artwork.objects.filter(sha256__in=[i.sha256 for i in items]).values_list("sha256", "id")
        )
        accessions = [
            i.candidate.row.accession for i in items if i.candidate.row and i.candidate.row.accession
        ]
        taken = (
            set(
                Artwork.objects.filter(accession_number__in=accessions).values_list(
                    "accession_number", flat=True
                )
            )
            if accessions
            else set()
        )
        kept = []
        for item in items:
            row = item.candidate.row
            if item.sha256 in existing:
                self._skip_duplicate(item, existing[item.sha256])
            elif row is not None and row.accession and row.accession in taken:
                self._skip(
                    item,
                    DUPLICATE_ACCESSION,
                    f"manifest line {row.line}: accession number {row.accession} is already used by another artwork.",
                )
            else:
                kept.append(item)
        return kept

    def _artwork(self, item: _Item, *, ready: bool) -> Artwork:
        checked = item.checked
        assert checked is not None
        candidate, row = item.candidate, item.candidate.row
        now = timezone.now()
        artwork = Artwork(
            title=((row.title if row else "") or title_from_filename(candidate.path.name))[:300],
            artist=row.artist if row else "",
            date=row.date if row else "",
            accession_number=(row.accession if row else "") or None,
            description=row.description if row else "",
            sha256=item.sha256,
            width=checked.decoded.width,
            height=checked.decoded.height,
            file_size=len(item.data),
            color_histogram=item.histogram,
            curator_type=candidate.artwork_type,
            status=Artwork.Status.READY if ready else Artwork.Status.PENDING,
            processed_at=now if ready else None,
        )
        # Content-addressed names (the model's upload_to): the same file always gets the same name.
        artwork.image.name = artwork_image_path(artwork, f"upload.{checked.decoded.extension}")
        artwork.thumbnail.name = artwork_thumbnail_path(artwork, "thumb.jpg")
        return artwork

    def _write_files(self, artworks: list[Artwork], items: list[_Item], written: list[str]) -> None:
        """Write every image and thumbnail of the batch through the storage backend, several at a time.

        A name already taken was left by an interrupted run (its row was never committed) and may be
        half-written: it is replaced — unless a row committed meanwhile (a concurrent upload of the same image)
        points at it, which makes this item a duplicate after all (:class:`_Conflict`).
        """
        jobs = [
            (field_file.storage, str(field_file.name), content)
            for artwork, item in zip(artworks, items, strict=True)
            for field_file, content in ((artwork.image, item.data), (artwork.thumbnail, item.thumbnail))
        ]
        futures = [
            self.writer.submit(_write_new, storage, name, content, written) for storage, name, content in jobs
        ]
        try:
            wait(futures)
        except BaseException:
            wait(futures)  # Ctrl-C: let the writers finish, so that the clean-up sees every file they wrote
            raise
        taken = [job for job, future in zip(jobs, futures, strict=True) if future.result() is False]
        for storage, name, content in taken:
            if Artwork.objects.filter(Q(image=name) | Q(thumbnail=name)).exists():
                raise _Conflict(name)
            storage.delete(name)
            if not _write_new(storage, name, content, written):
                raise _Conflict(name)

    def _delete_unreferenced(self, names: list[str]) -> None:
        if not names:
            return
        referenced = set(Artwork.objects.filter(image__in=names).values_list("image", flat=True))
        referenced |= set(Artwork.objects.filter(thumbnail__in=names).values_list("thumbnail", flat=True))
        stored_files_delete(n for n in names if n not in referenced)

    def _count_imported(self, items: list[_Item]) -> None:
        result = self.result
        for item in items:
            result.imported += 1
            result.candidates += 1
            candidate = item.candidate
            if candidate.artwork_type is not None:
                result.labelled[candidate.artwork_type.slug] += 1
            else:
                result.unlabelled += 1
                if candidate.unknown_folder:
                    result.unknown_folders[candidate.unknown_folder] += 1

    def _enqueue(self, ids: list[int]) -> None:
        if ids:
            transaction.on_commit(lambda: self._send(ids))  # at once: the rows were committed just before

    def _send(self, ids: list[int]) -> None:
        if classification_enqueue(artwork_ids=ids):
            self.result.queued += len(ids)
        else:
            self.result.left_pending += len(ids)
            message = "The broker could not be reached: some artworks stay pending until the workers' sweep."
            if message not in self.result.warnings:
                self.result.warnings.append(message)


def _write_new(storage: Any, name: str, content: bytes, written: list[str]) -> bool:
    """Save ``content`` as ``name``; False (and nothing left behind) if the name is taken."""
    saved = storage.save(name, ContentFile(content))
    if saved != name:
        storage.delete(saved)
        return False
    written.append(name)  # list.append is atomic: the writer threads share this list
    return True


def _result(entry: Future[_Item] | _Item) -> _Item:
    return entry.result() if isinstance(entry, Future) else entry


def title_from_filename(name: str) -> str:
    """``st_jerome_in-his_study.jpg`` -> ``st jerome in his study`` (the file name is all a folder tells)."""
    stem = PurePosixPath(name).stem
    title = re.sub(r"[\s_\-]+", " ", stem).strip()
    return title or name
