"""``train``: split, fit (one of two recipes), calibrate, evaluate, make the serving copy, write the version."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
from django.conf import settings

from inference import evaluation
from inference.datasets import ImageSet, stratified_split
from inference.registry import new_version_name
from inference.tflite import TFLITE_FILE
from inference.training.common import FitInputs, TrainingEvents, class_weights, predictor, report_metrics
from inference.training.config import TrainingConfig
from inference.training.keras_fit import fit_keras
from inference.training.tail import fit_tail
from inference.training.tflite_copy import Evaluated, calibration_images, tflite_copy
from inference.training.writer import TrainingRecord, build_card, write_version

logger = logging.getLogger(__name__)


@dataclass
class TrainedVersion:
    """A written model version: its name, folder and card (as in its card.json)."""

    version: str
    path: Path
    card: dict[str, Any]


def train(
    *,
    train_data: ImageSet,
    val_data: ImageSet | None = None,
    config: TrainingConfig,
    output_dir: Path | str | None = None,
    version: str | None = None,
    events: TrainingEvents | None = None,
    extra_card: dict[str, Any] | None = None,
) -> TrainedVersion:
    """Train, calibrate, evaluate and write a new model version; returns its name, folder and card.

    ``train_data`` (and ``val_data``) must have been read at ``config.input_size``. Without ``val_data`` the
    card's metrics are measured on the held-out share of ``train_data``. The version goes to
    ``<output_dir>/<version>/`` (default: the last of ``ARTSITE_MODEL_DIRS``, ``<architecture>-YYYYMMDD-HHMM``);
    ``extra_card`` adds top-level entries to its card.
    """
    events = events or TrainingEvents()
    _check_data(train_data, val_data, config)
    output_root = Path(output_dir) if output_dir else Path(settings.ARTSITE_MODEL_DIRS[-1])
    output_root.mkdir(parents=True, exist_ok=True)
    version = version or new_version_name(config.architecture)
    if (output_root / version).exists():
        raise FileExistsError(f"{output_root / version} already exists.")

    started, cpu_started = time.perf_counter(), time.process_time()
    run = _fit_inputs(train_data, config, events)
    fitted = fit_tail(run) if config.tail_trained else fit_keras(run)
    training_seconds = time.perf_counter() - started
    training_cpu_seconds = time.process_time() - cpu_started

    held_set = train_data.subset(run.held_idx)
    events.stage("calibrating")
    held_p, _ = fitted.predict_train(run.held_idx)
    temperature = evaluation.fit_temperature(held_p, held_set.labels) if len(held_set) else 1.0
    events.stage("evaluating")
    evaluated, metrics = _evaluate(fitted.model, temperature, train_data, val_data, held_set)
    files, serving, serving_error = _serving_copy(fitted.model, config, run.calibration, evaluated, events)

    events.stage("writing")
    record = TrainingRecord(
        version=version,
        config=config,
        train_data=train_data,
        fit_n=len(run.fit_idx),
        held_set=held_set,
        val_data=val_data,
        weights=run.weights,
        fitted=fitted,
        temperature=temperature,
        metrics=metrics,
        serving=serving,
        serving_error=serving_error,
        training_seconds=training_seconds,
        training_cpu_seconds=training_cpu_seconds,
    )
    card = build_card(record, extra_card)
    destination = write_version(
        output_root, model=fitted.model, card=card, history=fitted.history, files=files
    )
    return TrainedVersion(version=version, path=destination, card=card)


def _check_data(train_data: ImageSet, val_data: ImageSet | None, config: TrainingConfig) -> None:
    if train_data.input_size != config.input_size:
        raise ValueError(
            f"The training images were read at {train_data.input_size} px; the config says {config.input_size}."
        )
    if val_data is not None and (
        val_data.classes != train_data.classes or val_data.input_size != config.input_size
    ):
        raise ValueError("The validation set must have the training set's classes and input size.")
    if len(train_data) < 2 * len(train_data.classes):
        raise ValueError(f"Too few training images ({len(train_data)}); need at least two per type.")


def _fit_inputs(train_data: ImageSet, config: TrainingConfig, events: TrainingEvents) -> FitInputs:
    """Seed everything, hold out a stratified share of the training images, weigh the classes and, for an int8
    serving copy, draw the images it is calibrated on (and, with quantized_trunk, the tail's trunk is)."""
    keras.utils.set_random_seed(config.seed)
    fit_idx, held_idx = stratified_split(train_data.labels, config.holdout_fraction, seed=config.seed)
    fit_set = train_data.subset(fit_idx)
    return FitInputs(
        config=config,
        train_data=train_data,
        fit_idx=fit_idx,
        held_idx=held_idx,
        weights=class_weights(fit_set.labels, len(train_data.classes)),
        events=events,
        calibration=calibration_images(fit_set, config.seed) if config.tflite == "int8" else None,
    )


def _evaluate(
    model: keras.Model,
    temperature: float,
    train_data: ImageSet,
    val_data: ImageSet | None,
    held_set: ImageSet,
) -> tuple[Evaluated, dict[str, Any]]:
    """The trained model's predictions and the card's metrics on the report set: the validation set (never used to
    choose anything), else the held-out share. With a validation set, precision@5 searches the training images, as
    the catalogue would hold them."""
    predict = predictor(model)
    report_set = val_data if val_data is not None else held_set
    report = predict(report_set.images)
    catalogue = train_data if val_data is not None else None
    # The catalogue through the whole model, as the queries (a recipe's predict_train may run another trunk: the
    # int8 one).
    catalogue_e = predict(catalogue.images)[1] if catalogue is not None else None
    metrics = report_metrics(*report, report_set, temperature, catalogue_e, train_data.labels)
    metrics["evaluated_on"] = "val" if val_data is not None else "holdout"
    return Evaluated(
        temperature=temperature, report_set=report_set, report=report, catalogue=catalogue
    ), metrics


def _serving_copy(
    model: keras.Model,
    config: TrainingConfig,
    calibration: np.ndarray | None,
    evaluated: Evaluated,
    events: TrainingEvents,
) -> tuple[dict[str, bytes], dict[str, Any] | None, str | None]:
    """(files to write beside model.keras, the card's ``serving`` block, why there is no copy if making it failed)."""
    if not config.tflite:
        return {}, None, None
    events.stage(f"converting to TFLite ({config.tflite})")
    try:
        content, serving = tflite_copy(
            model, quantization=config.tflite, representative=calibration, evaluated=evaluated
        )
    except Exception as exc:  # noqa: BLE001  (the trained model is still good: keep it, serve it with Keras)
        logger.exception("The TFLite copy (%s) failed; the version is written without it.", config.tflite)
        error = f"{config.tflite} TFLite copy failed: {type(exc).__name__}: {exc}"[:500]
        events.stage(f"TFLite copy failed, kept model.keras only: {error}")
        return {}, None, error
    return {TFLITE_FILE: content}, serving, None
