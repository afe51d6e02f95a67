"""The new version's folder: card.json (what was trained on what, how, and how well), MODEL_CARD.md, the figures,
model.keras and any other files, written so that a half-written version is never listed."""

from __future__ import annotations

import json
import os
import platform
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from inference import evaluation, model_card
from inference.datasets import ImageSet
from inference.registry import CARD_FILE, MODEL_FILE
from inference.training.common import Fitted
from inference.training.config import TrainingConfig

PREPROCESSING = (
    "inference.preprocessing.decode_image then to_model_input: EXIF orientation applied, any mode to 8-bit RGB "
    "(alpha composited on white), the whole image resized to SxS (bilinear, no crop), float32 pixels in [0, 255]; "
    "the model normalises inside its graph (see 'normalisation')."
)
OUTPUTS_DOC = (
    "outputs[0] 'probabilities': softmax (N, len(card['classes'])) in card['classes'] order, NOT temperature-scaled (the loader "
    "applies softmax(logits / temperature) using the 'logits' layer); outputs[1] 'embedding': (N, 128) raw, "
    "L2-normalise before cosine search (the loader does)."
)


@dataclass(frozen=True)
class TrainingRecord:
    """Everything the card says about one training run, gathered by :func:`inference.training.train`."""

    version: str
    config: TrainingConfig
    train_data: ImageSet
    fit_n: int  # training images fitted on (the rest are the held-out share)
    held_set: ImageSet
    val_data: ImageSet | None
    weights: dict[int, float]  # class index -> weight
    fitted: Fitted
    temperature: float
    metrics: dict[str, Any]
    serving: dict[str, Any] | None
    serving_error: str | None
    training_seconds: float
    training_cpu_seconds: float


def build_card(record: TrainingRecord, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """card.json of the new version; ``extra`` adds top-level entries (e.g. how to reproduce it)."""
    model, classes = record.fitted.model, record.train_data.classes
    return {
        "version": record.version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "architecture": record.config.architecture,
        "classes": list(classes),
        "input_size": record.train_data.input_size,
        "embedding_dim": int(model.outputs[1].shape[-1]),
        "outputs": OUTPUTS_DOC,
        "preprocessing": PREPROCESSING,
        "normalisation": _normalisation(model),
        "temperature": round(float(record.temperature), 4),
        "calibration": {
            "method": "temperature scaling: the T minimising the NLL of the held-out share of the TRAINING images "
            "(never the validation set, which stays an honest test)",
            "n": len(record.held_set),
        },
        "data": _data(record),
        "hyperparameters": _hyperparameters(record),
        "metrics": record.metrics,
        "serving": record.serving,
        **({"serving_error": record.serving_error} if record.serving_error else {}),
        "history": {k: [round(float(v), 5) for v in values] for k, values in record.fitted.history.items()},
        "training_seconds": round(record.training_seconds, 1),
        "training_cpu_seconds": round(record.training_cpu_seconds, 1),
        "environment": {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        **(extra or {}),
    }


def _data(record: TrainingRecord) -> dict[str, Any]:
    held = record.held_set
    return {
        **record.train_data.summary(),
        "fit_n": record.fit_n,
        "holdout": {"n": len(held), "counts": held.counts, "fraction": record.config.holdout_fraction},
        "val": record.val_data.summary() if record.val_data is not None else None,
    }


def _hyperparameters(record: TrainingRecord) -> dict[str, Any]:
    config, classes = record.config, record.train_data.classes
    return {
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "seed": config.seed,
        "holdout_fraction": config.holdout_fraction,
        "class_weights": {classes[i]: round(w, 4) for i, w in record.weights.items()},
        "best_epoch": record.fitted.best_epoch + 1,
        "selection": "lowest held-out loss",
        **record.fitted.hyperparameters,
    }


def _normalisation(model: keras.Model) -> str:
    names = {layer.name for layer in model.layers}
    if "input_normalization" in names:
        return "(x - 127) / 128 inside the model (EfficientNet-Lite's constants)"
    if "rescale" in names:
        return "x / 255 inside the model"
    return "inside the model"


def write_version(
    root: Path,
    *,
    model: keras.Model,
    card: dict[str, Any],
    history: dict[str, list[float]],
    files: dict[str, bytes],
) -> Path:
    """Write into a hidden temporary folder and rename it, so a half-written version is never listed."""
    version = card["version"]
    staging = root / f".{version}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        model.save(staging / MODEL_FILE)
        for name, content in files.items():
            (staging / name).write_bytes(content)
        evaluated_on = card["metrics"].get("evaluated_on", "")
        evaluation.render_confusion_png(
            card["metrics"]["confusion"],
            card["classes"],
            staging / "confusion.png",
            title=f"{version} - {evaluated_on}",
        )
        evaluation.render_curves_png(history, staging / "curves.png", title=f"{version} - training")
        (staging / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        model_card.write(staging, card)
        destination = root / version
        staging.rename(destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return destination
