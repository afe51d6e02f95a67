"""Train a new model version from a folder of labelled images (one sub-folder per type), or from the catalogue
(``--from-catalogue``: the Models page's training job, run in this process)."""

from __future__ import annotations

import dataclasses
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, cast

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from catalogue.models import TrainingJob
from catalogue.services.training_jobs import (
    TrainingJobRefused,
    training_job_activate,
    training_job_run,
    training_job_start,
)
from inference.architectures import ARCHITECTURES, DEFAULT_INPUT_SIZES, require_pretrained_weights
from inference.datasets import ImageSet, read_folder
from inference.evaluation import per_type_table
from inference.loader import configure_threads
from inference.training import TrainingConfig, TrainingEvents, train
from inference.training.config import RECIPE_DEFAULTS

# Options that set a TrainingConfig field of the same name; None (not given) keeps the config's default.
CONFIG_OPTIONS = (
    "epochs",
    "seed",
    "batch_size",
    "learning_rate",
    "fine_tune_from",
    "augment_views",
    "label_smoothing",
    "weight_decay",
    "mixup",
    "ema_decay",
    "soup",
    "body_lr_factor",
    "input_size",
)


def _default(field: str) -> Any:
    """A TrainingConfig field's default, for the help texts (the config holds the one copy)."""
    return {f.name: f.default for f in dataclasses.fields(TrainingConfig)}[field]


def _per_architecture(field: str) -> str:
    return ", ".join(
        f"{RECIPE_DEFAULTS[name][field]} for {name}" for name in ("seed-cnn", "efficientnet-lite0")
    )


class Command(BaseCommand):
    help = (
        "Train a model version on DATA_DIR (<type>/<images>), calibrate it, evaluate it on --val-dir and write "
        "<output dir>/<version>/ with model.keras, card.json, confusion.png and curves.png."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "data_dir",
            nargs="?",
            type=Path,
            help="Training images: one sub-folder per type (drawings, engraving, iconography, "
            "painting, sculpture; any case, singular or plural).",
        )
        parser.add_argument(
            "--val-dir",
            type=Path,
            default=None,
            help="Validation images, same layout; the card's metrics are measured on them. "
            "Without it, on the held-out share of DATA_DIR.",
        )
        parser.add_argument(
            "--architecture",
            choices=sorted(ARCHITECTURES),
            default=None,
            help="Network to train (default: the architecture and input size of the default version, "
            "ARTSITE_DEFAULT_MODEL or inference/weights/DEFAULT, read from its card: what ships). "
            "efficientnet-lite0, -lite1 (240 px) and -lite2 (260 px) fine-tune ImageNet EfficientNet-Lite "
            "backbones with the same recipe; every option marked efficientnet-lite below applies to all three. "
            "Lite0's and Lite1's weights ship; Lite2's must be ported first "
            "(inference/weights/backbones/README.md). seed-cnn is the small original network.",
        )
        self._add_recipe_arguments(parser)
        self._add_tail_arguments(parser)
        parser.add_argument(
            "--output-dir",
            type=Path,
            default=None,
            help="Where the version folder goes (default: the last of ARTSITE_MODEL_DIRS, "
            "var/models). Use inference/weights to ship it with the code.",
        )
        parser.add_argument(
            "--name", default=None, help="Version name (default: <architecture>-YYYYMMDD-HHMM)."
        )
        parser.add_argument(
            "--threads",
            type=int,
            default=None,
            help="TensorFlow threads (default: ARTSITE_TF_THREADS or the CPU count).",
        )
        parser.add_argument(
            "--from-catalogue",
            action="store_true",
            help="Run a training job on the catalogue instead of DATA_DIR, in this process (the Models page "
            "queues the same job for the training worker): the ready artworks with their effective types, the "
            "gold set of verified labels left out; the version is compared with the active one on the gold set "
            "and published with the gate's decision.",
        )
        parser.add_argument(
            "--activate",
            action="store_true",
            help="--from-catalogue: activate the new version if the gate offers it (the catalogue is re-embedded "
            "in the background, then the switch happens), as the Models page's Activate does.",
        )

    @staticmethod
    def _add_recipe_arguments(parser: CommandParser) -> None:
        """The options every architecture uses."""
        parser.add_argument(
            "--epochs",
            type=int,
            default=None,
            help=f"Training epochs (default: {_per_architecture('epochs')}).",
        )
        parser.add_argument(
            "--seed",
            type=int,
            default=None,
            help=f"Random seed; same seed, same model (default: {_default('seed')}).",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=None,
            help=f"Images per training step (default: {_per_architecture('batch_size')}).",
        )
        parser.add_argument(
            "--learning-rate",
            type=float,
            default=None,
            help=f"Peak learning rate, cosine-decayed (default: {_per_architecture('learning_rate')}).",
        )
        parser.add_argument(
            "--tflite",
            choices=("default", "none", "fp32", "fp16", "int8"),
            default="default",
            help="Serving copy (model.tflite) written beside model.keras: its quantization, or none for a "
            "version that is only evaluated, never served (default: int8 for efficientnet-lite, fp32 for "
            "seed-cnn).",
        )
        parser.add_argument(
            "--holdout",
            type=float,
            default=None,
            help="Share of DATA_DIR held out to pick the best epoch and fit the temperature "
            f"(default: {_default('holdout_fraction')}).",
        )
        parser.add_argument(
            "--input-size",
            type=int,
            default=None,
            help="Square input size in pixels (default: the default version's without --architecture, else the "
            f"architecture's: {', '.join(f'{size} for {name}' for name, size in DEFAULT_INPUT_SIZES.items())}).",
        )
        parser.add_argument(
            "--no-augment", action="store_true", help="Train without flips, shifts and zooms."
        )

    @staticmethod
    def _add_tail_arguments(parser: CommandParser) -> None:
        """The options of the EfficientNet-Lite tail recipe (the seed CNN ignores them)."""
        parser.add_argument(
            "--fine-tune-from",
            default=None,
            help="efficientnet-lite: first block trained; earlier blocks keep their ImageNet "
            f"weights (default: {_default('fine_tune_from')}).",
        )
        parser.add_argument(
            "--augment-views",
            type=int,
            default=None,
            help="efficientnet-lite: random crop/colour views cached per image, besides the plain "
            f"and mirrored ones (default: {_default('augment_views')}).",
        )
        parser.add_argument(
            "--label-smoothing",
            type=float,
            default=None,
            help=f"efficientnet-lite: label smoothing of the cross-entropy (default: {_default('label_smoothing')}).",
        )
        parser.add_argument(
            "--weight-decay",
            type=float,
            default=None,
            help=f"efficientnet-lite: AdamW weight decay (default: {_default('weight_decay')}).",
        )
        parser.add_argument(
            "--mixup",
            type=float,
            default=None,
            help="efficientnet-lite: mixup of the cached activations, Beta(a, a) weights; 0 turns "
            f"it off (default: {_default('mixup')}).",
        )
        parser.add_argument(
            "--ema-decay",
            type=float,
            default=None,
            help="efficientnet-lite: keep an exponential moving average of the weights with this "
            f"decay per step; 0 keeps the last weights (default: {_default('ema_decay')}).",
        )
        parser.add_argument(
            "--soup",
            type=int,
            default=None,
            help="efficientnet-lite: train this many members from the same start (different data "
            "order, views, mixup) and average their weights: a 'model soup', no extra serving "
            f"cost, N times the training steps (default: {_default('soup')}).",
        )
        parser.add_argument(
            "--float-trunk",
            action="store_true",
            help="efficientnet-lite: with an int8 serving copy, still train the tail on the float32 "
            "trunk's activations (by default it trains on the int8 trunk's, the features it is served).",
        )
        parser.add_argument(
            "--body-lr-factor",
            type=float,
            default=None,
            help="efficientnet-lite: learning rate of the pretrained blocks relative to the new "
            f"layers (default: {_default('body_lr_factor')}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["from_catalogue"] and options["data_dir"] is not None:
            raise CommandError("Give either DATA_DIR or --from-catalogue, not both.")
        if options["from_catalogue"] and options["output_dir"] is not None:
            raise CommandError(
                "--from-catalogue publishes into the last of ARTSITE_MODEL_DIRS (where the portal finds it); "
                "--output-dir does not apply."
            )
        if not options["from_catalogue"]:
            if options["data_dir"] is None:
                raise CommandError("Give DATA_DIR, a folder with one sub-folder of images per type.")
            for key in ("data_dir", "val_dir"):
                if options[key] is not None and not options[key].is_dir():
                    raise CommandError(f"{options[key]} is not a folder.")
        config = _config(options)
        try:
            require_pretrained_weights(config.architecture)  # before minutes of reading images
        except FileNotFoundError as exc:
            raise CommandError(str(exc)) from exc

        configure_threads(options["threads"])  # before TensorFlow starts its runtime
        if options["from_catalogue"]:
            self._from_catalogue(options)
        else:
            self._from_folders(options, config)

    def _from_folders(self, options: dict[str, Any], config: TrainingConfig) -> None:

        console = Console(file=cast(IO[str], self.stdout))
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
        )
        with Progress(*columns, console=console, transient=False) as progress:
            datasets = {
                name: _read(progress, name, folder, config.input_size)
                for name, folder in (("train", options["data_dir"]), ("val", options["val_dir"]))
                if folder is not None
            }
            try:
                result = train(
                    train_data=datasets["train"],
                    val_data=datasets.get("val"),
                    config=config,
                    output_dir=options["output_dir"],
                    version=options["name"],
                    events=_progress_events(progress, console, config.epochs),
                    extra_card=_reproduce(),
                )
            except (ValueError, FileExistsError) as exc:
                raise CommandError(str(exc)) from exc
        _print_result(console, result.card, config.epochs)
        self.stdout.write(self.style.SUCCESS(f"Wrote {result.path}"))

    def _from_catalogue(self, options: dict[str, Any]) -> None:
        # The job builds the same config from the same overrides (TrainingConfig.for_architecture).
        job_options = _overrides(options)
        if options["architecture"]:
            job_options["architecture"] = options["architecture"]
        if options["name"]:
            job_options["version"] = options["name"]
        try:
            job = training_job_start(options=job_options, enqueue=False)
        except TrainingJobRefused as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Training job {job.pk}: training on the catalogue in this process.")
        ended = training_job_run(job_id=job.pk, echo=self.stdout.write) or job
        if ended.status != TrainingJob.Status.DONE:
            raise CommandError(f"Training job {ended.pk} ended {ended.status}: {ended.error}")
        job = ended
        self.stdout.write(f"Wrote {job.version}: {job.gate.get('reason', '')}")
        if not options["activate"]:
            self.stdout.write("Activate it on the Models page (/models/) or with --activate.")
            return
        try:
            version = training_job_activate(job=job)
        except TrainingJobRefused as exc:
            self.stdout.write(self.style.WARNING(f"{exc} It was not activated."))
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Activated {version.version}: the catalogue is re-embedded in the background "
                "(python manage.py activate_model --list shows progress)."
            )
        )


def _overrides(options: dict[str, Any]) -> dict[str, Any]:
    """The TrainingConfig fields the options set (the rest keep the recipe's defaults)."""
    overrides: dict[str, Any] = {name: options[name] for name in CONFIG_OPTIONS if options[name] is not None}
    if options["holdout"] is not None:
        overrides["holdout_fraction"] = options["holdout"]
    if options["tflite"] != "default":
        overrides["tflite"] = None if options["tflite"] == "none" else options["tflite"]
    if options["no_augment"]:
        overrides["augment"] = False
    if options["float_trunk"]:
        overrides["quantized_trunk"] = False
    return overrides


def _config(options: dict[str, Any]) -> TrainingConfig:
    """The TrainingConfig the options ask for: the options given, the config's defaults for the rest."""
    overrides = _overrides(options)
    try:
        return TrainingConfig.for_architecture(options["architecture"], **overrides)
    except (LookupError, ValueError) as exc:
        raise CommandError(
            f"{exc} Give --architecture." if options["architecture"] is None else str(exc)
        ) from exc


def _read(progress: Any, name: str, folder: Path, input_size: int) -> ImageSet:
    """One labelled folder read at ``input_size``, with its own progress bar."""
    task = progress.add_task(f"Reading {name}", total=None, info="")
    try:
        dataset = read_folder(folder, input_size, progress=_advance(progress, task))
    except (FileNotFoundError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    skipped = len(dataset.skipped)
    progress.update(task, info=f"{skipped} unreadable skipped" if skipped else "")
    return dataset


def _progress_events(progress: Any, console: Any, epochs: int) -> TrainingEvents:
    """Training's progress hooks drawn as an epoch bar and a batch bar (one line per epoch in a log file)."""
    epoch_task = progress.add_task("Training", total=epochs, info="")
    batch_task = progress.add_task("  epoch 1", total=None, info="")

    def on_epoch(epoch: int, total: int, logs: dict[str, float]) -> None:
        info = "  ".join(f"{k} {v:.3f}" for k, v in logs.items() if "loss" in k or "accuracy" in k)
        progress.update(epoch_task, completed=epoch, info=info)
        if not console.is_terminal:  # no live bar in a log file: one line per epoch instead
            console.print(f"epoch {epoch}/{total}  {info}")
        if epoch < total:
            progress.reset(batch_task, description=f"  epoch {epoch + 1}")

    return TrainingEvents(
        on_batch=lambda done, steps: progress.update(batch_task, completed=done, total=steps or None),
        on_epoch=on_epoch,
        on_stage=lambda stage: progress.update(epoch_task, description=stage.capitalize()),
    )


def _print_result(console: Any, card: dict[str, Any], epochs: int) -> None:
    """The per-type table and the one-line summaries of model.keras and of the serving copy."""
    metrics = card["metrics"]
    console.print(
        per_type_table(
            f"{card['version']} on {metrics['evaluated_on']} (n={metrics['n']})", metrics["per_type"]
        )
    )
    console.print(
        f"accuracy {metrics['accuracy']:.3f}  macro-F1 {metrics['macro_f1']:.3f}  "
        f"ECE {metrics['ece']:.3f} (uncalibrated {metrics['ece_uncalibrated']:.3f}, T={card['temperature']:.2f})  "
        f"precision@5 {metrics['precision_at_5']:.3f}  best epoch {card['hyperparameters']['best_epoch']}/{epochs}  "
        f"training {card['training_seconds']:.0f}s"
    )
    serving = card.get("serving")
    if serving:
        m = serving["metrics"]
        p5 = m.get("precision_at_5")
        console.print(
            f"{serving['file']} ({serving['quantization']}, {serving['size_bytes'] / 1e6:.1f} MB): accuracy "
            f"{m['accuracy']:.3f}  macro-F1 {m['macro_f1']:.3f}  ECE {m['ece']:.3f}  precision@5 "
            f"{p5 if p5 is None else f'{p5:.3f}'}  top-1 agreement with model.keras "
            f"{serving['agreement_with_keras']['top1_agreement']:.3f}"
        )


def _reproduce() -> dict[str, str]:
    """The command line, for the card, when this runs as ``manage.py train_model`` (not from call_command)."""

    if len(sys.argv) > 1 and sys.argv[1] == "train_model":
        return {"reproduce": "python manage.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])}
    return {}


def _advance(progress: Any, task: Any) -> Callable[[int, int], None]:
    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    return update
