"""What the training steps share: the progress hooks, what a recipe gets and gives back, class weights, the
in-memory predictor and the card's metrics block."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from inference import evaluation
from inference.datasets import ImageSet
from inference.training.config import TrainingConfig

Predict = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # images -> (probabilities, raw embeddings)


@dataclass
class TrainingEvents:
    """Optional progress hooks (a command's progress bar, a background job's progress). A hook may raise to stop
    training (e.g. a cancelled job): the exception leaves :func:`inference.training.train` and nothing is written."""

    on_batch: Callable[[int, int], None] | None = None  # (steps done this epoch, steps per epoch)
    on_epoch: Callable[[int, int, dict[str, float]], None] | None = None  # (epoch, epochs, logs)
    on_stage: Callable[[str], None] | None = None  # "training", "calibrating", "writing"...
    on_member: Callable[[int, int], None] | None = None  # (soup member starting, 1-based; members)

    def stage(self, name: str) -> None:
        if self.on_stage is not None:
            self.on_stage(name)

    def member(self, number: int, members: int) -> None:
        if self.on_member is not None:
            self.on_member(number, members)


@dataclass(frozen=True)
class FitInputs:
    """What every training recipe gets: the hyperparameters, the images and their fit / held-out split, the class
    weights, the progress hooks and, for an int8 serving copy, the images it is calibrated on."""

    config: TrainingConfig
    train_data: ImageSet
    fit_idx: np.ndarray
    held_idx: np.ndarray
    weights: dict[int, float]
    events: TrainingEvents
    calibration: np.ndarray | None


@dataclass
class Fitted:
    """What a training recipe hands back to the common calibrate / evaluate / write steps."""

    model: keras.Model
    history: dict[str, list[float]]
    best_epoch: int  # 0-based
    hyperparameters: dict[str, Any]
    # indices into train_data -> (probabilities (uncalibrated), raw embeddings) of those training images
    predict_train: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """``n / (k * n_c)``: a class with half the images weighs twice as much; the mean weight per image is 1."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.ones(num_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return {i: float(w) for i, w in enumerate(weights)}


def predictor(model: keras.Model) -> Predict:
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
            return np.zeros((0, model.outputs[0].shape[-1]), np.float32), np.zeros(
                (0, model.outputs[1].shape[-1])
            )
        return np.concatenate(probabilities), np.concatenate(embeddings)

    return predict


def report_metrics(
    probabilities: np.ndarray,
    embeddings: np.ndarray,
    dataset: ImageSet,
    temperature: float,
    catalogue_e: np.ndarray | None,
    catalogue_labels: np.ndarray,
) -> dict[str, Any]:
    """The card's metrics of uncalibrated predictions on ``dataset``, after temperature scaling (and before, for
    ECE and NLL); precision@5 searches ``catalogue_e`` when given, else ``dataset`` itself, leave-one-out."""
    calibrated = evaluation.apply_temperature(probabilities, temperature)
    metrics = evaluation.classification_metrics(
        calibrated,
        dataset.labels,
        dataset.classes,
        embeddings=embeddings,
        catalogue_embeddings=catalogue_e,
        catalogue_labels=catalogue_labels if catalogue_e is not None else None,
    )
    metrics["ece_uncalibrated"] = evaluation.expected_calibration_error(probabilities, dataset.labels)
    metrics["nll_uncalibrated"] = evaluation.negative_log_likelihood(probabilities, dataset.labels)
    if catalogue_e is None:
        metrics["precision_at_5_catalogue"] = "leave-one-out within the evaluated images"
    return metrics
