"""Import a folder of artwork images: ``manage.py import_artworks FOLDER [--manifest FILE] [--async] ...``."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import IO, Any, cast

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from catalogue.importing import DEFAULT_BATCH_SIZE, ImportEvents, ImportFailed, ImportResult, artworks_import

# Bad manifest rows printed in full; the rest are in --report.
MAX_ROWS_SHOWN = 30


class Command(BaseCommand):
    help = (
        "Import every image below FOLDER (JPEG, PNG, WebP, TIFF; walked recursively). Sub-folders named after a type "
        "(drawings/, Painting/, ...) label their images. Duplicates (same file, by sha256) and unreadable files are "
        "skipped and counted. Safe to interrupt: run it again and it completes the rest; on a finished folder it "
        "imports nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("folder", type=Path, help="Folder to import, walked recursively.")
        parser.add_argument(
            "--manifest",
            type=Path,
            default=None,
            help="CSV (with a header) or JSON-lines file with columns path, title, artist, date, accession, type, "
            "description; path is relative to FOLDER. Bad rows are reported with their line number and skipped.",
        )
        parser.add_argument(
            "--async",
            dest="enqueue",
            action="store_true",
            help="Queue classification for the Celery workers instead of classifying in this process.",
        )
        parser.add_argument(
            "--report",
            type=Path,
            default=None,
            help="Write every skipped file with its reason to this CSV file.",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Read, check and count everything, but write nothing (no rows, no files, no tasks).",
        )
        parser.add_argument(
            "--limit", type=int, default=None, help="Consider at most N image files (to try it out)."
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULT_BATCH_SIZE,
            help=f"Images stored and classified together (default {DEFAULT_BATCH_SIZE}).",
        )
        parser.add_argument(
            "--workers", type=int, default=None, help="Decoding threads (default: the number of CPU cores)."
        )
        parser.add_argument(
            "--no-draft",
            action="store_true",
            help="Decode large JPEGs at full size (slower; the stored file is the original either way).",
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar (logs, CI).")

    def handle(self, *args: Any, **options: Any) -> None:

        if options["limit"] is not None and options["limit"] < 0:
            raise CommandError("--limit must be zero or more.")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        console = Console(file=cast(IO[str], self.stdout), stderr=False)
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        report = open(options["report"], "w", newline="", encoding="utf-8") if options["report"] else None  # noqa: SIM115
        progress = Progress(*columns, console=console, disable=options["no_progress"])
        task = progress.add_task(
            "Importing" if not options["dry_run"] else "Checking (dry run)", total=None, rate=""
        )

        def advance(n: int) -> None:
            progress.advance(task, n)
            speed = progress.tasks[task].speed
            if speed:
                progress.update(task, rate=f"{speed:.0f} img/s")

        events = ImportEvents(total=lambda total: progress.update(task, total=total), advance=advance)
        try:
            with progress, report if report else contextlib.nullcontext():
                result = artworks_import(
                    folder=options["folder"],
                    manifest=options["manifest"],
                    dry_run=options["dry_run"],
                    enqueue=options["enqueue"],
                    limit=options["limit"],
                    batch_size=options["batch_size"],
                    workers=options["workers"],
                    draft=not options["no_draft"],
                    report=report,
                    events=events,
                )
        except ImportFailed as exc:
            raise CommandError(str(exc)) from exc
        except KeyboardInterrupt:
            raise CommandError(
                "Interrupted. Everything committed so far is kept; run the same command again to import the rest."
            ) from None
        self._summary(console, result, options)

    def _summary(self, console: Any, result: ImportResult, options: dict[str, Any]) -> None:

        for bad in result.bad_rows[:MAX_ROWS_SHOWN]:
            console.print(f"[yellow]manifest line {bad.line}[/]: {bad.reason}", highlight=False)
        if len(result.bad_rows) > MAX_ROWS_SHOWN:
            console.print(f"... and {len(result.bad_rows) - MAX_ROWS_SHOWN} more bad rows (see --report).")
        for name, count in sorted(result.unknown_folders.items()):
            console.print(
                f"[yellow]folder {name}/[/] names no type: its {count} image(s) were imported without a label.",
                highlight=False,
            )
        table = Table(title="Dry run: nothing was written" if result.dry_run else "Import summary")
        table.add_column("", justify="left")
        table.add_column("images", justify="right")
        for label, value in [*_imported(result), *_classified(result), *_skipped(result), *_speed(result)]:
            table.add_row(label, value)
        console.print(table)
        for warning in result.warnings:
            console.print(f"[yellow]{warning}[/]", highlight=False)
        if options["report"]:
            console.print(f"Skipped files: {options['report']}", highlight=False)


# The summary table's rows, (label, figure), section by section.


def _imported(result: ImportResult) -> list[tuple[str, str]]:
    verb = "Would import" if result.dry_run else "Imported"
    rows = [
        (f"[bold]{verb}[/]", f"[bold]{result.imported}[/]"),
        ("  labelled by folder or manifest", str(result.imported - result.unlabelled)),
        ("  unlabelled", str(result.unlabelled)),
    ]
    rows += [(f"    {slug}", str(count)) for slug, count in sorted(result.labelled.items())]
    if result.resumed:
        rows.append(("Resumed (stored earlier, still pending)", str(result.resumed)))
    return rows


def _classified(result: ImportResult) -> list[tuple[str, str]]:
    rows = []
    if result.classified:
        versions = ", ".join(result.versions)
        rows.append((f"Classified and embedded ({versions})", str(result.classified)))
        rows += [(f"    predicted {slug}", str(count)) for slug, count in sorted(result.predicted.items())]
        if result.labels_checked:
            share = result.labels_agreed / result.labels_checked
            rows.append(("  the model agrees with the folder/manifest label", f"{share:.0%}"))
    if result.queued:
        rows.append(("Queued for the workers", str(result.queued)))
    if result.left_pending:
        rows.append(("[yellow]Left pending[/]", str(result.left_pending)))
    if result.near_duplicates:
        rows.append(
            ("Possible other photos of one work (see /near-duplicates/)", str(result.near_duplicates))
        )
    return rows


def _skipped(result: ImportResult) -> list[tuple[str, str]]:
    rows = [
        ("Duplicates", str(result.duplicates)),
        ("  already in the catalogue", str(result.duplicates_in_catalogue)),
        ("  repeated within this folder", str(result.duplicates_in_run)),
        ("Unreadable", str(result.unreadable_total)),
    ]
    rows += [
        (f"  {reason.replace('_', ' ')}", str(count)) for reason, count in sorted(result.unreadable.items())
    ]
    if result.bad_rows or result.bad_row_files:
        rows.append(("Bad manifest rows", str(len(result.bad_rows))))
        rows.append(("  image files not imported for a bad row", str(result.bad_row_files)))
    if result.duplicate_accessions:
        rows.append(("Accession number already used", str(result.duplicate_accessions)))
    rows.append(("Other files (not images)", str(result.other_files)))
    rows.append(("Image files considered", str(result.candidates)))
    return rows


def _speed(result: ImportResult) -> list[tuple[str, str]]:
    loading = (
        f" (loading the model {result.model_load_seconds:.1f} s)" if result.model_load_seconds >= 0.1 else ""
    )
    rate = f"{result.images_per_second:.1f}"
    if loading:
        rate += f" ({result.images_per_second_loaded:.1f} once the model is loaded)"
    return [("Elapsed", f"{result.elapsed:.1f} s{loading}"), ("Images per second", rate)]
