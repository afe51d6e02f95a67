"""The run's bookkeeping: every candidate ends imported, resumed or skipped exactly once, and each outcome is counted
in the result, skipped files are written to the report, and the progress bar advances."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from catalogue.importing.results import (
    BAD_MANIFEST_ROW,
    DUPLICATE_ACCESSION,
    DUPLICATE_IN_CATALOGUE,
    DUPLICATE_IN_RUN,
    ImportEvents,
    ImportResult,
    SkipReport,
)
from catalogue.importing.sources import ImportItem


class Tally:
    def __init__(self, *, result: ImportResult, report: SkipReport, events: ImportEvents) -> None:
        self.result = result
        self.report = report
        self.events = events
        self._our_ids: list[tuple[int, int]] = []  # id ranges this run inserted

    def advance(self, n: int) -> None:
        if self.events.advance and n:
            self.events.advance(n)

    def skip(self, item: ImportItem, reason: str, detail: str) -> None:
        """Count a skipped candidate under its reason, report it, and let go of its data."""
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
        self.advance(1)

    def skip_duplicate(self, item: ImportItem, artwork_id: int) -> None:
        """A candidate whose file is catalogued as ``artwork_id``: by this run (a repeat in the folder) or before."""
        if self.is_ours(artwork_id):
            self.skip(
                item, DUPLICATE_IN_RUN, f"The same file was imported earlier in this run as #{artwork_id}."
            )
        else:
            self.skip(item, DUPLICATE_IN_CATALOGUE, f"Already in the catalogue as #{artwork_id}.")

    def is_ours(self, artwork_id: int) -> bool:
        """Whether this run inserted the artwork (kept as id ranges: a batch's ids are nearly always contiguous)."""
        index = bisect.bisect_right(self._our_ids, (artwork_id, float("inf"))) - 1
        return index >= 0 and self._our_ids[index][0] <= artwork_id <= self._our_ids[index][1]

    def imported(self, items: Sequence[ImportItem], ids: Sequence[int] = ()) -> None:
        """Count stored candidates (or, in a dry run, candidates that would be) and remember their artwork ids."""
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
        for artwork_id in sorted(ids):
            last = self._our_ids[-1] if self._our_ids else None
            if last is not None and artwork_id == last[1] + 1:
                self._our_ids[-1] = (last[0], artwork_id)
            else:
                bisect.insort(self._our_ids, (artwork_id, artwork_id))

    def predicted(self, items: Sequence[ImportItem], slugs: Sequence[str]) -> None:
        """Count the active version's predictions (``slugs``, one per item), and how often they agree with the
        folder or manifest label."""
        if not slugs:
            return
        result = self.result
        for item, slug in zip(items, slugs, strict=True):
            result.predicted[slug] += 1
            label = item.candidate.artwork_type
            if label is not None:
                result.labels_checked += 1
                result.labels_agreed += int(label.slug == slug)
