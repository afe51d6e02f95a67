"""What a run reports: its counts (:class:`ImportResult`), every skipped file with its reason (a CSV report, streamed
as files are skipped) and the hooks a progress bar listens to (:class:`ImportEvents`)."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

# Reasons a file is skipped (the report's `reason` column); unreadable files carry the upload check's own reason
# (not_image, truncated, corrupt, too_large, too_many_pixels, unsupported_format, empty) or `read_error`.
NOT_AN_IMAGE_FILE = "not_an_image_file"
DUPLICATE_IN_CATALOGUE = "duplicate_in_catalogue"
DUPLICATE_IN_RUN = "duplicate_in_run"
BAD_MANIFEST_ROW = "bad_manifest_row"
DUPLICATE_ACCESSION = "duplicate_accession"
READ_ERROR = "read_error"
OUTSIDE_FOLDER = "outside_folder"  # a link to a file outside the folder: never read


class ImportFailed(Exception):
    """The import cannot start (no such folder, unreadable manifest, unavailable model); nothing was written."""


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
    near_duplicates: int = 0  # new candidate pairs: likely other photos of a catalogued work (triage page)
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


class SkipReport:
    """The skipped files, streamed to a CSV file as they happen (never held in memory)."""

    def __init__(self, handle: TextIO | None) -> None:
        self._writer = csv.writer(handle) if handle is not None else None
        if self._writer is not None:
            self._writer.writerow(["path", "reason", "detail"])

    def skip(self, path: str, reason: str, detail: str = "") -> None:
        if self._writer is not None:
            self._writer.writerow([path, reason, detail])
