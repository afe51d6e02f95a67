"""Train a model version: a new folder ``<output_dir>/<version>/`` with model.keras, card.json, confusion.png and
curves.png.

* Reproducible: one seed drives Keras, TensorFlow, NumPy, the shuffling and the augmentation.
* A stratified share of the training images (``holdout_fraction``) is held out; it picks the best epoch (lowest
  held-out loss) and fits the temperature. The separate validation set, when given, is never used to make a
  choice, so the card's metrics on it are honest.
* Class weights (inverse frequency) make up for the smaller painting class.
* Augmentation is part of the training graph only (random flips, small shifts and zooms); the saved model has
  none of it. Colour is left alone on purpose: colour vs monochrome is a real cue between types.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from django.conf import settings
from keras import layers

from inference import architectures, evaluation
from inference.datasets import ImageSet, stratified_split
from inference.registry import CARD_FILE, MODEL_FILE, new_version_name

PREPROCESSING = (
    "inference.preprocessing.decode_image then to_model_input: EXIF orientation applied, any mode to 8-bit RGB "
    "(alpha composited on white), the whole image resized to SxS (bilinear, no crop), float32 pixels in [0, 255]; "
    "the model rescales to [0, 1] inside its graph."
)
OUTPUTS_DOC = (
    "outputs[0] 'probabilities': softmax (N, 5) in card['classes'] order, NOT temperature-scaled (the loader "
    "applies softmax(logits / temperature) using the 'logits' layer); outputs[1] 'embedding': (N, 128) raw, "
    "L2-normalise before cosine search (the loader does)."
)


@dataclass
class TrainingEvents:
    """Optional progress hooks for a command's progress bar."""

    on_batch: Callable[[int, int], None] | None = None  # (steps done this epoch, steps per epoch)
    on_epoch: Callable[[int, int, dict[str, float]], None] | None = None  # (epoch, epochs, logs)
    on_stage: Callable[[str], None] | None = None  # "training", "calibrating", "writing"...


@dataclass
class TrainedVersion:
    version: str
    path: Path
    card: dict[str, Any]


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """``n / (k * n_c)``: a class with half the images weighs twice as much; the mean weight per image is 1."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.ones(num_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return {i: float(w) for i, w in enumerate(weights)}


def _augmentation(seed: int) -> keras.Sequential:
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomTranslation(0.08, 0.08, fill_mode="reflect", seed=seed + 1),
            layers.RandomZoom((-0.12, 0.08), fill_mode="reflect", seed=seed + 2),
        ],
        name="augmentation",
    )


def _predictor(model: keras.Model) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(probabilities, raw embeddings) of the in-memory model, 64 images per step, traced once (no
    ``model.predict`` overhead)."""
    size = model.inputs[0].shape[1]
    step = tf.function(
        lambda x: model(x, training=False), input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32)]
    )

    def predict(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probabilities, embeddings = [], []
        for start in range(0, len(images), 64):
            p, e = step(tf.constant(images[start : start + 64], tf.float32))
            probabilities.append(p.numpy())
            embeddings.append(e.numpy())
        if not probabilities:
            return np.zeros((0, model.outputs[0].shape[-1]), np.float32), np.zeros((0, model.outputs[1].shape[-1]))
        return np.concatenate(probabilities), np.concatenate(embeddings)

    return predict


def train(
    *,
    train_data: ImageSet,
    val_data: ImageSet | None = None,
    architecture: str = "seed-cnn",
    epochs: int = 20,
    seed: int = 1337,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    holdout_fraction: float = 0.1,
    augment: bool = True,
    output_dir: Path | str | None = None,
    version: str | None = None,
    events: TrainingEvents | None = None,
) -> TrainedVersion:
    """Train, calibrate, evaluate and write a new model version; returns its name, folder and card.

    ``train_data`` (and ``val_data``) must have been read at the architecture's input size. Without ``val_data``
    the card's metrics are measured on the held-out share of ``train_data``.
    """
    events = events or TrainingEvents()
    stage = events.on_stage or (lambda _name: None)
    classes = train_data.classes
    input_size = train_data.input_size
    if val_data is not None and (val_data.classes != classes or val_data.input_size != input_size):
        raise ValueError("The validation set must have the training set's classes and input size.")
    if len(train_data) < 2 * len(classes):
        raise ValueError(f"Too few training images ({len(train_data)}); need at least two per type.")
    output_root = Path(output_dir) if output_dir else Path(settings.ARTSITE_MODEL_DIRS[-1])
    output_root.mkdir(parents=True, exist_ok=True)
    prefix = architecture
    version = version or new_version_name(prefix)
    if (output_root / version).exists():
        raise FileExistsError(f"{output_root / version} already exists.")

    started = time.perf_counter()
    keras.utils.set_random_seed(seed)

    fit_idx, held_idx = stratified_split(train_data.labels, holdout_fraction, seed=seed)
    fit_set, held_set = train_data.subset(fit_idx), train_data.subset(held_idx)

    model = architectures.build(architecture, input_size=input_size, num_classes=len(classes))
    logits_model = keras.Model(model.inputs, model.get_layer(architectures.LOGITS_LAYER).output)
    inputs = keras.Input(shape=(input_size, input_size, 3), dtype="float32")
    x = _augmentation(seed)(inputs) if augment else inputs
    trainer = keras.Model(inputs, logits_model(x), name="trainer")

    steps_per_epoch = max(1, -(-len(fit_set) // batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(
        learning_rate, decay_steps=steps_per_epoch * epochs, alpha=0.02
    )
    trainer.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        # XLA cannot compile the augmentation layers, and for these small convolutions on CPU it was no faster.
        jit_compile=False,
    )

    def as_dataset(images: np.ndarray, labels: np.ndarray, *, shuffle: bool) -> tf.data.Dataset:
        ds = tf.data.Dataset.from_tensor_slices((images, labels))
        if shuffle:
            ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
        return (
            ds.batch(batch_size)
            .map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE)
        )

    best = _BestWeights(model)
    callbacks: list[keras.callbacks.Callback] = [best, _Events(events, epochs)]
    weights = class_weights(fit_set.labels, len(classes))
    stage("training")
    history = trainer.fit(
        as_dataset(fit_set.images, fit_set.labels, shuffle=True),
        validation_data=as_dataset(held_set.images, held_set.labels, shuffle=False) if len(held_set) else None,
        epochs=epochs,
        class_weight=weights,
        callbacks=callbacks,
        shuffle=False,  # the dataset shuffles itself, with the seed
        verbose=0,
    ).history
    best.restore()
    training_seconds = time.perf_counter() - started

    stage("calibrating")
    predict = _predictor(model)
    held_p, _ = predict(held_set.images)
    temperature = evaluation.fit_temperature(held_p, held_set.labels) if len(held_set) else 1.0

    stage("evaluating")
    report_set, evaluated_on = (val_data, "val") if val_data is not None else (held_set, "holdout")
    report_p, report_e = predict(report_set.images)
    _, catalogue_e = predict(train_data.images)
    calibrated = evaluation.apply_temperature(report_p, temperature)
    metrics = evaluation.classification_metrics(
        calibrated, report_set.labels, classes, embeddings=report_e,
        catalogue_embeddings=catalogue_e if val_data is not None else None,
        catalogue_labels=train_data.labels if val_data is not None else None,
    )
    metrics["evaluated_on"] = evaluated_on
    metrics["ece_uncalibrated"] = evaluation.expected_calibration_error(report_p, report_set.labels)
    metrics["nll_uncalibrated"] = evaluation.negative_log_likelihood(report_p, report_set.labels)
    if val_data is None:
        metrics["precision_at_5_catalogue"] = "leave-one-out within the held-out images"

    stage("writing")
    card: dict[str, Any] = {
        "version": version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "architecture": architecture,
        "classes": list(classes),
        "input_size": input_size,
        "embedding_dim": int(model.outputs[1].shape[-1]),
        "outputs": OUTPUTS_DOC,
        "preprocessing": PREPROCESSING,
        "temperature": round(float(temperature), 4),
        "calibration": {
            "method": "temperature scaling, NLL on the held-out training share",
            "n": len(held_set),
        },
        "data": {
            **train_data.summary(),
            "fit_n": len(fit_set),
            "holdout": {"n": len(held_set), "counts": held_set.counts, "fraction": holdout_fraction},
            "val": val_data.summary() if val_data is not None else None,
        },
        "hyperparameters": {
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "schedule": "cosine decay to 2% over all steps",
            "optimizer": "adam",
            "seed": seed,
            "holdout_fraction": holdout_fraction,
            "augmentation": "horizontal flip, translate 8%, zoom -12%..+8% (reflect)" if augment else "none",
            "class_weights": {classes[i]: round(w, 4) for i, w in weights.items()},
            "best_epoch": best.best_epoch + 1,
            "selection": "lowest held-out loss",
        },
        "metrics": metrics,
        "history": {k: [round(float(v), 5) for v in values] for k, values in history.items()},
        "training_seconds": round(training_seconds, 1),
        "environment": {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
    }
    destination = _write_version(output_root, version, model, card, history, metrics["confusion"], classes)
    return TrainedVersion(version=version, path=destination, card=card)


def _write_version(root: Path, version: str, model: Any, card: dict[str, Any], history: dict[str, list[float]],
                   confusion: list[list[int]], classes: tuple[str, ...]) -> Path:
    """Write into a hidden temporary folder and rename it, so a half-written version is never listed."""

    staging = root / f".{version}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        model.save(staging / MODEL_FILE)
        evaluated_on = card["metrics"].get("evaluated_on", "")
        evaluation.render_confusion_png(
            confusion, classes, staging / "confusion.png", title=f"{version} - {evaluated_on}"
        )
        evaluation.render_curves_png(history, staging / "curves.png", title=f"{version} - training")
        (staging / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        destination = root / version
        staging.rename(destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return destination


class _BestWeights(keras.callbacks.Callback):
    """Keep the weights of the epoch with the lowest held-out loss (or the last epoch without a held-out set)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.target = model
        self.best_loss = float("inf")
        self.best_epoch = 0
        self.best_weights: list[np.ndarray] | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        loss = (logs or {}).get("val_loss")
        if loss is None or loss <= self.best_loss:
            self.best_loss = loss if loss is not None else self.best_loss
            self.best_epoch = epoch
            self.best_weights = self.target.get_weights()

    def restore(self) -> None:
        if self.best_weights is not None:
            self.target.set_weights(self.best_weights)


class _Events(keras.callbacks.Callback):
    def __init__(self, events: TrainingEvents, epochs: int) -> None:
        super().__init__()
        self.events = events
        self.epochs = epochs

    def on_train_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
        if self.events.on_batch is not None:
            self.events.on_batch(batch + 1, self.params.get("steps") or 0)

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        if self.events.on_epoch is not None:
            self.events.on_epoch(epoch + 1, self.epochs, {k: float(v) for k, v in (logs or {}).items()})
