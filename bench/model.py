"""Serving speed of a model version: single-image latency and batch throughput through the warm serving path (the
TFLite copy on ai-edge-litert), each beside the same network from model.keras through its ``tf.function`` and
through plain ``model.predict``, measured in the same run (STYLE rule 15: a benchmark prints figures and ratios; no
test asserts a wall-clock time). Used by ``manage.py bench_model`` (``make bench-model``), which adds the
runtime's footprint (:mod:`bench.runtime`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image

from inference.loader import Classifier
from inference.preprocessing import to_model_input

Step = Callable[[str], None]  # names the measure about to run, for a progress display


def benchmark_serving(
    *,
    classifier: Classifier,
    images: Sequence[Image.Image],
    keras_classifier: Classifier,
    single_repeats: int = 200,
    reference_repeats: int = 50,
    batch_size: int = 64,
    batch_repeats: int = 10,
    progress: Step | None = None,
) -> dict[str, Any]:
    """Latency of one image and throughput of batches through the warm serving path, beside ``keras_classifier``
    (the same version's model.keras on the ``keras`` backend: its ``tf.function``, and its ``model.predict``),
    measured in the same run.

    * single image, serving: ``predict_images([image])`` from a decoded image (resize included);
    * single image, reference: ``to_model_input`` + ``model.predict`` (what a naive worker would do);
    * batch: the model step alone on pre-decoded arrays, ``predict_arrays`` vs ``model.predict(batch_size=...)``.

    Every measure has wall-clock percentiles and the process CPU time (all threads) per call: on a machine shared
    with other jobs the wall time also counts waiting for a core, the CPU time does not.
    """
    step = progress or (lambda _name: None)
    keras_path = keras_classifier if keras_classifier is not classifier else None
    arrays = np.stack([to_model_input(image, classifier.input_size) for image in images])
    batch = np.concatenate([arrays] * (-(-batch_size // len(arrays))))[:batch_size]
    load_before = os.getloadavg()
    model = keras_classifier.model
    single = _single_image(classifier, keras_path, model, images, single_repeats, reference_repeats, step)
    return {
        "version": classifier.version,
        "input_size": classifier.input_size,
        "backend": classifier.backend,
        "xla": classifier.jit_compiled,
        "single": single,
        "batch": _batches(classifier, keras_path, model, batch, batch_repeats, step),
        "load_average": {
            "before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in os.getloadavg()],
        },
        "cpus": os.cpu_count(),
    }


def _single_image(
    classifier: Classifier,
    keras_path: Classifier | None,
    model: Any,
    images: Sequence[Image.Image],
    repeats: int,
    reference_repeats: int,
    step: Step,
) -> dict[str, Any]:
    def one_image(target: Classifier) -> dict[str, float]:
        return _percentiles(*_timed(lambda i: target.predict_images([images[i % len(images)]]), repeats))

    size = classifier.input_size
    step(f"single image, serving path ({classifier.backend})")
    serving = one_image(classifier)
    keras_single = None
    if keras_path is not None:
        step("single image, model.keras tf.function path")
        keras_single = one_image(keras_path)
    step("single image, model.predict")
    reference = _percentiles(
        *_timed(
            lambda i: model.predict(to_model_input(images[i % len(images)], size)[None], verbose=0),
            reference_repeats,
        )
    )
    return {
        "serving": serving,
        "keras_tf_function": keras_single,
        "model_predict": reference,
        "speedup_p50": reference["p50_ms"] / serving["p50_ms"],
    }


def _batches(
    classifier: Classifier,
    keras_path: Classifier | None,
    model: Any,
    batch: np.ndarray,
    repeats: int,
    step: Step,
) -> dict[str, Any]:
    batch_size = len(batch)
    step(f"batch of {batch_size}, serving path")
    serving = _throughput(lambda _i: classifier.predict_arrays(batch), batch_size, repeats)
    keras_batch = None
    if keras_path is not None:
        step(f"batch of {batch_size}, model.keras tf.function path")
        keras_batch = _throughput(lambda _i: keras_path.predict_arrays(batch), batch_size, repeats)
    step(f"batch of {batch_size}, model.predict")
    reference = _throughput(
        lambda _i: model.predict(batch, batch_size=batch_size, verbose=0), batch_size, repeats
    )
    return {
        "batch_size": batch_size,
        "serving_images_per_s": serving["images_per_s"],
        "serving_cpu_ms_per_image": serving["cpu_ms_per_image"],
        "keras_tf_function_images_per_s": keras_batch["images_per_s"] if keras_batch else None,
        "keras_tf_function_cpu_ms_per_image": keras_batch["cpu_ms_per_image"] if keras_batch else None,
        "model_predict_images_per_s": reference["images_per_s"],
        "model_predict_cpu_ms_per_image": reference["cpu_ms_per_image"],
        "speedup": serving["images_per_s"] / reference["images_per_s"],
    }


def _timed(function: Callable[[int], object], repeats: int) -> tuple[list[float], list[float]]:
    """(wall seconds, process CPU seconds) of ``repeats`` calls, after one untimed call that traces and compiles."""
    function(0)
    samples, cpu = [], []
    for i in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        function(i)
        samples.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    return samples, cpu


def _throughput(function: Callable[[int], object], batch_size: int, repeats: int) -> dict[str, float]:
    wall, cpu = _timed(function, repeats)
    return {
        "images_per_s": batch_size / float(np.median(wall)),
        "cpu_ms_per_image": float(np.median(cpu)) * 1000.0 / batch_size,
    }


def _percentiles(seconds: Sequence[float], cpu_seconds: Sequence[float] | None = None) -> dict[str, float]:
    ms = np.asarray(seconds, np.float64) * 1000.0
    figures = {
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "mean_ms": float(ms.mean()),
        "best_ms": float(ms.min()),
        "n": int(len(ms)),
    }
    if cpu_seconds is not None:
        figures["cpu_p50_ms"] = float(np.percentile(np.asarray(cpu_seconds, np.float64) * 1000.0, 50))
    return figures
