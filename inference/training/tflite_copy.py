"""The serving copy written beside model.keras (model.tflite) and its card block: how it was made (the conversion,
which needs TensorFlow, lives here and not in :mod:`inference.tflite`, which serving imports), how it scores on the
same evaluation images, how closely it agrees with the Keras model, and the check activation requires
(``serving.check``: the agreement on the verification images, measured through the serving runtime)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from inference import (
    architectures,  # noqa: F401  registers the custom layers saved models use
    evaluation,
    tflite,
)
from inference.datasets import ImageSet
from inference.registry import MODEL_FILE, read_card, rewrite_card
from inference.training.common import Predict, predictor, report_metrics

# TFLite operators kept in float32 in an int8 copy: those of the head after global pooling (the embedding layer
# and the cosine classifier). The backbone's convolutions, depthwise convolutions and pooling are quantised.
FLOAT_HEAD_OPS = (
    "FULLY_CONNECTED",
    "BATCH_MATMUL",
    "MUL",
    "DIV",
    "SUM",
    "SQRT",
    "RSQRT",
    "MAXIMUM",
    "SQUARE",
)

QUANTIZATION_DETAIL = {
    "int8": "the backbone's weights and activations int8 (calibrated on {n} training images), the head after "
    "global pooling (embedding, cosine classifier) float32; float32 in and out",
    "fp16": "weights stored as float16, computed in float32",
    "fp32": "float32 as trained",
}


def serving_keras_model(model: keras.Model) -> keras.Model:
    """The (logits, raw embedding) view of a saved model: what both serving paths compute."""
    return keras.Model(model.inputs, [model.get_layer("logits").output, model.outputs[1]])


def convert(
    model: keras.Model, *, quantization: str = "fp32", representative: np.ndarray | None = None
) -> bytes:
    """A TFLite flatbuffer of ``model``'s (logits, embedding), float32 in and out.

    ``int8``: weights and activations of the convolutional backbone in 8 bits, calibrated on ``representative`` (a
    few hundred real model inputs, (N, S, S, 3) pixels in [0, 255]), the head in float32 (:data:`FLOAT_HEAD_OPS`);
    ``fp16``: weights stored in half precision (half the file, same speed); ``fp32``: as trained.
    """
    if quantization not in tflite.QUANTIZATIONS:
        raise ValueError(
            f"Unknown quantization {quantization!r}; choose one of {', '.join(tflite.QUANTIZATIONS)}."
        )
    if quantization == "int8":
        return quantize_int8(serving_keras_model(model), representative)
    converter = tf.lite.TFLiteConverter.from_keras_model(serving_keras_model(model))
    if quantization == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    return bytes(converter.convert())


def quantize_int8(keras_model: keras.Model, representative: np.ndarray | None) -> bytes:
    """An int8 TFLite flatbuffer of any Keras model on images, float32 in and out, calibrated on
    ``representative``. The same images give the same activation ranges, so a network's trunk converted alone and
    inside the whole network is quantised identically; training uses that (see
    :func:`inference.training.train`'s ``quantized_trunk``)."""
    if representative is None or not len(representative):
        raise ValueError("int8 quantization needs representative images to calibrate on.")
    samples = np.asarray(representative, np.float32)
    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([samples[i : i + 1]] for i in range(len(samples)))
    # The convolutions run in int8; the small head after global pooling (the 128-d embedding and the cosine
    # classifier's norms and division) stays float32. Fully quantised, an embedding whose norm rounds to zero
    # made the interpreter's DIV fail on real images, and the head is a negligible share of the time.
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter,
        debug_dataset=lambda: ([samples[i : i + 1]] for i in range(min(4, len(samples)))),
        debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(FLOAT_HEAD_OPS)),
    )
    return bytes(debugger.get_nondebug_quantized_model())


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
    content = convert(model, quantization=quantization, representative=representative)
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
        **_serving_block(content, quantization, on_probe, calibrated_on=calibrated_on),
        "metrics": metrics,
        "agreement_with_keras": on_report,
    }


def serving_copy_add(
    folder: Path, *, quantization: str = "fp32", representative: np.ndarray | None = None
) -> dict[str, Any]:
    """Write the TFLite copy of the version in ``folder`` (from its model.keras) and put its ``serving`` block,
    check included, on the card; returns the block. For versions made outside :func:`inference.training.train`:
    benchmark stand-ins and the tests' tiny versions (a version without a checked copy cannot serve)."""
    card = read_card(folder)
    model = keras.saving.load_model(folder / MODEL_FILE, compile=False)
    content = convert(model, quantization=quantization, representative=representative)
    probe = tflite.verification_inputs(int(card["input_size"]))
    copy = _runner(content, len(card["classes"]))(probe)
    on_probe = _agreement(predictor(model)(probe), copy, float(card.get("temperature") or 1.0))
    calibrated_on = len(representative) if representative is not None else 0
    serving = _serving_block(content, quantization, on_probe, calibrated_on=calibrated_on)
    (folder / tflite.TFLITE_FILE).write_bytes(content)
    rewrite_card(folder, {**card, "serving": serving})
    return serving


def _serving_block(
    content: bytes, quantization: str, on_probe: dict[str, float], *, calibrated_on: int
) -> dict[str, Any]:
    """What the card says of a copy whatever made it: the file, its quantisation, its agreement with model.keras
    on the verification images, the limits, and the check activation requires (measured through the serving
    runtime, as the copy will serve)."""
    limits = _tolerance(quantization, on_probe)
    return {
        "file": tflite.TFLITE_FILE,
        "format": "tflite (TensorFlow Lite flatbuffer, run by ai-edge-litert with XNNPACK)",
        "quantization": quantization,
        "quantization_detail": QUANTIZATION_DETAIL[quantization].format(n=calibrated_on),
        "size_bytes": len(content),
        "agreement_on_verification_images": on_probe,
        "tolerance": limits,
        "check": tflite.check(on_probe, limits, sha256=hashlib.sha256(content).hexdigest(), by="training"),
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
