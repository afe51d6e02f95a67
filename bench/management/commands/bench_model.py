"""Serving speed of a model version (single-image latency and batch throughput, beside model.keras and plain
model.predict: :func:`bench.model.benchmark_serving`) and the serving runtime's footprint before and after it left
TensorFlow (start-up to first classification, warm memory, installed size: :mod:`bench.runtime`), in one run
(``make bench-model``)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from PIL import Image
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    from inference.loader import Classifier


class Command(BaseCommand):
    help = (
        "Benchmark the warm serving path of a model version (get_classifier): single-image p50/p95 latency and "
        "batch throughput, each beside the same network through model.predict measured in the same run; then the "
        "runtime's footprint before (TensorFlow, model.keras, tf.lite) and after (ai-edge-litert only): start-up "
        "to first classification in fresh processes, warm resident memory, installed size of the serving and "
        "training requirements."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--model",
            default=None,
            help="Version to benchmark (default: ARTSITE_DEFAULT_MODEL, else the shipped default, "
            "inference/weights/DEFAULT).",
        )
        parser.add_argument(
            "--backend",
            choices=("tflite", "keras"),
            default="tflite",
            help="Serving path to measure: tflite (what web and worker serve: model.tflite on ai-edge-litert) or "
            "keras (model.keras through tf.function) (default: tflite).",
        )
        parser.add_argument(
            "--startup-repeats",
            type=int,
            default=3,
            help="Fresh processes started per path (before, after) to time start-up to first classification; the "
            "median is reported (default: 3).",
        )
        parser.add_argument(
            "--no-footprint",
            action="store_true",
            help="Measure latency and throughput only, without the fresh processes and installed sizes.",
        )
        parser.add_argument(
            "--warm-classifications",
            type=int,
            default=100,
            help="Single-image classifications each fresh process makes before its memory is read (default: 100).",
        )
        parser.add_argument(
            "--data",
            type=Path,
            default=None,
            help="Folder of images (<type>/<images> or flat) to use; default: generated images.",
        )
        parser.add_argument(
            "--images", type=int, default=32, help="How many distinct images to cycle (default: 32)."
        )
        parser.add_argument(
            "--repeats",
            type=int,
            default=200,
            help="Single-image predictions timed on the serving path (default: 200).",
        )
        parser.add_argument(
            "--reference-repeats",
            type=int,
            default=50,
            help="Single-image predictions timed through model.predict (default: 50).",
        )
        parser.add_argument(
            "--batch-size", type=int, default=64, help="Batch size for throughput (default: 64)."
        )
        parser.add_argument(
            "--batch-repeats", type=int, default=10, help="Batches timed per path (default: 10)."
        )
        parser.add_argument(
            "--threads",
            type=int,
            default=None,
            help="TensorFlow threads (default: ARTSITE_TF_THREADS or the CPU count).",
        )
        parser.add_argument("--json", action="store_true", help="Print the figures as JSON only.")
        parser.add_argument(
            "--record",
            action="store_true",
            help="Also store the figures in the version's card.json ('benchmark') and render its "
            "MODEL_CARD.md again.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from inference.loader import configure_threads
        from inference.registry import default_version_name

        version = options["model"] or default_version_name()
        if not version:
            raise CommandError(
                f"No model version found in {', '.join(map(str, settings.ARTSITE_MODEL_DIRS))}."
            )
        if options["data"] is not None and not options["data"].is_dir():
            raise CommandError(f"{options['data']} is not a folder.")
        configure_threads(options["threads"])

        images = _images(options["data"], max(1, options["images"]))
        classifier, keras_classifier, load_seconds = _load(version, options)
        console = Console(file=cast(IO[str], self.stdout), width=132)
        figures = _measure(console, classifier, keras_classifier, images, options)
        figures["load_and_warm_seconds"] = load_seconds
        if not options["no_footprint"]:
            figures["footprint"] = _footprint(console, version, options)
        if options["record"]:
            self._record(classifier, figures)
        if options["json"]:
            self.stdout.write(json.dumps(figures, indent=2))
            return
        source = "from " + str(options["data"]) if options["data"] else "generated"
        console.print(_table(figures, f"{len(images)} images ({source})"))
        _print_notes(console, figures, options["batch_repeats"])
        if "footprint" in figures:
            console.print(_footprint_table(figures["footprint"]))
            _print_footprint_notes(console, figures["footprint"])

    def _record(self, classifier: Classifier, figures: dict[str, Any]) -> None:
        from datetime import UTC, datetime

        from inference.registry import read_card, rewrite_card

        card = read_card(classifier.path)
        card["benchmark"] = {**figures, "measured": datetime.now(UTC).isoformat(timespec="seconds")}
        rewrite_card(classifier.path, card)
        self.stderr.write(f"Recorded in {classifier.path / 'card.json'} and MODEL_CARD.md")


def _load(version: str, options: dict[str, Any]) -> tuple[Classifier, Classifier, float]:
    """(the serving path asked for, the model.keras path (the reference), load + warm-up seconds of the first)."""
    from inference.loader import get_classifier
    from inference.registry import ModelUnavailable

    started = time.perf_counter()
    try:
        classifier = get_classifier(version, backend=options["backend"])
        load_seconds = time.perf_counter() - started
        keras_classifier = get_classifier(version, backend="keras")
    except ModelUnavailable as exc:
        raise CommandError(str(exc)) from exc
    return classifier, keras_classifier, load_seconds


def _measure(
    console: Console,
    classifier: Classifier,
    keras_classifier: Classifier,
    images: list[Image.Image],
    options: dict[str, Any],
) -> dict[str, Any]:
    from bench.model import benchmark_serving

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=options["json"],
    ) as progress:
        task = progress.add_task("warming up")
        return benchmark_serving(
            classifier=classifier,
            images=images,
            keras_classifier=keras_classifier,
            single_repeats=options["repeats"],
            reference_repeats=options["reference_repeats"],
            batch_size=options["batch_size"],
            batch_repeats=options["batch_repeats"],
            progress=lambda name: progress.update(task, description=name),
        )


def _table(figures: dict[str, Any], source: str) -> Table:
    """Serving path against model.predict: single-image p50 and p95, batch throughput, with CPU times."""
    single, batch = figures["single"], figures["batch"]
    xla = " (XLA)" if figures["xla"] and figures["backend"] == "keras" else ""
    table = Table(
        title=f"{figures['version']}: {figures['input_size']} px, serving path {figures['backend']}{xla}, {source}"
    )
    for column in ("measure", "serving path", "model.predict", "ratio", "serving CPU", "model.predict CPU"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    s, r = single["serving"], single["model_predict"]
    table.add_row(
        "single image p50 (ms)",
        f"{s['p50_ms']:.2f}",
        f"{r['p50_ms']:.2f}",
        f"{r['p50_ms'] / s['p50_ms']:.1f}x faster",
        f"{s['cpu_p50_ms']:.2f} ms",
        f"{r['cpu_p50_ms']:.2f} ms",
    )
    table.add_row(
        "single image p95 (ms)",
        f"{s['p95_ms']:.2f}",
        f"{r['p95_ms']:.2f}",
        f"{r['p95_ms'] / s['p95_ms']:.1f}x faster",
        "",
        "",
    )
    table.add_row(
        f"batch of {batch['batch_size']} (images/s)",
        f"{batch['serving_images_per_s']:.0f}",
        f"{batch['model_predict_images_per_s']:.0f}",
        f"{batch['speedup']:.1f}x",
        f"{batch['serving_cpu_ms_per_image']:.2f} ms/image",
        f"{batch['model_predict_cpu_ms_per_image']:.2f} ms/image",
    )
    return table


def _print_notes(console: Console, figures: dict[str, Any], batch_repeats: int) -> None:
    """The model.keras row (when measured) and how to read the figures."""
    single, batch = figures["single"], figures["batch"]
    s, r, k = single["serving"], single["model_predict"], single["keras_tf_function"]
    if k is not None:
        console.print(
            f"Same version from model.keras (tf.function, {figures['input_size']} px): single image p50 "
            f"{k['p50_ms']:.2f} ms (CPU {k['cpu_p50_ms']:.2f} ms), p95 {k['p95_ms']:.2f} ms; batch "
            f"{batch['keras_tf_function_images_per_s']:.0f} images/s "
            f"(CPU {batch['keras_tf_function_cpu_ms_per_image']:.2f} ms/image)."
        )
    load = figures["load_average"]
    console.print(
        f"Load + warm-up {figures['load_and_warm_seconds']:.1f}s. Single image: {s['n']} serving / {r['n']} "
        f"model.predict calls (serving includes resizing the decoded image). Batch: model step alone on pre-decoded "
        f"arrays, median of {batch_repeats}. CPU = process CPU time (all threads) per call. "
        f"Load average (1 min) {load['before'][0]:.1f} before, {load['after'][0]:.1f} after, on "
        f"{figures['cpus']} CPUs: above {figures['cpus']}, other jobs compete for the cores and wall times rise "
        f"(CPU times much less)."
    )


def _footprint(console: Console, version: str, options: dict[str, Any]) -> dict[str, Any]:
    from bench.runtime import footprint

    with console.status("start-up and memory of fresh processes, before and after", spinner="dots"):
        try:
            return footprint(
                version,
                repeats=max(1, options["startup_repeats"]),
                classifications=max(0, options["warm_classifications"]),
            )
        except RuntimeError as exc:
            raise CommandError(str(exc)) from exc


def _footprint_table(figures: dict[str, Any]) -> Table:
    """Before (TensorFlow, model.keras, tf.lite) against after (ai-edge-litert only)."""
    before, after, installed = figures["before"], figures["after"], figures["installed"]
    table = Table(
        title="Serving runtime: before (TensorFlow + model.keras + tf.lite) and after (ai-edge-litert)"
    )
    for column in ("measure", "before", "after", "ratio"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    rows = (
        (f"start-up to first classification, median of {after['repeats']} (s)", "startup_s", 2),
        (f"resident memory after {after['classifications']} more (MB)", "rss_mb", 0),
        ("peak resident memory (MB)", "peak_rss_mb", 0),
    )
    for label, key, digits in rows:
        table.add_row(
            label, f"{before[key]:.{digits}f}", f"{after[key]:.{digits}f}", f"{before[key] / after[key]:.1f}x"
        )
    table.add_row(
        "training-only modules imported",
        ", ".join(before["training_only_modules"]) or "none",
        ", ".join(after["training_only_modules"]) or "none",
        "",
    )
    table.add_row(
        "installed: requirements-training.txt / requirements.txt (MB)",
        f"{installed['training_mb']:.0f}",
        f"{installed['serving_mb']:.0f}",
        f"{installed['training_mb'] / installed['serving_mb']:.1f}x",
    )
    return table


def _print_footprint_notes(console: Console, figures: dict[str, Any]) -> None:
    load, installed = figures["load_average"], figures["installed"]
    largest = ", ".join(f"{name} {mb:.0f} MB" for name, mb in installed["largest_training_only"])
    console.print(
        f"Start-up runs (s): before {figures['before']['startup_runs_s']}, after {figures['after']['startup_runs_s']}"
        f" (fresh processes: Django set up, model loaded, one image classified). Installed sizes are the files of "
        f"the distributions each requirements file pulls in ({installed['training_distributions']} and "
        f"{installed['serving_distributions']}), read from this environment; the largest only training needs: "
        f"{largest}. Load average (1 min) {load['before'][0]:.1f} before, {load['after'][0]:.1f} after."
    )


def _images(folder: Path | None, count: int) -> list[Image.Image]:
    """``count`` generated images, or up to ``count`` decoded from ``folder`` spread across it."""
    from inference.preprocessing import ALLOWED_EXTENSIONS, ImageRejected, decode_image

    if folder is None:
        rng = np.random.default_rng(0)
        return [Image.fromarray(rng.integers(0, 256, (320, 300, 3), dtype=np.uint8)) for _ in range(count)]
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in ALLOWED_EXTENSIONS)
    # Spread the picks across the folder (and so across types) rather than taking the first type only.
    picks = (
        [paths[i] for i in np.linspace(0, len(paths) - 1, min(count, len(paths))).astype(int)]
        if paths
        else []
    )
    images = []
    for path in picks:
        try:
            images.append(decode_image(path.read_bytes()).image)
        except ImageRejected:
            continue
    if not images:
        raise CommandError(f"No readable images in {folder}.")
    return images
