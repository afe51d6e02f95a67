"""The fast serving path: a TensorFlow Lite copy of a version's Keras model, run by the TFLite interpreter with
XNNPACK (both part of TensorFlow, nothing else to install).

On this project's CPUs the interpreter runs EfficientNet-Lite0 several times faster than TensorFlow's own kernels
(which are tuned for large batches), and int8 quantisation (the AVX-512 VNNI integer kernels) halves it again. The
Keras model stays the source of truth: training writes ``model.tflite`` next to ``model.keras`` from the same
weights, records on the card how well the two agree, and the loader checks them against each other before it
serves the fast copy (see :func:`inference.loader.get_classifier`).

The TFLite model returns the raw ``logits`` and ``embedding``; temperature, softmax and L2 normalisation stay in
NumPy, so a new temperature on the card never needs a new file.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

TFLITE_FILE = "model.tflite"
QUANTIZATIONS = ("fp32", "fp16", "int8")
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

# How far the fast copy may drift from the Keras model on the verification images before the loader refuses it:
# (largest difference of a calibrated probability, smallest cosine between the two embeddings). fp32 is the same
# arithmetic in another order; int8 moves probabilities by a few hundredths on real images.
DEFAULT_TOLERANCE: dict[str, tuple[float, float]] = {
    "fp32": (1e-3, 0.9999),
    "fp16": (1e-2, 0.999),
    "int8": (0.15, 0.95),
}


def serving_keras_model(model: Any) -> Any:
    """The (logits, raw embedding) view of a saved model: what both serving paths compute."""
    import keras  # noqa: PLC0415  # TensorFlow on first use only: the serving path imports this module

    return keras.Model(model.inputs, [model.get_layer("logits").output, model.outputs[1]])


def convert(model: Any, *, quantization: str = "fp32", representative: np.ndarray | None = None) -> bytes:
    """A TFLite flatbuffer of ``model``'s (logits, embedding), float32 in and out.

    ``int8``: weights and activations of the convolutional backbone in 8 bits, calibrated on ``representative`` (a
    few hundred real model inputs, (N, S, S, 3) pixels in [0, 255]), the head in float32 (:data:`FLOAT_HEAD_OPS`);
    ``fp16``: weights stored in half precision (half the file, same speed); ``fp32``: as trained.
    """
    import tensorflow as tf  # noqa: PLC0415  # TensorFlow on first use only: the serving path imports this module

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"Unknown quantization {quantization!r}; choose one of {', '.join(QUANTIZATIONS)}.")
    if quantization == "int8":
        return quantize_int8(serving_keras_model(model), representative)
    converter = tf.lite.TFLiteConverter.from_keras_model(serving_keras_model(model))
    if quantization == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    return bytes(converter.convert())


def quantize_int8(keras_model: Any, representative: np.ndarray | None) -> bytes:
    """An int8 TFLite flatbuffer of any Keras model on images, float32 in and out, calibrated on
    ``representative``. The same images give the same activation ranges, so a network's trunk converted alone and
    inside the whole network is quantised identically; training uses that (see
    :func:`inference.training.train`'s ``quantized_trunk``)."""
    import tensorflow as tf  # noqa: PLC0415  # TensorFlow on first use only: the serving path imports this module

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


def _interpreter_class() -> Any:
    """``tf.lite.Interpreter`` (part of the pinned TensorFlow; it warns that it is deprecated in favour of the
    standalone ``ai-edge-litert`` runtime, which measured the same speed here). If a later TensorFlow drops it,
    ``ai-edge-litert`` is the drop-in replacement: install it and it is used."""
    import tensorflow as tf  # noqa: PLC0415  # TensorFlow on first use only: the serving path imports this module

    interpreter = getattr(getattr(tf, "lite", None), "Interpreter", None)
    if interpreter is not None:
        return interpreter
    from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415  # only where TensorFlow has no interpreter

    return Interpreter


class _Interpreters:
    """TFLite interpreters of one flatbuffer: one per thread and batch size (an interpreter is not thread-safe,
    and resizing its input re-plans it), created on first use."""

    def __init__(self, content: bytes, *, threads: int) -> None:
        self.content = content
        self.threads = max(1, int(threads))
        self._local = threading.local()

    def get(self, batch_size: int) -> tuple[Any, int, list[dict[str, Any]]]:
        """(interpreter, input index, output details) for batches of ``batch_size``."""
        cache: dict[int, tuple[Any, int, list[dict[str, Any]]]] | None = getattr(
            self._local, "interpreters", None
        )
        if cache is None:
            cache = self._local.interpreters = {}
        entry = cache.get(batch_size)
        if entry is None:
            interpreter = _interpreter_class()(model_content=self.content, num_threads=self.threads)
            (input_detail,) = interpreter.get_input_details()
            shape = list(input_detail["shape"])
            if shape[0] != batch_size:
                interpreter.resize_tensor_input(input_detail["index"], [batch_size, *shape[1:]], strict=False)
            interpreter.allocate_tensors()
            entry = (interpreter, int(input_detail["index"]), interpreter.get_output_details())
            cache[batch_size] = entry
        return entry

    def run(self, batch: np.ndarray) -> tuple[Any, list[dict[str, Any]]]:
        interpreter, input_index, outputs = self.get(int(batch.shape[0]))
        interpreter.set_tensor(input_index, np.ascontiguousarray(batch, np.float32))
        interpreter.invoke()
        return interpreter, outputs


class TFLiteRunner:
    """Runs a version's TFLite model on float32 batches: (logits, raw embeddings)."""

    def __init__(self, content: bytes, *, num_classes: int, threads: int) -> None:
        self.content = content
        self.num_classes = num_classes
        self._interpreters = _Interpreters(content, threads=threads)
        self._output_indices: tuple[int, int] | None = (
            None  # (logits, embedding): the same for every batch size
        )

    @classmethod
    def from_file(cls, path: Path | str, *, num_classes: int, threads: int) -> TFLiteRunner:
        return cls(Path(path).read_bytes(), num_classes=num_classes, threads=threads)

    def _indices(self, outputs: list[dict[str, Any]]) -> tuple[int, int]:
        if len(outputs) != 2:
            raise ValueError(f"The TFLite model has {len(outputs)} outputs; expected 2 (logits, embedding).")
        # Output order in a converted model is not guaranteed: the logits are the output with one value per class.
        by_width = {int(o["shape"][-1]): int(o["index"]) for o in outputs}
        logits_index = by_width.get(self.num_classes)
        if logits_index is None or len(by_width) != 2:
            raise ValueError(f"The TFLite model's outputs do not include {self.num_classes} class scores.")
        embedding_index = next(i for i in by_width.values() if i != logits_index)
        return logits_index, embedding_index

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits, raw embeddings) of a float32 (N, S, S, 3) batch."""
        interpreter, outputs = self._interpreters.run(batch)
        if self._output_indices is None:
            self._output_indices = self._indices(outputs)
        logits_index, embedding_index = self._output_indices
        return interpreter.get_tensor(logits_index).copy(), interpreter.get_tensor(embedding_index).copy()


class FeatureRunner:
    """Runs a single-output TFLite model (e.g. a network's int8 trunk) on float32 batches."""

    def __init__(self, content: bytes, *, threads: int) -> None:
        self._interpreters = _Interpreters(content, threads=threads)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        interpreter, outputs = self._interpreters.run(batch)
        if len(outputs) != 1:
            raise ValueError(f"The TFLite model has {len(outputs)} outputs; expected 1.")
        return np.asarray(interpreter.get_tensor(outputs[0]["index"])).copy()


def verification_inputs(size: int) -> np.ndarray:
    """Four deterministic synthetic pictures (no data ships with the code) on which the loader compares the fast
    copy with the Keras model: a colour gradient, fine dark hatching on paper tone, soft shapes on a dark ground,
    and noise."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    gradient = np.stack([255 * x, 255 * y, 255 * (1 - x) * (1 - y)], axis=-1)
    hatching = np.full((size, size, 3), (236.0, 228.0, 210.0), np.float32)
    lines = ((np.arange(size)[:, None] + np.arange(size)[None, :]) % 6 < 2) & (x < 0.8)
    hatching[lines] = (40.0, 35.0, 30.0)
    shapes = np.full((size, size, 3), 30.0, np.float32)
    disc = (x - 0.45) ** 2 + (y - 0.5) ** 2 < 0.08
    shapes[disc] = (190.0, 140.0, 60.0)
    shapes[(x > 0.7) & (y > 0.2) & (y < 0.9)] = (70.0, 90.0, 160.0)
    noise = np.random.default_rng(12345).uniform(0, 255, (size, size, 3)).astype(np.float32)
    return np.stack([gradient, hatching, shapes, noise]).round()


def agreement(p_ref: np.ndarray, e_ref: np.ndarray, p_new: np.ndarray, e_new: np.ndarray) -> dict[str, float]:
    """How closely two (probabilities, L2-normalised embeddings) pairs agree: top-1 agreement, largest
    probability difference, smallest embedding cosine."""
    return {
        "top1_agreement": float((p_ref.argmax(axis=1) == p_new.argmax(axis=1)).mean()) if len(p_ref) else 1.0,
        "max_probability_diff": float(np.abs(p_ref - p_new).max()) if len(p_ref) else 0.0,
        "min_embedding_cosine": float((e_ref * e_new).sum(axis=1).min()) if len(e_ref) else 1.0,
    }
