"""Train a new model version from a folder of labelled images (one sub-folder per type)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, cast

from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.architectures import ARCHITECTURES, DEFAULT_INPUT_SIZES, require_pretrained_weights


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
            default="seed-cnn",
            help="Network to train (default: seed-cnn). efficientnet-lite0, -lite1 (240 px) and -lite2 (260 px) "
            "fine-tune ImageNet EfficientNet-Lite backbones with the same recipe; every option marked "
            "efficientnet-lite0 below applies to all three. Lite0's and Lite1's weights ship; Lite2's must be "
            "ported first (inference/weights/backbones/README.md).",
        )
        parser.add_argument(
            "--epochs",
            type=int,
            default=None,
            help="Training epochs (default: 20 for seed-cnn, 15 for efficientnet-lite0).",
        )
        parser.add_argument(
            "--seed", type=int, default=1337, help="Random seed; same seed, same model (default: 1337)."
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=None,
            help="Images per training step (default: 32 for seed-cnn, 64 for efficientnet-lite0).",
        )
        parser.add_argument(
            "--learning-rate",
            type=float,
            default=None,
            help="Peak learning rate, cosine-decayed (default: 0.001).",
        )
        parser.add_argument(
            "--fine-tune-from",
            default="block6a",
            help="efficientnet-lite0: first block trained; earlier blocks keep their ImageNet "
            "weights (default: block6a).",
        )
        parser.add_argument(
            "--augment-views",
            type=int,
            default=4,
            help="efficientnet-lite0: random crop/colour views cached per image, besides the plain "
            "and mirrored ones (default: 4).",
        )
        parser.add_argument(
            "--label-smoothing",
            type=float,
            default=0.1,
            help="efficientnet-lite0: label smoothing of the cross-entropy (default: 0.1).",
        )
        parser.add_argument(
            "--weight-decay",
            type=float,
            default=1e-4,
            help="efficientnet-lite0: AdamW weight decay (default: 0.0001).",
        )
        parser.add_argument(
            "--mixup",
            type=float,
            default=0.3,
            help="efficientnet-lite0: mixup of the cached activations, Beta(a, a) weights; 0 turns "
            "it off (default: 0.3).",
        )
        parser.add_argument(
            "--ema-decay",
            type=float,
            default=0.99,
            help="efficientnet-lite0: keep an exponential moving average of the weights with this "
            "decay per step; 0 keeps the last weights (default: 0.99).",
        )
        parser.add_argument(
            "--soup",
            type=int,
            default=1,
            help="efficientnet-lite0: train this many members from the same start (different data "
            "order, views, mixup) and average their weights: a 'model soup', no extra serving "
            "cost, N times the training steps (default: 1).",
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
            default=0.2,
            help="efficientnet-lite0: learning rate of the pretrained blocks relative to the new "
            "layers (default: 0.2).",
        )
        parser.add_argument(
            "--tflite",
            choices=("default", "none", "fp32", "fp16", "int8"),
            default="default",
            help="Fast serving copy written beside model.keras: its quantization, or none "
            "(default: int8 for efficientnet-lite0, none for seed-cnn).",
        )
        parser.add_argument(
            "--holdout",
            type=float,
            default=0.1,
            help="Share of DATA_DIR held out to pick the best epoch and fit the temperature (default: 0.1).",
        )
        parser.add_argument(
            "--input-size",
            type=int,
            default=None,
            help="Square input size in pixels (default: the architecture's, 150 for seed-cnn).",
        )
        parser.add_argument(
            "--no-augment", action="store_true", help="Train without flips, shifts and zooms."
        )
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
            help="Train on the catalogue's ready artworks with their effective types instead of "
            "DATA_DIR; hold out part of the curator-labelled works as a gold set and activate "
            "the new version only if it scores at least as well there as the active one.",
        )
        parser.add_argument(
            "--gold-fraction",
            type=float,
            default=0.2,
            help="--from-catalogue: share of the curator-labelled works held out as the gold set "
            "(default: 0.2).",
        )
        parser.add_argument(
            "--no-activate",
            action="store_true",
            help="--from-catalogue: write and compare, but never activate.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            require_pretrained_weights(options["architecture"])  # before minutes of reading images
        except FileNotFoundError as exc:
            raise CommandError(str(exc)) from exc
        if options["from_catalogue"]:
            if options["data_dir"] is not None:
                raise CommandError("Give either DATA_DIR or --from-catalogue, not both.")
            self._from_catalogue(options)
            return
        if options["data_dir"] is None:
            raise CommandError("Give DATA_DIR, a folder with one sub-folder of images per type.")
        for key in ("data_dir", "val_dir"):
            if options[key] is not None and not options[key].is_dir():
                raise CommandError(f"{options[key]} is not a folder.")
        if options["epochs"] is not None and options["epochs"] < 1:
            raise CommandError("--epochs must be at least 1.")

        from inference.loader import configure_threads

        configure_threads(options["threads"])  # before TensorFlow starts its runtime

        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from inference.datasets import read_folder
        from inference.evaluation import per_type_table
        from inference.training import RECIPE_DEFAULTS, TrainingEvents, train

        architecture = options["architecture"]
        input_size = options["input_size"] or DEFAULT_INPUT_SIZES.get(architecture, 150)
        console = Console(file=cast(IO[str], self.stdout))
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
        )
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

            epochs = options["epochs"] or RECIPE_DEFAULTS[architecture]["epochs"]
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
                    train_data=datasets["train"],
                    val_data=datasets.get("val"),
                    architecture=architecture,
                    output_dir=options["output_dir"],
                    version=options["name"],
                    events=events,
                    extra_card=_reproduce(),
                    **_train_options(options),
                )
            except (ValueError, FileExistsError) as exc:
                raise CommandError(str(exc)) from exc

        card, metrics = result.card, result.card["metrics"]
        console.print(
            per_type_table(
                f"{result.version} on {metrics['evaluated_on']} (n={metrics['n']})", metrics["per_type"]
            )
        )
        p_at_5 = metrics["precision_at_5"]
        console.print(
            f"accuracy {metrics['accuracy']:.3f}  macro-F1 {metrics['macro_f1']:.3f}  "
            f"ECE {metrics['ece']:.3f} (uncalibrated {metrics['ece_uncalibrated']:.3f}, T={card['temperature']:.2f})  "
            f"precision@5 {p_at_5:.3f}  best epoch {card['hyperparameters']['best_epoch']}/{epochs}  "
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
        self.stdout.write(self.style.SUCCESS(f"Wrote {result.path}"))

    def _from_catalogue(self, options: dict[str, Any]) -> None:
        from inference.loader import configure_threads

        configure_threads(options["threads"])
        from catalogue.services.training import model_train_from_catalogue

        self.stdout.write("Training on the catalogue (this reads every ready artwork's image)...")
        try:
            result = model_train_from_catalogue(
                architecture=options["architecture"],
                input_size=options["input_size"],
                gold_fraction=options["gold_fraction"],
                activate=not options["no_activate"],
                output_dir=options["output_dir"],
                version=options["name"],
                **_train_options(options),
            )
        except (ValueError, FileExistsError) as exc:
            raise CommandError(str(exc)) from exc
        comparison = result.comparison
        new, active = comparison["new"], comparison["active"]
        self.stdout.write(f"Wrote {result.path} (trained on {result.card['data']['n']} artworks).")
        if new is not None:
            self.stdout.write(
                f"Gold set ({comparison['gold_n']} curator-labelled works): new accuracy "
                f"{new['accuracy']:.3f}, macro-F1 {new['macro_f1']:.3f}"
                + (
                    f"; active {active['version']} accuracy {active['accuracy']:.3f}, macro-F1 "
                    f"{active['macro_f1']:.3f}"
                    if active
                    else ""
                )
            )
        self.stdout.write(comparison["reason"])
        if result.activated:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Activated {result.version}: the catalogue is re-embedded in the background "
                    f"(python manage.py activate_model --list shows progress)."
                )
            )
        else:
            self.stdout.write(self.style.WARNING(f"{result.version} was not activated."))


def _reproduce() -> dict[str, str]:
    """The command line, for the card, when this runs as ``manage.py train_model`` (not from call_command)."""
    import shlex
    import sys

    if len(sys.argv) > 1 and sys.argv[1] == "train_model":
        return {"reproduce": "python manage.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])}
    return {}


def _train_options(options: dict[str, Any]) -> dict[str, Any]:
    tflite = options["tflite"]
    return {
        "epochs": options["epochs"],
        "seed": options["seed"],
        "batch_size": options["batch_size"],
        "learning_rate": options["learning_rate"],
        "holdout_fraction": options["holdout"],
        "augment": not options["no_augment"],
        "fine_tune_from": options["fine_tune_from"],
        "augment_views": options["augment_views"],
        "label_smoothing": options["label_smoothing"],
        "weight_decay": options["weight_decay"],
        "mixup": options["mixup"],
        "ema_decay": options["ema_decay"],
        "body_lr_factor": options["body_lr_factor"],
        "soup": options["soup"],
        "quantized_trunk": not options["float_trunk"],
        "tflite": None if tflite == "none" else tflite,
    }


def _advance(progress: Any, task: Any) -> Callable[[int, int], None]:
    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    return update
