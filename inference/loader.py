"""The one model loader (STYLE rule 4): each model version is loaded once per process, lazily, under a lock, and
warmed with one prediction before anyone gets it.

Two backends, one contract (``predict_arrays`` -> temperature-calibrated probabilities and L2-normalised
embeddings; batches padded up to a few fixed sizes so that either backend sees a handful of shapes only):

* ``tflite`` (the default: what the web processes and the classification worker serve): ``model.tflite`` alone,
  run by ai-edge-litert (:mod:`inference.tflite`); temperature, softmax and normalisation in NumPy. This path
  never imports TensorFlow or Keras, and never opens ``model.keras``. A version without ``model.tflite`` cannot
  serve: :class:`ModelUnavailable` says so (``/healthz`` shows the reason) rather than TensorFlow being imported
  behind the operator's back. Whether the copy agrees with ``model.keras`` is not re-measured here at every start:
  training records the check on the card, activation refuses a version without a passing one
  (:func:`inference.services.model_version_check_servable`), and ``manage.py check_model`` measures it again.
* ``keras`` (training, evaluation, the serving check, benchmarks; asked for explicitly): ``model.keras`` wrapped
  once in a ``tf.function`` (not ``model.predict``, which builds a dataset and a step function on every call)
  that applies the card's temperature to the logits and L2-normalises the embedding. TensorFlow and Keras are
  imported here on first use, so they need only be installed where this backend runs
  (``requirements-training.txt``). XLA (``jit_compile=True``) is off by default: on this CPU it measured slower
  for the seed CNN and 5-20x slower for EfficientNet-Lite0 (XLA:CPU has no oneDNN depthwise kernels);
  ``ARTSITE_TF_JIT = True`` tries it.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from PIL import Image

from inference.preprocessing import to_model_input
from inference.registry import MODEL_FILE, ModelNotFound, ModelUnavailable, find_version, read_card
from inference.tflite import TFLITE_FILE, TFLiteRunner

BACKENDS = ("tflite", "keras")

__all__ = [
    "Classifier",
    "ModelNotFound",
    "ModelUnavailable",
    "clear_cache",
    "get_classifier",
    "load_classifier",
]

logger = logging.getLogger(__name__)

# Batches are padded up to one of these sizes (larger ones are cut into chunks of the largest), so the compiled
# function or interpreter sees at most this many shapes.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)

_lock = threading.Lock()
_cache: dict[str, Classifier] = {}
_threads_configured = False


def configure_threads(threads: int | None = None) -> None:
    """Limit TensorFlow's thread pools before its runtime starts (it cannot change afterwards): for processes that
    train or run the ``keras`` backend; serving never calls it.

    ``threads`` (default ``settings.ARTSITE_TF_THREADS``, else the CPU count) threads inside an op and at most two
    ops at once: on a small machine running several worker processes, more threads than cores only adds contention.
    """
    global _threads_configured
    if _threads_configured:
        return
    import tensorflow as tf  # noqa: PLC0415  # TensorFlow only where training or the keras backend runs

    threads = _threads(threads)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
    except RuntimeError:
        # The runtime already started (e.g. a test built a model first); the existing pools are kept.
        logger.debug("TensorFlow already initialised; thread settings unchanged")
    _threads_configured = True


def _threads(threads: int | None = None) -> int:
    return int(threads or getattr(settings, "ARTSITE_TF_THREADS", 0) or os.cpu_count() or 1)


def _bucket(n: int) -> int:
    for size in BATCH_BUCKETS:
        if n <= size:
            return size
    return BATCH_BUCKETS[-1]


@dataclass
class Classifier:
    """A loaded, warmed model version. Thread-safe: ``predict_*`` may be called from several threads."""

    version: str
    classes: tuple[str, ...]
    input_size: int
    card: dict[str, Any]
    path: Path
    temperature: float
    backend: str  # what serves: "tflite-<quantization>" or "keras" (tf.function)
    # batch (n, S, S, 3) float32 -> (calibrated probabilities, L2-normalised embeddings) as NumPy arrays
    _step: Any = field(repr=False, default=None)
    embedding_dim: int = 0  # set by the warm-up prediction
    model: Any = field(
        repr=False, default=None
    )  # the keras backend's keras.Model (outputs: probabilities, embedding)
    jit_compiled: bool = False

    def predict_arrays(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``batch``: (N, S, S, 3) pixels in [0, 255] (float32, or uint8).

        Returns (probabilities (N, classes) float32, temperature-calibrated, rows sum to 1;
        embeddings (N, 128) float32, L2-normalised).
        """
        batch = np.asarray(batch)
        if batch.ndim == 3:
            batch = batch[None]
        expected = (self.input_size, self.input_size, 3)
        if batch.ndim != 4 or batch.shape[1:] != expected:
            raise ValueError(
                f"Expected a batch of shape (N, {', '.join(map(str, expected))}); got {batch.shape}."
            )
        batch = batch.astype(np.float32, copy=False)
        n = batch.shape[0]
        if n == 0:
            return (
                np.zeros((0, len(self.classes)), np.float32),
                np.zeros((0, self.embedding_dim), np.float32),
            )
        probabilities, embeddings = [], []
        chunk = BATCH_BUCKETS[-1]
        for start in range(0, n, chunk):
            part = batch[start : start + chunk]
            size = _bucket(len(part))
            if size != len(part):
                part = np.concatenate([part, np.zeros((size - len(part), *expected), np.float32)])
            p, e = self._step(part)
            probabilities.append(p[: min(chunk, n - start)])
            embeddings.append(e[: min(chunk, n - start)])
        return np.concatenate(probabilities), np.concatenate(embeddings)

    def predict_images(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        """Decoded PIL images (see :func:`inference.preprocessing.decode_image`) to (probabilities, embeddings)."""
        if not images:
            return self.predict_arrays(np.zeros((0, self.input_size, self.input_size, 3), np.float32))
        return self.predict_arrays(np.stack([to_model_input(image, self.input_size) for image in images]))


def _card_fields(version: str, card: dict[str, Any]) -> tuple[tuple[str, ...], int, float]:
    """The card's classes, input size and temperature; :class:`ModelUnavailable` when one is missing or wrong."""
    try:
        classes = tuple(str(c) for c in card["classes"])
        input_size = int(card["input_size"])
        temperature = float(card.get("temperature", 1.0) or 1.0)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelUnavailable(version, f"the card is incomplete ({exc!r})") from None
    if not math.isfinite(temperature) or temperature <= 0:
        raise ModelUnavailable(version, f"the card's temperature {temperature!r} is not a positive number")
    return classes, input_size, temperature


# --- the tflite backend (serving: ai-edge-litert and NumPy) -------------------------------------------------------


def _tflite_step(runner: TFLiteRunner, temperature: float) -> Any:
    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, embeddings = runner(batch)
        scores = logits.astype(np.float64) / temperature
        scores -= scores.max(axis=1, keepdims=True)
        exp = np.exp(scores)
        probabilities = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
        norms = np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
        return probabilities, (embeddings / norms).astype(np.float32)

    return run


def _load_tflite(classifier: Classifier) -> None:
    """Give ``classifier`` the TFLite copy as its step, checked against the card's shapes."""
    version, path = classifier.version, classifier.path / TFLITE_FILE
    if not path.is_file():
        raise ModelUnavailable(
            version,
            f"{path} is missing: the serving runtime runs only the TFLite copy, and this version has none "
            "(train it again to get one)",
        )
    try:
        runner = TFLiteRunner.from_file(path, num_classes=len(classifier.classes), threads=_threads())
        declared = runner.input_shape()
    except Exception as exc:  # LiteRT raises ValueError or RuntimeError for a damaged flatbuffer
        raise ModelUnavailable(version, f"{path} could not be loaded ({type(exc).__name__}: {exc})") from None
    size = classifier.input_size
    if declared != (size, size, 3):
        raise ModelUnavailable(version, f"{TFLITE_FILE} takes {declared} but the card says {size} px")
    quantization = str((classifier.card.get("serving") or {}).get("quantization") or "fp32")
    classifier._step = _tflite_step(runner, classifier.temperature)
    classifier.backend = f"tflite-{quantization}"


# --- the keras backend (training, evaluation, checks: TensorFlow imported on first use) ---------------------------


def _build_step(model: Any, temperature: float, input_size: int, *, jit_compile: bool) -> Any:
    import keras  # noqa: PLC0415  # TensorFlow on first use only: importing the loader stays cheap
    import tensorflow as tf  # noqa: PLC0415  # TensorFlow on first use only: importing the loader stays cheap

    try:
        logits_output = model.get_layer("logits").output
        serving = keras.Model(model.inputs, [logits_output, model.outputs[1]])
        from_logits = True
    except ValueError:
        # A model without a `logits` layer: temperature through log-probabilities (same result up to rounding).
        serving = model
        from_logits = False
    inverse_t = tf.constant(1.0 / temperature, tf.float32)

    @tf.function(
        jit_compile=jit_compile,
        input_signature=[tf.TensorSpec((None, input_size, input_size, 3), tf.float32)],
    )
    def step(pixels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        scores, embedding = serving(pixels, training=False)
        if not from_logits:
            scores = tf.math.log(tf.maximum(scores, 1e-30))
        probabilities = tf.nn.softmax(tf.cast(scores, tf.float32) * inverse_t, axis=-1)
        return probabilities, tf.math.l2_normalize(tf.cast(embedding, tf.float32), axis=-1)

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probabilities, embeddings = step(batch)
        return probabilities.numpy(), embeddings.numpy()

    return run


def _load_keras(classifier: Classifier) -> None:
    """Give ``classifier`` model.keras as its step, checked against the card's shapes."""
    version, model_path = classifier.version, classifier.path / MODEL_FILE
    if not model_path.is_file():
        raise ModelUnavailable(version, f"{model_path} is missing")
    configure_threads()
    import keras  # noqa: PLC0415  # TensorFlow only where the keras backend runs (training, evaluation, checks)

    from inference import architectures  # noqa: F401, PLC0415  registers the custom layers saved models use; keras backend only

    try:
        model = keras.saving.load_model(model_path, compile=False)
    except Exception as exc:  # Keras raises many types for a damaged zip, bad config or missing weights
        raise ModelUnavailable(
            version, f"{model_path} could not be loaded ({type(exc).__name__}: {exc})"
        ) from None
    if len(model.outputs) != 2:
        raise ModelUnavailable(version, f"the model has {len(model.outputs)} outputs; expected 2")
    if int(model.outputs[0].shape[-1]) != len(classifier.classes):
        raise ModelUnavailable(
            version,
            f"the model predicts {model.outputs[0].shape[-1]} classes but the card lists {len(classifier.classes)}",
        )
    size = classifier.input_size
    if tuple(model.inputs[0].shape[1:]) != (size, size, 3):
        raise ModelUnavailable(
            version, f"the model takes {tuple(model.inputs[0].shape[1:])} but the card says {size} px"
        )
    classifier.model = model
    classifier.backend = "keras"
    _warm_keras(classifier)


def _warm_keras(classifier: Classifier) -> None:
    """Build the prediction step and run it once (with XLA when asked and possible, else without)."""
    version, model, input_size, temperature = (
        classifier.version,
        classifier.model,
        classifier.input_size,
        classifier.temperature,
    )
    warm = np.zeros((1, input_size, input_size, 3), np.float32)
    for jit_compile in (bool(getattr(settings, "ARTSITE_TF_JIT", False)), False):
        classifier._step = _build_step(model, temperature, input_size, jit_compile=jit_compile)
        classifier.jit_compiled = jit_compile
        try:
            classifier.predict_arrays(warm)
            break
        except Exception as exc:  # XLA is not available for every op on every platform
            if not jit_compile:
                raise ModelUnavailable(version, f"the warm-up prediction failed ({exc})") from None
            logger.warning("XLA compilation failed for %s, serving without it: %s", version, exc)


def _load(version: str, backend: str, path: Path | None = None) -> Classifier:
    if path is None:
        path = find_version(version)  # ModelNotFound (a ModelUnavailable) when there is no folder
    try:
        card = read_card(path)
    except ValueError as exc:
        raise ModelUnavailable(version, str(exc)) from None
    classes, input_size, temperature = _card_fields(version, card)
    classifier = Classifier(
        version=version,
        classes=classes,
        input_size=input_size,
        card=card,
        path=path,
        temperature=temperature,
        backend=backend,
    )
    started = time.perf_counter()
    if backend == "keras":
        _load_keras(classifier)
    else:
        _load_tflite(classifier)
    try:
        _, embeddings = classifier.predict_arrays(np.zeros((1, input_size, input_size, 3), np.float32))
    except Exception as exc:  # e.g. a TFLite copy without the card's class scores
        raise ModelUnavailable(version, f"the warm-up prediction failed ({exc})") from None
    classifier.embedding_dim = int(embeddings.shape[-1])
    logger.info(
        "Loaded model %s from %s in %.1fs (serving: %s%s)",
        version,
        path,
        time.perf_counter() - started,
        classifier.backend,
        ", XLA" if classifier.jit_compiled else "",
    )
    return classifier


def get_classifier(version: str, *, backend: str = "tflite") -> Classifier:
    """The classifier of ``version``, loaded and warmed on first use, then cached for the process.

    ``backend``: ``tflite`` (model.tflite through ai-edge-litert: what the product serves; no TensorFlow) or
    ``keras`` (model.keras through TensorFlow: training, evaluation, checks).

    Raises :class:`ModelUnavailable` (with ``.reason``) when it cannot serve: no folder (:class:`ModelNotFound`, a
    subclass), a missing or damaged model file (model.tflite, or model.keras for ``keras``) or card.json, or a card
    that does not match the model. Failures are not cached, so a repaired folder is picked up on the next call.
    """
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
    key = version if backend == "tflite" else f"{version}#{backend}"
    classifier = _cache.get(key)
    if classifier is not None:
        return classifier
    with _lock:
        classifier = _cache.get(key)
        if classifier is None:
            classifier = _load(version, backend)
            _cache[key] = classifier
        return classifier


def load_classifier(path: Path | str, *, backend: str = "tflite") -> Classifier:
    """The version in folder ``path``, loaded and warmed like :func:`get_classifier` does, but not cached and not
    looked up in the model dirs: a training job measures a new version this way before its folder is published.
    Raises :class:`ModelUnavailable`."""
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
    path = Path(path)
    if not path.is_dir():
        raise ModelNotFound(path.name, f"{path} is not a folder")
    return _load(path.name, backend, path)


def loaded_versions() -> list[str]:
    return [key for key in _cache if "#" not in key]


def clear_cache() -> None:
    """Forget every loaded model (tests; or after a version's files were replaced)."""
    with _lock:
        _cache.clear()
