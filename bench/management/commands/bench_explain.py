"""Time of the explanation maps (``make bench-explain``; the measuring is :func:`bench.explain.benchmark_explanations`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table


class Command(BaseCommand):
    help = (
        "Time the occlusion explanation maps as the portal makes them (decode, one occlusion batch through the "
        "serving model, overlay PNG): p50/p95 per map and per image (two maps), the model calls, and how much "
        "more hiding the map's hottest square lowers the probability than hiding random squares."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "folder",
            nargs="?",
            type=Path,
            default=None,
            help="Folder of images (searched recursively, picks spread across it); default: generated pictures.",
        )
        parser.add_argument(
            "--images", type=int, default=20, help="How many images (default: 20; two maps each)."
        )
        parser.add_argument(
            "--model",
            default=None,
            help="Version to use (default: ARTSITE_DEFAULT_MODEL, else the shipped default, inference/weights/DEFAULT).",
        )
        parser.add_argument("--grid", type=int, default=None, help="Positions per side (default: 8).")
        parser.add_argument(
            "--patch",
            type=float,
            default=None,
            help="Square's side as a share of the input's (default: 0.25).",
        )
        parser.add_argument(
            "--fill", choices=("mean", "grey"), default="mean", help="What the square shows (default: mean)."
        )
        parser.add_argument(
            "--threads",
            type=int,
            default=None,
            help="TensorFlow threads (default: ARTSITE_TF_THREADS or the CPU count).",
        )
        parser.add_argument("--json", action="store_true", help="Print the figures as JSON only.")

    def handle(self, *args: Any, **options: Any) -> None:
        from bench.explain import benchmark_explanations
        from inference.explain import DEFAULT_GRID, DEFAULT_PATCH
        from inference.loader import configure_threads, get_classifier
        from inference.registry import ModelUnavailable, default_version_name

        version = options["model"] or default_version_name()
        if not version:
            raise CommandError(
                f"No model version found in {', '.join(map(str, settings.ARTSITE_MODEL_DIRS))}."
            )
        folder = options["folder"]
        if folder is not None and not folder.is_dir():
            raise CommandError(f"{folder} is not a folder.")
        if options["images"] < 1:
            raise CommandError("--images must be at least 1.")
        configure_threads(options["threads"])
        try:
            classifier = get_classifier(version)
        except ModelUnavailable as exc:
            raise CommandError(str(exc)) from exc
        files = _files(folder, options["images"])
        console = Console(file=cast(IO[str], self.stdout), width=132)
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=options["json"],
        ) as progress:
            task = progress.add_task("warming up")
            try:
                figures = benchmark_explanations(
                    classifier=classifier,
                    files=files,
                    grid=options["grid"] or DEFAULT_GRID,
                    patch=options["patch"] or DEFAULT_PATCH,
                    fill=options["fill"],
                    progress=lambda name: progress.update(task, description=name),
                )
            except ValueError as exc:  # a grid or patch that cannot cover the input
                raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(json.dumps(figures, indent=2))
            return
        source = f"from {folder}" if folder else "generated"
        console.print(_table(figures, source))
        _print_notes(console, figures)


def _table(figures: dict[str, Any], source: str) -> Table:
    method = figures["method"]
    table = Table(
        title=f"{figures['version']} ({figures['backend']}, {figures['input_size']} px): occlusion grid "
        f"{method['grid']}, square {method['patch']:.0%} of the side, {method['fill']} fill; "
        f"{figures['images']} images ({source})"
    )
    for column in ("measure", "p50 (ms)", "p95 (ms)", "n"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for label, key in (
        ("one map (decode + model + PNG)", "per_map_ms"),
        ("one image (two maps)", "per_image_ms"),
    ):
        row = figures[key]
        table.add_row(label, f"{row['p50']:.0f}", f"{row['p95']:.0f}", str(row["n"]))
    return table


def _print_notes(console: Console, figures: dict[str, Any]) -> None:
    stages, faith, load = figures["stages_p50_ms"], figures["faithfulness"], figures["load_average"]
    console.print(
        f"Per map (p50): decode {stages['decode']:.0f} ms, model {stages['model']:.0f} ms, overlay + PNG "
        f"{stages['render']:.0f} ms. Model calls per map: {figures['model_calls_per_map']:.0f} predict_arrays "
        f"of {figures['images_per_map']} images ({figures['interpreter_batches_per_map']} interpreter "
        f"batches); the model alone on such a batch: {figures['model_alone_ms']:.0f} ms (median, same run)."
    )
    console.print(
        f"Faithfulness (model's type): hiding the map's hottest square lowers its probability by "
        f"{faith['salient_drop_mean']:.3f} on average, a random square of the same size by "
        f"{faith['random_drop_mean']:.3f}; the hottest beats the mean of {faith['random_regions']} random squares "
        f"on {faith['share_salient_above_random_mean']:.0%} of images and every one of them on "
        f"{faith['share_salient_above_every_random']:.0%}."
    )
    console.print(
        f"Load average (1 min) {load['before'][0]:.1f} before, {load['after'][0]:.1f} after, on "
        f"{figures['cpus']} CPUs: above {figures['cpus']}, other jobs compete for the cores and times rise."
    )


def _files(folder: Path | None, count: int) -> list[bytes]:
    """``count`` encoded images as a store would hold them: generated pictures, or files spread across ``folder``."""
    from bench.pictures import jpeg_bytes, synthetic_picture
    from inference.preprocessing import ALLOWED_EXTENSIONS, ImageRejected, decode_image

    if folder is None:
        return [jpeg_bytes(synthetic_picture(seed, size=(900, 700))) for seed in range(count)]
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in ALLOWED_EXTENSIONS)
    if not paths:
        raise CommandError(f"No images in {folder}.")
    picks = [paths[i] for i in np.unique(np.linspace(0, len(paths) - 1, min(count, len(paths))).astype(int))]
    files = []
    for path in picks:
        data = path.read_bytes()
        try:
            decode_image(data)
        except ImageRejected:
            continue
        files.append(data)
    if not files:
        raise CommandError(f"No readable images in {folder}.")
    return files
