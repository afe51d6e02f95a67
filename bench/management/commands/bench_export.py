"""Stream an export of the whole catalogue (the selector and the CSV / JSON lines writer that the portal, the API
and ``export_artworks`` use) and print rows/s and memory at checkpoints, to show memory stays flat as rows grow.

Read-only: run it on any catalogue, e.g. the 1M-row one ``make bench-pages`` builds (``make bench-export``)::

    ARTSITE_DATABASE_NAME=artsite_bench_pages python manage.py bench_export --format csv
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from catalogue.export_formats import FORMATS, export_lines
from catalogue.selectors.exports import ARTWORK_COLUMNS, artworks_export

CHECKPOINTS = (1_000, 10_000, 100_000, 250_000, 500_000, 1_000_000, 2_000_000, 5_000_000)


def _rss_mb() -> float:
    """This process's resident memory now (Linux /proc), in MB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6  # KiB on Linux


class Command(BaseCommand):
    help = "Stream an export of the catalogue and print rows/s and resident memory at 1k, 10k, 100k ... rows."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", choices=FORMATS, default="csv", help="csv or jsonl (default csv).")
        parser.add_argument(
            "--output", default=os.devnull, help=f"Where to write the export (default {os.devnull})."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        load = os.getloadavg()
        export = artworks_export(filters={})
        total = export.count()
        self.stdout.write(
            f"Exporting {total:,} works as {options['format']} to {options['output']} "
            f"(load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}); RSS before: {_rss_mb():.0f} MB"
        )
        self.stdout.write(f"{'rows':>10} {'seconds':>9} {'rows/s':>9} {'RSS MB':>8} {'peak RSS MB':>12}")
        lines = export_lines(
            export.rows(),
            format=options["format"],
            columns=ARTWORK_COLUMNS,
            type_slugs=[t.slug for t in export.types],
        )
        checkpoints = [c for c in CHECKPOINTS if c < total] + [total]
        rows, written, started = -1 if options["format"] == "csv" else 0, 0, time.perf_counter()
        with open(options["output"], "w", encoding="utf-8") as out:
            for line in lines:
                out.write(line)
                written += len(line)
                rows += 1
                if checkpoints and rows == checkpoints[0]:
                    checkpoints.pop(0)
                    elapsed = time.perf_counter() - started
                    self.stdout.write(
                        f"{rows:>10,} {elapsed:>9.1f} {rows / elapsed:>9,.0f} {_rss_mb():>8.0f} "
                        f"{_peak_rss_mb():>12.0f}"
                    )
        elapsed = time.perf_counter() - started
        load = os.getloadavg()
        self.stdout.write(
            self.style.SUCCESS(
                f"{max(rows, 0):,} rows, {written / 1e6:,.0f} MB in {elapsed:.1f} s "
                f"({max(rows, 0) / max(elapsed, 1e-9):,.0f} rows/s); peak RSS {_peak_rss_mb():.0f} MB; "
                f"load average after {load[0]:.2f}"
            )
        )
