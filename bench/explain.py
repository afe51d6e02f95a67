"""How long an explanation map takes, and whether it points at what matters (``manage.py bench_explain``,
``make bench-explain``). STYLE rule 15: it prints figures, beside the model alone on a batch of the same size
measured in the same run; no test asserts a time.

Each map is timed as the portal's route makes one it has not stored yet (:mod:`catalogue.services.explanations`):
decode the stored file, one occlusion batch through the serving model, the overlay and its PNG. A page shows two
maps per work (the model's type and the label's or its second choice), each its own request: "per image" is both.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from catalogue.services.explanations import OVERLAY_SIDE
from inference.explain import DEFAULT_GRID, DEFAULT_PATCH, OcclusionMap, occlusion_map, overlay_png
from inference.loader import BATCH_BUCKETS, Classifier
from inference.preprocessing import decode_image, to_model_input

Step = Callable[[str], None]
RANDOM_REGIONS = 8


def benchmark_explanations(
    *,
    classifier: Classifier,
    files: Sequence[bytes],
    grid: int = DEFAULT_GRID,
    patch: float = DEFAULT_PATCH,
    fill: str = "mean",
    reference_repeats: int = 5,
    progress: Step | None = None,
) -> dict[str, Any]:
    """Time the two maps of each image file (encoded bytes, as stored) and check each first map's faithfulness."""
    step = progress or (lambda _name: None)
    load_before = os.getloadavg()
    maps: list[dict[str, float]] = []
    per_image: list[float] = []
    faithfulness: list[tuple[float, float, float]] = []
    calls = images_sent = 0
    rng = np.random.default_rng(0)
    for i, data in enumerate(files, start=1):
        step(f"image {i}/{len(files)}")
        image = decode_image(data, draft=OVERLAY_SIDE).image
        probabilities = classifier.predict_images([image])[0][0]
        top_two = [classifier.classes[j] for j in np.argsort(-probabilities)[:2]]
        seconds = 0.0
        for position, type_name in enumerate(top_two):
            timing, result = _one_map(classifier, data, type_name, grid=grid, patch=patch, fill=fill)
            maps.append(timing)
            seconds += timing["total"]
            calls += result.model_calls
            images_sent += result.model_images
            if position == 0:
                faithfulness.append(_salient_against_random(classifier, image, result, type_name, rng, fill))
        per_image.append(seconds)
    step("the model alone")
    batch_size = images_sent // max(1, len(maps))
    reference = _model_alone(classifier, files[0], batch_size, reference_repeats)
    return {
        "version": classifier.version,
        "backend": classifier.backend,
        "input_size": classifier.input_size,
        "method": {"grid": grid, "patch": patch, "fill": fill},
        "images": len(files),
        "maps": len(maps),
        "per_map_ms": _percentiles([m["total"] for m in maps]),
        "per_image_ms": _percentiles(per_image),
        "stages_p50_ms": {
            stage: round(1000 * float(np.median([m[stage] for m in maps])), 1)
            for stage in ("decode", "model", "render")
        },
        "model_calls_per_map": calls / max(1, len(maps)),
        "images_per_map": batch_size,
        "interpreter_batches_per_map": _batches(batch_size),
        "model_alone_ms": round(1000 * reference, 1),
        "faithfulness": _faithfulness_summary(faithfulness),
        "load_average": {
            "before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in os.getloadavg()],
        },
        "cpus": os.cpu_count(),
    }


def _one_map(
    classifier: Classifier, data: bytes, type_name: str, *, grid: int, patch: float, fill: str
) -> tuple[dict[str, float], OcclusionMap]:
    started = time.perf_counter()
    image = decode_image(data, draft=OVERLAY_SIDE).image
    decoded = time.perf_counter()
    result = occlusion_map(classifier, image, types=[type_name], grid=grid, patch=patch, fill=fill)
    modelled = time.perf_counter()
    overlay_png(image, result.heat[type_name], max_side=OVERLAY_SIDE)
    rendered = time.perf_counter()
    timing = {
        "decode": decoded - started,
        "model": modelled - decoded,
        "render": rendered - modelled,
        "total": rendered - started,
    }
    return timing, result


def _salient_against_random(
    classifier: Classifier,
    image: Any,
    result: OcclusionMap,
    type_name: str,
    rng: np.random.Generator,
    fill: str,
) -> tuple[float, float, float]:
    """(probability drop when the square centred on the map's hottest area is hidden, mean and largest drop over
    random squares of the same size): the faithfulness test of the issue, on real images and the real model."""
    size = classifier.input_size
    side = int(result.boxes[0, 2] - result.boxes[0, 0])
    heat = result.heat[type_name]
    rows, cols = np.nonzero(heat >= heat.max() - 0.05 * abs(heat.max()))
    centre = (float(rows.mean()), float(cols.mean()))
    salient = tuple(int(np.clip(round(c - side / 2), 0, size - side)) for c in centre)
    randoms = [tuple(int(v) for v in rng.integers(0, size - side + 1, 2)) for _ in range(RANDOM_REGIONS)]
    pixels = to_model_input(image, size)
    colour = pixels.reshape(-1, 3).mean(axis=0) if fill == "mean" else np.full(3, 127.0, np.float32)
    batch = np.repeat(pixels[None], 2 + len(randoms), axis=0)
    for copy, (top, left) in zip(batch[1:], [salient, *randoms], strict=True):
        copy[top : top + side, left : left + side] = colour
    p = classifier.predict_arrays(batch)[0][:, list(classifier.classes).index(type_name)]
    drops = p[0] - p[1:]
    return float(drops[0]), float(drops[1:].mean()), float(drops[1:].max())


def _faithfulness_summary(rows: list[tuple[float, float, float]]) -> dict[str, float]:
    salient, mean_random, max_random = (np.array(column) for column in zip(*rows, strict=True))
    return {
        "salient_drop_mean": round(float(salient.mean()), 4),
        "random_drop_mean": round(float(mean_random.mean()), 4),
        "share_salient_above_random_mean": round(float((salient > mean_random).mean()), 3),
        "share_salient_above_every_random": round(float((salient >= max_random).mean()), 3),
        "random_regions": RANDOM_REGIONS,
    }


def _model_alone(classifier: Classifier, data: bytes, batch_size: int, repeats: int) -> float:
    """Median seconds of one predict_arrays call on ``batch_size`` ready model inputs (no decode, no masking)."""
    pixels = to_model_input(decode_image(data, draft=OVERLAY_SIDE).image, classifier.input_size)
    batch = np.repeat(pixels[None], batch_size, axis=0)
    times = []
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        classifier.predict_arrays(batch)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def _batches(images: int) -> int:
    """Interpreter runs for one predict_arrays call of ``images`` (the loader cuts batches at its largest bucket)."""
    return math.ceil(images / BATCH_BUCKETS[-1])


def _percentiles(seconds: Sequence[float]) -> dict[str, float]:
    values = 1000 * np.asarray(seconds)
    return {
        "p50": round(float(np.percentile(values, 50)), 1),
        "p95": round(float(np.percentile(values, 95)), 1),
        "n": len(values),
    }
