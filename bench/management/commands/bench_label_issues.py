"""How well the mislabel detector finds planted label errors (``make bench-label-issues``; the measuring is
:mod:`bench.label_issues`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import IO, Any, cast

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench.label_issues import (
    ATTEMPTS,
    attempt_run,
    contact_sheet_write,
    corpus_read,
    features_ensure,
    load_average,
    ranking_write_csv,
)


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


class Command(BaseCommand):
    help = (
        "Flip a seeded share of a labelled folder's labels and run the product's mislabel detector: recall of the "
        "flipped labels, precision (naive and without the works flagged before flipping), the flipped share of "
        "the K most doubtful labels; writes a contact sheet and a CSV of the unflipped ranking."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--data",
            type=Path,
            default=Path("../shared/data/art-images/train"),
            help="Labelled folder, <type>/<images> (default: ../shared/data/art-images/train).",
        )
        parser.add_argument(
            "--out",
            type=Path,
            default=None,
            help="Folder for the feature cache, contact sheet and CSV (default: var/bench).",
        )
        parser.add_argument(
            "--attempts",
            default="linear-probe,product",
            help=f"Comma-separated detector variants to measure, or 'all' ({', '.join(ATTEMPTS)}); "
            "the contact sheet and CSV come from 'product' (default: linear-probe,product).",
        )
        parser.add_argument("--rates", default="0.05,0.10", help="Noise rates to plant (default: 0.05,0.10).")
        parser.add_argument(
            "--seeds",
            default="21,22,23",
            help="Flip seeds; figures are averaged over them (default: 21,22,23; 14-18 served to choose the "
            "product's settings, so they are left out of the reported figures).",
        )
        parser.add_argument(
            "--threads",
            type=int,
            default=None,
            help="TensorFlow threads (default: ARTSITE_TF_THREADS or CPUs).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from inference.loader import configure_threads

        data: Path = options["data"]
        if not data.is_dir():
            raise CommandError(f"{data} is not a folder.")
        names = list(ATTEMPTS) if options["attempts"] == "all" else options["attempts"].split(",")
        unknown = [name for name in names if name not in ATTEMPTS]
        if unknown:
            raise CommandError(f"Unknown attempts {unknown}; choose among {', '.join(ATTEMPTS)}.")
        out: Path = options["out"] or Path(settings.VAR_DIR) / "bench"
        configure_threads(options["threads"])
        console = Console(file=cast(IO[str], self.stdout), width=160)
        console.print(f"load average at start: {load_average()}")

        corpus = corpus_read(data)
        console.print(f"{len(corpus.labels)} labelled images in {data}")
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            tasks: dict[str, Any] = {}

            def step(what: str, done: int, total: int) -> None:
                if what not in tasks:
                    tasks[what] = bar.add_task(f"features {what}", total=total)
                bar.update(tasks[what], completed=done)

            for name in names:
                features_ensure(corpus, ATTEMPTS[name].features, out / "label-features", step)
        for key, seconds in corpus.extract_seconds.items():
            console.print(f"features {key}: {seconds:.1f} s (0 when cached)")

        table = self._table()
        for name in names:
            started = time.perf_counter()
            clean, figures = attempt_run(
                corpus, ATTEMPTS[name], rates=_floats(options["rates"]), seeds=_ints(options["seeds"])
            )
            self._rows(table, name, clean, figures, time.perf_counter() - started)
            console.print(f"{name}: {ATTEMPTS[name].describe()}  (load average {load_average()})")
            if name == "product":
                sheet, ranking = out / "label-issues.png", out / "label-issues.csv"
                contact_sheet_write(corpus, clean.detection, sheet)
                ranking_write_csv(corpus, clean.detection, ranking)
                console.print(f"contact sheet: {sheet}\nranking: {ranking}")
        console.print(table)
        console.print(f"load average at the end: {load_average()}")

    @staticmethod
    def _table() -> Table:
        table = Table(title="Planted label errors found (averaged over the flip seeds)")
        for column in (
            "attempt",
            "flagged before",
            "noise",
            "flipped",
            "flagged",
            "recall",
            "precision",
            "precision w/o before",
            "top-K share",
            "top-K min",
            "s per detection",
            "s total",
        ):
            table.add_column(
                column, justify="left" if column == "attempt" else "right", no_wrap=column == "attempt"
            )
        return table

    @staticmethod
    def _rows(
        table: Table, name: str, clean: Any, figures: dict[float, dict[str, float]], total: float
    ) -> None:
        for rate, row in figures.items():
            table.add_row(
                name,
                str(int(clean.detection.flagged.sum())),
                f"{rate:.0%}",
                f"{row['flipped']:.0f}",
                f"{row['flagged']:.0f}",
                f"{row['recall']:.3f}",
                f"{row['precision']:.3f}",
                f"{row['precision_new']:.3f}",
                f"{row['top_k']:.3f}",
                f"{row['top_k_min']:.3f}",
                f"{row['seconds']:.1f}",
                f"{total:.0f}",
            )
