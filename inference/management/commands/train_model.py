"""Train a new model version from a folder of labelled images (one sub-folder per type)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, cast

from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.architectures import ARCHITECTURES, DEFAULT_INPUT_SIZES


class Command(BaseCommand):
    help = (
        "Train a model version on DATA_DIR (<type>/<images>), calibrate it, evaluate it on --val-dir and write "
        "<output dir>/<version>/ with model.keras, card.json, confusion.png and curves.png."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("data_dir", nargs="?", type=Path,
                            help="Training images: one sub-folder per type (drawings, engraving, iconography, "
                                 "painting, sculpture; any case, singular or plural).")
        parser.add_argument("--val-dir", type=Path, default=None,
                            help="Validation images, same layout; the card's metrics are measured on them. "
                                 "Without it, on the held-out share of DATA_DIR.")
        parser.add_argument("--architecture", choices=sorted(ARCHITECTURES), default="seed-cnn",
                            help="Network to train (default: seed-cnn).")
        parser.add_argument("--epochs", type=int, default=20, help="Training epochs (default: 20).")
        parser.add_argument("--seed", type=int, default=1337, help="Random seed; same seed, same model (default: 1337).")
        parser.add_argument("--batch-size", type=int, default=32, help="Images per training step (default: 32).")
        parser.add_argument("--learning-rate", type=float, default=1e-3,
                            help="Initial Adam learning rate, cosine-decayed (default: 0.001).")
        parser.add_argument("--holdout", type=float, default=0.1,
                            help="Share of DATA_DIR held out to pick the best epoch and fit the temperature "
                                 "(default: 0.1).")
        parser.add_argument("--input-size", type=int, default=None,
                            help="Square input size in pixels (default: the architecture's, 150 for seed-cnn).")
        parser.add_argument("--no-augment", action="store_true", help="Train without flips, shifts and zooms.")
        parser.add_argument("--output-dir", type=Path, default=None,
                            help="Where the version folder goes (default: the last of ARTSITE_MODEL_DIRS, "
                                 "var/models). Use inference/weights to ship it with the code.")
        parser.add_argument("--name", default=None,
                            help="Version name (default: <architecture>-YYYYMMDD-HHMM).")
        parser.add_argument("--threads", type=int, default=None,
                            help="TensorFlow threads (default: ARTSITE_TF_THREADS or the CPU count).")
        parser.add_argument("--from-catalogue", action="store_true",
                            help="Train on the catalogue's curated artworks instead of DATA_DIR (not available yet).")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["from_catalogue"]:
            raise CommandError("--from-catalogue is not available yet; give a DATA_DIR.")
        if options["data_dir"] is None:
            raise CommandError("Give DATA_DIR, a folder with one sub-folder of images per type.")
        for key in ("data_dir", "val_dir"):
            if options[key] is not None and not options[key].is_dir():
                raise CommandError(f"{options[key]} is not a folder.")
        if options["epochs"] < 1:
            raise CommandError("--epochs must be at least 1.")

        from inference.loader import configure_threads

        configure_threads(options["threads"])  # before TensorFlow starts its runtime

        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        from rich.table import Table

        from inference.datasets import read_folder
        from inference.training import TrainingEvents, train

        architecture = options["architecture"]
        input_size = options["input_size"] or DEFAULT_INPUT_SIZES.get(architecture, 150)
        console = Console(file=cast(IO[str], self.stdout))
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.fields[info]}"))
        with Progress(*columns, console=console, transient=False) as progress:
            datasets = {}
            for name, folder in (("train", options["data_dir"]), ("val", options["val_dir"])):
                if folder is None:
                    continue
                task = progress.add_task(f"Reading {name}", total=None, info="")
                try:
                    datasets[name] = read_folder(folder, input_size, progress=_advance(progress, task))
                except (FileNotFoundError, ValueError) as exc:
                    raise CommandError(str(exc)) from exc
                skipped = len(datasets[name].skipped)
                progress.update(task, info=f"{skipped} unreadable skipped" if skipped else "")

            epochs = options["epochs"]
            epoch_task = progress.add_task("Training", total=epochs, info="")
            batch_task = progress.add_task("  epoch 1", total=None, info="")

            def on_epoch(epoch: int, total: int, logs: dict[str, float]) -> None:
                info = "  ".join(f"{k} {v:.3f}" for k, v in logs.items() if "loss" in k or "accuracy" in k)
                progress.update(epoch_task, completed=epoch, info=info)
                if not console.is_terminal:  # no live bar in a log file: one line per epoch instead
                    console.print(f"epoch {epoch}/{total}  {info}")
                if epoch < total:
                    progress.reset(batch_task, description=f"  epoch {epoch + 1}")

            events = TrainingEvents(
                on_batch=lambda done, steps: progress.update(batch_task, completed=done, total=steps or None),
                on_epoch=on_epoch,
                on_stage=lambda stage: progress.update(epoch_task, description=stage.capitalize()),
            )
            try:
                result = train(
                    train_data=datasets["train"], val_data=datasets.get("val"), architecture=architecture,
                    epochs=epochs, seed=options["seed"], batch_size=options["batch_size"],
                    learning_rate=options["learning_rate"], holdout_fraction=options["holdout"],
                    augment=not options["no_augment"], output_dir=options["output_dir"], version=options["name"],
                    events=events,
                )
            except (ValueError, FileExistsError) as exc:
                raise CommandError(str(exc)) from exc

        card, metrics = result.card, result.card["metrics"]
        table = Table(title=f"{result.version} on {metrics['evaluated_on']} (n={metrics['n']})")
        for column in ("type", "precision", "recall", "F1", "support"):
            table.add_column(column, justify="left" if column == "type" else "right")
        for slug, row in metrics["per_type"].items():
            table.add_row(slug, f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}",
                          str(row["support"]))
        console.print(table)
        p_at_5 = metrics["precision_at_5"]
        console.print(
            f"accuracy {metrics['accuracy']:.3f}  macro-F1 {metrics['macro_f1']:.3f}  "
            f"ECE {metrics['ece']:.3f} (uncalibrated {metrics['ece_uncalibrated']:.3f}, T={card['temperature']:.2f})  "
            f"precision@5 {p_at_5:.3f}  best epoch {card['hyperparameters']['best_epoch']}/{epochs}  "
            f"training {card['training_seconds']:.0f}s"
        )
        self.stdout.write(self.style.SUCCESS(f"Wrote {result.path}"))


def _advance(progress: Any, task: Any) -> Callable[[int, int], None]:
    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    return update
