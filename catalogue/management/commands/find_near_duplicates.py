"""Search the whole catalogue for other photos of the same work (``python manage.py find_near_duplicates``)."""

from __future__ import annotations

from typing import IO, Any, cast

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from catalogue.selectors.near_duplicates import near_duplicate_queue
from catalogue.services.near_duplicates import near_duplicates_scan, near_duplicates_scan_enqueue


class Command(BaseCommand):
    help = (
        "Find likely other photographs (crops, rescans, recolourings, quarter turns) of catalogued works over the "
        "whole catalogue: hashes the works catalogued before hashing existed, then compares every pair by "
        "perceptual hash and every work with its nearest by embedding. New pairs go to the triage page "
        "(/near-duplicates/); pairs decided before are never proposed again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--background",
            action="store_true",
            help="Queue the search for the long-jobs worker instead of running it here.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        console = Console(file=cast(IO[str], self.stdout))
        if options["background"]:
            if not near_duplicates_scan_enqueue():
                raise CommandError("The broker cannot be reached; run without --background.")
            console.print("Queued: new pairs appear on /near-duplicates/ as the worker finds them.")
            return
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            task = bar.add_task("nearest by embedding", total=None)
            result = near_duplicates_scan(
                progress=lambda done, total: bar.update(task, completed=done, total=total)
            )
        console.print(
            f"Hashed {result.hashed} work(s) that had no hash; {result.pairs} new pair(s); "
            f"{near_duplicate_queue().count()} pair(s) to decide on /near-duplicates/."
        )
