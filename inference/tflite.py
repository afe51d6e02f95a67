"""The serving runtime: a version's TFLite copy (``model.tflite``) run by LiteRT (``ai-edge-litert``, the standalone
successor of ``tf.lite.Interpreter``, with XNNPACK) on NumPy arrays. Web processes and the classification worker
import this module and never TensorFlow: the whole serving stack is ai-edge-litert, NumPy and Pillow.

On this project's CPUs the interpreter runs EfficientNet-Lite several times faster than TensorFlow's own kernels
(which are tuned for large batches), and int8 quantisation (the AVX-512 VNNI integer kernels) halves it again. The
Keras model stays the source of truth: training writes ``model.tflite`` next to ``model.keras`` from the same
weights (:mod:`inference.training.tflite_copy`, which needs TensorFlow) and records on the card how closely the two
agree (:func:`check`); activation refuses a version without a passing check (:func:`check_problem`, through
:func:`inference.services.model_version_check_servable`), and ``manage.py check_model`` measures it again
(:func:`inference.services.model_version_check`).

The TFLite model returns the raw ``logits`` and ``embedding``; temperature, softmax and L2 normalisation stay in
NumPy, so a new temperature on the card never needs a new file.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter

TFLITE_FILE = "model.tflite"
QUANTIZATIONS = ("fp32", "fp16", "int8")

# How far the fast copy may drift from the Keras model on the verification images before its check fails:
# (largest difference of a calibrated probability, smallest cosine between the two embeddings). fp32 is the same
# arithmetic in another order; int8 moves probabilities by a few hundredths on real images.
DEFAULT_TOLERANCE: dict[str, tuple[float, float]] = {
    "fp32": (1e-3, 0.9999),
    "fp16": (1e-2, 0.999),
    "int8": (0.15, 0.95),
}


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
            interpreter = Interpreter(model_content=self.content, num_threads=self.threads)
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

    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input image the flatbuffer declares, e.g. (224, 224, 3); raises on a damaged file."""
        (detail,) = Interpreter(model_content=self.content).get_input_details()
        return tuple(int(d) for d in detail["shape"][1:])

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
    """Four deterministic synthetic pictures (no data ships with the code) on which the serving check compares the
    fast copy with the Keras model: a colour gradient, fine dark hatching on paper tone, soft shapes on a dark ground,
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


def tolerance(card: dict[str, Any]) -> dict[str, float]:
    """The limits a version's copy is checked against: the card's ``serving.tolerance`` (written by training), else
    the defaults for its quantisation."""
    serving = _block(card, "serving")
    quantization = str(serving.get("quantization") or "fp32")
    default_p, default_cos = DEFAULT_TOLERANCE.get(quantization, DEFAULT_TOLERANCE["int8"])
    limits = _block(serving, "tolerance")
    return {
        "max_probability_diff": float(limits.get("max_probability_diff", default_p)),
        "min_embedding_cosine": float(limits.get("min_embedding_cosine", default_cos)),
    }


def file_sha256(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check(figures: dict[str, float], limits: dict[str, float], *, sha256: str, by: str) -> dict[str, Any]:
    """The card's ``serving.check`` block: the copy's agreement with the Keras model on :func:`verification_inputs`
    (``figures``, from :func:`agreement`), the limits, whether it passed, which file (its sha256: a replaced file
    has no check) and which runtime measured it, when and by whom (``training`` or ``check_model``)."""
    passed = (
        figures["max_probability_diff"] <= limits["max_probability_diff"]
        and figures["min_embedding_cosine"] >= limits["min_embedding_cosine"]
    )
    return {
        "passed": bool(passed),
        **{key: round(float(value), 6) for key, value in figures.items()},
        "max_probability_diff_limit": limits["max_probability_diff"],
        "min_embedding_cosine_limit": limits["min_embedding_cosine"],
        "inputs": "inference.tflite.verification_inputs (4 synthetic pictures)",
        "file_sha256": sha256,
        "runtime": f"ai-edge-litert {metadata.version('ai-edge-litert')}",
        "by": by,
        "checked": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def check_problem(folder: Path | str, card: dict[str, Any]) -> str | None:
    """Why the version in ``folder`` may not serve, or None: it needs a ``model.tflite`` whose check (on the card,
    the very same file) passed."""
    path = Path(folder) / TFLITE_FILE
    if not path.is_file():
        return f"it has no {TFLITE_FILE}: the serving runtime runs only the TFLite copy (train it again)"
    recorded = _block(_block(card, "serving"), "check")
    if not recorded:
        return (
            f"its card records no check of {TFLITE_FILE} against model.keras "
            "(run `manage.py check_model VERSION --record`)"
        )
    if recorded.get("file_sha256") != file_sha256(path):
        return f"{TFLITE_FILE} changed since its check (run `manage.py check_model VERSION --record`)"
    if not recorded.get("passed"):
        return (
            f"{TFLITE_FILE} failed its check against model.keras (largest probability difference "
            f"{recorded.get('max_probability_diff')}, limit {recorded.get('max_probability_diff_limit')}; smallest "
            f"embedding cosine {recorded.get('min_embedding_cosine')}, limit "
            f"{recorded.get('min_embedding_cosine_limit')})"
        )
    return None


def _block(card: dict[str, Any], key: str) -> dict[str, Any]:
    """``card[key]`` when it is a JSON object, else an empty one."""
    value = card.get(key)
    return value if isinstance(value, dict) else {}
