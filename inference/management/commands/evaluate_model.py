"""Measure a model version on a folder of labelled images."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, cast

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from inference.datasets import read_folder
from inference.evaluation import evaluate_classifier, per_type_table
from inference.loader import ModelUnavailable, configure_threads, get_classifier
from inference.registry import newest_version


class Command(BaseCommand):
    help = (
        "Evaluate a model version on DATA_DIR (<type>/<images>): accuracy, macro-F1, per-type precision/recall/F1, "
        "confusion matrix, ECE (15 bins) and precision@5 of the embeddings."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("data_dir", type=Path, help="Labelled images: one sub-folder per type.")
        parser.add_argument(
            "--model",
            default=None,
            help="Version to evaluate (default: ARTSITE_DEFAULT_MODEL, else the newest version).",
        )
        parser.add_argument(
            "--backend",
            choices=("tflite", "keras"),
            default="tflite",
            help="Backend to evaluate: tflite (model.tflite through ai-edge-litert: what serves) or keras "
            "(model.keras through TensorFlow) (default: tflite).",
        )
        parser.add_argument(
            "--catalogue",
            type=Path,
            default=None,
            help="Images the precision@5 search runs against (e.g. the training folder). "
            "Without it, DATA_DIR against itself, leaving each query out.",
        )
        parser.add_argument("--json", action="store_true", help="Print the metrics as JSON only.")
        parser.add_argument(
            "--threads",
            type=int,
            default=None,
            help="TensorFlow threads for the keras backend (default: ARTSITE_TF_THREADS or the CPU count).",
        )

    def handle(self, *args: Any, **options: Any) -> None:

        version = options["model"] or settings.ARTSITE_DEFAULT_MODEL or newest_version()
        if not version:
            raise CommandError(
                f"No model version found in {', '.join(map(str, settings.ARTSITE_MODEL_DIRS))}."
            )
        for folder in (options["data_dir"], options["catalogue"]):
            if folder is not None and not folder.is_dir():
                raise CommandError(f"{folder} is not a folder.")

        if options["backend"] == "keras":
            configure_threads(options["threads"])

        try:
            classifier = get_classifier(version, backend=options["backend"])
        except ModelUnavailable as exc:
            raise CommandError(str(exc)) from exc

        # With --json, stdout carries the JSON only; the progress bar goes to stderr.
        progress_console = Console(file=sys.stderr if options["json"] else cast(IO[str], self.stdout))
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=progress_console, transient=options["json"]) as progress:
            sets = {}
            for name, folder in (("data", options["data_dir"]), ("catalogue", options["catalogue"])):
                if folder is None:
                    continue
                task = progress.add_task(f"Reading {name}", total=None)
                try:
                    sets[name] = read_folder(folder, classifier.input_size, progress=_advance(progress, task))
                except (FileNotFoundError, ValueError) as exc:
                    raise CommandError(str(exc)) from exc
            task = progress.add_task(f"Predicting with {version}", total=None)
            metrics = evaluate_classifier(
                classifier,
                sets["data"],
                catalogue=sets.get("catalogue"),
                progress=_advance(progress, task),
            )
        metrics["backend"] = classifier.backend

        if options["json"]:
            self.stdout.write(json.dumps(metrics, indent=2))
            return
        console = Console(file=cast(IO[str], self.stdout))
        console.print(
            per_type_table(
                f"{version} ({classifier.backend}) on {options['data_dir']} (n={metrics['n']})",
                metrics["per_type"],
            )
        )
        confusion = Table(title="Confusion (rows: true, columns: predicted)")
        confusion.add_column("")
        for slug in classifier.classes:
            confusion.add_column(slug[:10], justify="right")
        for slug, row in zip(classifier.classes, metrics["confusion"], strict=True):
            confusion.add_row(slug, *map(str, row))
        console.print(confusion)
        skipped = metrics["data"]["skipped"]
        console.print(
            f"accuracy {metrics['accuracy']:.3f}  macro-F1 {metrics['macro_f1']:.3f}  ECE {metrics['ece']:.3f}  "
            f"precision@5 {metrics['precision_at_5']:.3f} ({metrics['precision_at_5_catalogue']})"
            + (f"  {skipped} unreadable files skipped" if skipped else "")
        )


def _advance(progress: Any, task: Any) -> Callable[[int, int], None]:
    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    return update
