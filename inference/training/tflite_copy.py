"""The fast serving copy written beside model.keras (model.tflite) and its card block: how it was made, how it
scores on the same evaluation images, how closely it agrees with the Keras model, and the tolerance the loader
checks it against."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from inference import evaluation, tflite
from inference.datasets import ImageSet
from inference.training.common import Predict, predictor, report_metrics

QUANTIZATION_DETAIL = {
    "int8": "the backbone's weights and activations int8 (calibrated on {n} training images), the head after "
    "global pooling (embedding, cosine classifier) float32; float32 in and out",
    "fp16": "weights stored as float16, computed in float32",
    "fp32": "float32 as trained",
}


def calibration_images(fit_set: ImageSet, seed: int, n: int = 300) -> np.ndarray:
    """The training images an int8 copy is calibrated on: ``n`` drawn with ``seed``, in dataset order."""
    picks = np.sort(np.random.default_rng(seed).permutation(len(fit_set))[: min(n, len(fit_set))])
    return fit_set.images[picks]


@dataclass(frozen=True)
class Evaluated:
    """What the Keras model was measured on, for measuring the copy on the same images."""

    temperature: float
    report_set: ImageSet  # the validation set, or the held-out share without one
    report: tuple[np.ndarray, np.ndarray]  # the Keras model's (probabilities, raw embeddings) on report_set
    catalogue: (
        ImageSet | None
    )  # the images precision@5 searches (the training images), None for leave-one-out


def tflite_copy(
    model: keras.Model,
    *,
    quantization: str,
    representative: np.ndarray | None,
    evaluated: Evaluated,
) -> tuple[bytes, dict[str, Any]]:
    """The serving copy's bytes and its card block (see the module docstring)."""
    content = tflite.convert(model, quantization=quantization, representative=representative)
    predict = _runner(content, len(evaluated.report_set.classes))
    report_p, report_e = predict(evaluated.report_set.images)
    catalogue = evaluated.catalogue
    catalogue_e = predict(catalogue.images)[1] if catalogue is not None else None
    metrics = report_metrics(
        report_p,
        report_e,
        evaluated.report_set,
        evaluated.temperature,
        catalogue_e,
        catalogue.labels if catalogue is not None else evaluated.report_set.labels,
    )
    metrics.pop("confusion", None)
    on_report = _agreement(evaluated.report, (report_p, report_e), evaluated.temperature)
    probe = tflite.verification_inputs(evaluated.report_set.input_size)
    on_probe = _agreement(predictor(model)(probe), predict(probe), evaluated.temperature)
    calibrated_on = len(representative) if representative is not None else 0
    return content, {
        "file": tflite.TFLITE_FILE,
        "format": "tflite (TensorFlow Lite flatbuffer, XNNPACK)",
        "quantization": quantization,
        "quantization_detail": QUANTIZATION_DETAIL[quantization].format(n=calibrated_on),
        "size_bytes": len(content),
        "metrics": metrics,
        "agreement_with_keras": on_report,
        "agreement_on_verification_images": on_probe,
        "tolerance": _tolerance(quantization, on_probe),
    }


def _runner(content: bytes, num_classes: int) -> Predict:
    """(probabilities (uncalibrated), raw embeddings) through the serving copy, 64 images per call."""
    runner = tflite.TFLiteRunner(content, num_classes=num_classes, threads=os.cpu_count() or 1)

    def predict(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, embeddings = [], []
        for start in range(0, len(images), 64):
            lg, e = runner(images[start : start + 64].astype(np.float32))
            logits.append(lg)
            embeddings.append(e)
        return evaluation.softmax(np.concatenate(logits).astype(np.float64)), np.concatenate(embeddings)

    return predict


def _agreement(
    reference: tuple[np.ndarray, np.ndarray], copy: tuple[np.ndarray, np.ndarray], temperature: float
) -> dict[str, float]:
    """How closely the copy's calibrated probabilities and normalised embeddings follow the Keras model's."""
    return tflite.agreement(
        evaluation.apply_temperature(reference[0], temperature),
        _normalised(reference[1]),
        evaluation.apply_temperature(copy[0], temperature),
        _normalised(copy[1]),
    )


def _normalised(e: np.ndarray) -> np.ndarray:
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def _tolerance(quantization: str, on_probe: dict[str, float]) -> dict[str, float]:
    """Twice what was measured here, never tighter than the defaults: catches a wrong or damaged file, not rounding
    on another CPU."""
    default_p, default_cos = tflite.DEFAULT_TOLERANCE[quantization]
    return {
        "max_probability_diff": round(max(default_p, 2 * on_probe["max_probability_diff"]), 4),
        "min_embedding_cosine": round(min(default_cos, 1 - 2 * (1 - on_probe["min_embedding_cosine"])), 4),
    }
