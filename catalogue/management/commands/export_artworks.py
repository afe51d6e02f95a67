"""Export the catalogue (or the label audit trail) as CSV or JSON lines, filtered as the catalogue list is.

The CSV's first columns (``path, title, artist, date, accession, type, description``) make it an import manifest:
``export_artworks --images DIR DIR/artworks.csv`` on one site, then ``import_artworks DIR --manifest
DIR/artworks.csv`` on another restores the works, their metadata and their labels. docs/export.md has the columns.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from catalogue.export_formats import FORMATS, export_lines
from catalogue.filters import ArtworkFilterSet
from catalogue.selectors.exports import (
    ARTWORK_COLUMNS,
    LABEL_CORRECTION_COLUMNS,
    ExportFiltersInvalid,
    artworks_export,
    label_corrections_count,
    label_corrections_export,
)
from catalogue.services.exports import export_image_write


class Command(BaseCommand):
    help = (
        "Write the catalogue (filtered as the catalogue page filters it) or, with --label-corrections, the label "
        "audit trail to OUTPUT as CSV or JSON lines, streamed ('-' for standard output)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("output", help="The file to write; '-' writes to standard output.")
        parser.add_argument(
            "--format",
            choices=FORMATS,
            help="csv or jsonl (JSON lines). Default: from OUTPUT's extension (.jsonl, .ndjson), else csv.",
        )
        parser.add_argument(
            "--label-corrections",
            action="store_true",
            help="Export the label audit trail (every change of a label) instead of the works; filters do not apply.",
        )
        parser.add_argument(
            "--images",
            type=Path,
            metavar="DIR",
            help="Also copy each exported work's image to DIR under the name in the 'path' column, so that DIR "
            "and the export can be imported elsewhere (import_artworks DIR --manifest OUTPUT).",
        )
        parser.add_argument(
            "--no-progress", action="store_true", help="No progress bar (for logs and pipes)."
        )
        filters = parser.add_argument_group("filters (the catalogue page's and the API's, same values)")
        for name, definition in ArtworkFilterSet.base_filters.items():
            filters.add_argument(
                f"--{name.replace('_', '-')}",
                dest=f"filter_{name}",
                metavar=name.upper(),
                help=str(definition.extra.get("help_text") or definition.label or name),
            )

    def handle(self, *args: Any, **options: Any) -> None:
        output = str(options["output"])
        export_format = options["format"] or ("jsonl" if output.endswith((".jsonl", ".ndjson")) else "csv")
        filters = {
            name: options[f"filter_{name}"]
            for name in ArtworkFilterSet.base_filters
            if options.get(f"filter_{name}") is not None
        }
        progress = Progress(
            TextColumn("Exporting"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(file=sys.stderr),
            disable=options["no_progress"] or output == "-",
        )
        counter = _Counter(progress)
        if options["label_corrections"]:
            if filters or options["images"]:
                raise CommandError(
                    "--label-corrections exports the whole audit trail: no filters, no --images."
                )
            total = label_corrections_count()
            rows = counter.count(label_corrections_export())
            lines = export_lines(rows, format=export_format, columns=LABEL_CORRECTION_COLUMNS)
        else:
            try:
                export = artworks_export(filters=filters)
            except ExportFiltersInvalid as exc:
                raise CommandError(f"Invalid filters: {exc}") from None
            total = export.count()
            images = options["images"]
            on_image = partial(_copy_image, folder=images) if images else None
            rows = counter.count(export.rows(on_image=on_image))
            slugs = [t.slug for t in export.types]
            lines = export_lines(rows, format=export_format, columns=ARTWORK_COLUMNS, type_slugs=slugs)
        # A file is written aside and renamed when complete: an export that fails half-way leaves no half file.
        aside = Path(output + ".part") if output != "-" else None
        with ExitStack() as stack:
            handle: TextIO = sys.stdout if aside is None else stack.enter_context(_open(aside))
            stack.enter_context(progress)
            counter.task = progress.add_task("export", total=total)
            try:
                handle.writelines(lines)
            except BaseException:
                if aside is not None:
                    handle.close()
                    aside.unlink(missing_ok=True)
                raise
        if aside is not None:
            aside.replace(output)
        what = "label changes" if options["label_corrections"] else "works"
        where = "standard output" if output == "-" else output
        self.stderr.write(self.style.SUCCESS(f"Wrote {counter.rows} {what} to {where} ({export_format})."))


class _Counter:
    """Counts the rows as they are written and advances the progress bar."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None
        self.rows = 0

    def count(self, rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for row in rows:
            yield row
            self.rows += 1
            if self.task is not None:
                self.progress.advance(self.task)


def _open(path: Path) -> TextIO:
    try:
        return path.open("w", encoding="utf-8", newline="")
    except OSError as exc:
        raise CommandError(f"Cannot write {path}: {exc.strerror or exc}.") from None


def _copy_image(image_name: str, path: str, *, folder: Path) -> None:
    try:
        export_image_write(image_name=image_name, folder=folder, path=path)
    except OSError as exc:
        raise CommandError(f"Cannot copy the image {image_name} to {folder / path}: {exc}") from None
