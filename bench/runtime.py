"""The serving runtime's footprint, before and after it left TensorFlow (``make bench-model`` prints it):

* **start-up to first classification**: a fresh Python process per run (Django set up, the model loaded, one
  image classified), wall time from spawning it to its first answer, median of a few runs;
* **resident memory** of that process once warm, after N more classifications (``VmRSS``, and its peak ``VmHWM``);
* **installed size** of the serving and the training requirements, summed from the files each installed
  distribution lists (``importlib.metadata``) over the requirement closure of each file: no network needed.

*Before* is the path the loader took until the serving runtime was split off, reproduced here: TensorFlow and Keras
imported, ``model.keras`` loaded and run on the verification images, ``model.tflite`` run by ``tf.lite.Interpreter``
on the same images and compared with it, then the image classified through the interpreter. *After* is
:func:`inference.loader.get_classifier` as the web processes and the worker call it: ai-edge-litert and NumPy.

Run a probe alone with ``python -m bench.runtime before|after VERSION N`` (Django settings from the environment).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from packaging.requirements import Requirement
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PATHS = ("before", "after")
TRAINING_ONLY = ("tensorflow", "keras", "sklearn", "cleanlab")


# --- the probes (run in the fresh process) ------------------------------------------------------------------------


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (320, 300, 3), dtype=np.uint8)) for _ in range(8)]


def _classify_after(version: str) -> Any:
    from inference.loader import get_classifier

    classifier = get_classifier(version)
    return lambda image: classifier.predict_images([image])


def _classify_before(version: str) -> Any:
    """The pre-split loader's work, step by step (see the module docstring)."""
    import keras
    import tensorflow as tf

    from inference import architectures  # noqa: F401  registers the custom layers the saved model uses
    from inference.preprocessing import to_model_input
    from inference.registry import find_version, read_card
    from inference.tflite import TFLITE_FILE, agreement, verification_inputs

    folder = find_version(version)
    card = read_card(folder)
    size, temperature = int(card["input_size"]), float(card.get("temperature") or 1.0)
    model = keras.saving.load_model(folder / "model.keras", compile=False)
    serving = keras.Model(model.inputs, [model.get_layer("logits").output, model.outputs[1]])
    step = tf.function(lambda x: serving(x, training=False))

    def run_interpreter(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        interpreter = tf.lite.Interpreter(model_path=str(folder / TFLITE_FILE), num_threads=os.cpu_count())
        (entry,) = interpreter.get_input_details()
        interpreter.resize_tensor_input(entry["index"], list(batch.shape), strict=False)
        interpreter.allocate_tensors()
        interpreter.set_tensor(entry["index"], batch.astype(np.float32))
        interpreter.invoke()
        outputs = [interpreter.get_tensor(o["index"]) for o in interpreter.get_output_details()]
        logits = next(o for o in outputs if o.shape[-1] == len(card["classes"]))
        return logits, next(o for o in outputs if o is not logits)

    def calibrated(logits: np.ndarray, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores = np.exp(logits / temperature - (logits / temperature).max(axis=1, keepdims=True))
        return scores / scores.sum(axis=1, keepdims=True), embeddings / np.linalg.norm(
            embeddings, axis=1, keepdims=True
        )

    probe = verification_inputs(size)
    agreement(*calibrated(*(np.asarray(t) for t in step(probe))), *calibrated(*run_interpreter(probe)))
    return lambda image: calibrated(*run_interpreter(to_model_input(image, size)[None]))


def probe(path: str, version: str, classifications: int) -> None:
    """Classify one image, say so, classify ``classifications`` more, then print the process's memory."""
    import django

    django.setup()
    images = _images()
    classify = _classify_before(version) if path == "before" else _classify_after(version)
    classify(images[0])
    print("FIRST", flush=True)
    for i in range(classifications):
        classify(images[i % len(images)])
    status = Path("/proc/self/status").read_text()
    memory = {key: int(re.search(rf"{key}:\s+(\d+) kB", status)[1]) / 1024 for key in ("VmRSS", "VmHWM")}  # type: ignore[index]
    training_only = sorted({m.split(".")[0] for m in sys.modules} & set(TRAINING_ONLY))
    print("RESULT " + json.dumps({**memory, "training_only": training_only}), flush=True)


# --- the measures (run by the benchmark) --------------------------------------------------------------------------


def startup_and_memory(version: str, *, path: str, repeats: int, classifications: int) -> dict[str, Any]:
    """Median start-up to first classification and warm memory of ``repeats`` fresh processes on ``path``."""
    env = {
        **os.environ,
        "ARTSITE_MODEL_DIRS": ",".join(str(d) for d in settings.ARTSITE_MODEL_DIRS),
        "ARTSITE_DEFAULT_MODEL": version,
        "PYTHONUNBUFFERED": "1",
    }
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.runtime", path, version, str(classifications)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert process.stdout is not None
        first = None
        result: dict[str, Any] = {}
        for line in process.stdout:
            if line.startswith("FIRST") and first is None:
                first = time.perf_counter() - started
            elif line.startswith("RESULT "):
                result = json.loads(line.removeprefix("RESULT "))
        if process.wait() != 0 or first is None or not result:
            raise RuntimeError(
                f"the {path} probe failed (python -m bench.runtime {path} {version} 1 says why)"
            )
        runs.append({"startup_s": first, **result})
    return {
        "startup_s": statistics.median(r["startup_s"] for r in runs),
        "startup_runs_s": [round(r["startup_s"], 2) for r in runs],
        "rss_mb": statistics.median(r["VmRSS"] for r in runs),
        "peak_rss_mb": statistics.median(r["VmHWM"] for r in runs),
        "training_only_modules": runs[0]["training_only"],
        "classifications": classifications,
        "repeats": repeats,
    }


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(path: Path) -> list[Requirement]:
    """The requirements a pip requirements file names, following ``-r`` includes."""
    found: list[Requirement] = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            found += _requirements(path.parent / line.removeprefix("-r ").strip())
        elif line:
            found.append(Requirement(line))
    return found


def _closure(requirements: list[Requirement]) -> dict[str, metadata.Distribution]:
    """Every installed distribution the requirements pull in (extras followed, markers evaluated here)."""
    found: dict[str, metadata.Distribution] = {}
    todo = list(requirements)
    while todo:
        requirement = todo.pop()
        name = _name(requirement.name)
        if name in found:
            continue
        try:
            found[name] = dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            continue
        extras = {"", *requirement.extras}
        for text in dist.requires or []:
            child = Requirement(text)
            if child.marker is None or any(child.marker.evaluate({"extra": e}) for e in extras):
                todo.append(child)
    return found


def _size(dist: metadata.Distribution) -> int:
    total = 0
    for file in dist.files or []:
        located = Path(str(file.locate()))
        if located.is_file():
            total += located.stat().st_size
    return total


def installed_sizes(root: Path = ROOT) -> dict[str, Any]:
    """Installed MB of the serving (requirements.txt) and training (requirements-training.txt) closures, and the
    largest distributions only training needs."""
    serving = _closure(_requirements(root / "requirements.txt"))
    training = _closure(_requirements(root / "requirements-training.txt"))
    sizes = {name: _size(dist) for name, dist in training.items() | serving.items()}
    only_training = sorted((n for n in training if n not in serving), key=lambda n: -sizes[n])
    mb = 1024 * 1024
    return {
        "serving_mb": sum(sizes[n] for n in serving) / mb,
        "training_mb": sum(sizes[n] for n in training) / mb,
        "serving_distributions": len(serving),
        "training_distributions": len(training),
        "largest_training_only": [(n, round(sizes[n] / mb, 1)) for n in only_training[:5]],
    }


def footprint(version: str, *, repeats: int, classifications: int) -> dict[str, Any]:
    """Both paths' start-up and memory, the installed sizes and the load average around them."""
    load_before = os.getloadavg()
    paths = {
        path: startup_and_memory(version, path=path, repeats=repeats, classifications=classifications)
        for path in PATHS
    }
    return {
        **paths,
        "installed": installed_sizes(),
        "load_average": {
            "before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in os.getloadavg()],
        },
    }


if __name__ == "__main__":
    probe(sys.argv[1], sys.argv[2], int(sys.argv[3]))
