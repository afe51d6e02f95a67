"""Fixtures for the inference tests: tiny untrained model versions in temporary model dirs, tiny image folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference import loader
from inference.architectures import CLASSES

TINY_SIZE = 32


def write_card(folder: Path, version: str, *, input_size: int = TINY_SIZE, **extra) -> dict:
    card = {
        "version": version,
        "created": "2026-01-01T00:00:00+00:00",
        "architecture": "seed-cnn",
        "classes": list(CLASSES),
        "input_size": input_size,
        "embedding_dim": 128,
        "preprocessing": "test",
        "temperature": 1.0,
        **extra,
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "card.json").write_text(json.dumps(card))
    return card


@pytest.fixture(scope="session")
def tiny_model_folder(tmp_path_factory) -> Path:
    """An untrained seed CNN at 32 px with its checked fp32 TFLite copy (made by the training code), once per
    session."""
    import keras

    from inference.architectures import build_seed_cnn
    from inference.training.tflite_copy import serving_copy_add

    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("tiny-model") / "tiny"
    write_card(folder, "tiny")
    build_seed_cnn(input_size=TINY_SIZE).save(folder / "model.keras")
    serving_copy_add(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_file(tiny_model_folder) -> Path:
    """The tiny model's model.keras."""
    return tiny_model_folder / "model.keras"


@pytest.fixture
def model_dirs(tmp_path, settings) -> list[Path]:
    """Two empty model dirs (shipped, trained) that settings.ARTSITE_MODEL_DIRS points at; no default version."""
    dirs = [tmp_path / "weights", tmp_path / "models"]
    for d in dirs:
        d.mkdir()
    settings.ARTSITE_MODEL_DIRS = dirs
    settings.ARTSITE_DEFAULT_MODEL = ""
    loader.clear_cache()
    yield dirs
    loader.clear_cache()


@pytest.fixture
def tiny_version(model_dirs, tiny_model_file):
    """Install a tiny model version (model.keras, model.tflite and the card's serving block with its check):
    ``tiny_version("name", dir_index=0, **card_fields) -> folder``."""
    source = tiny_model_file.parent
    serving = json.loads((source / "card.json").read_text())["serving"]

    def install(version: str = "tiny-v1", *, dir_index: int = 0, **card_fields) -> Path:
        folder = model_dirs[dir_index] / version
        write_card(folder, version, **{"serving": serving, **card_fields})
        shutil.copy(tiny_model_file, folder / "model.keras")
        shutil.copy(source / "model.tflite", folder / "model.tflite")
        return folder

    return install


def make_image_folder(
    root: Path, per_class: int = 4, size: int = 32, *, names: dict[str, str] | None = None, seed: int = 0
) -> Path:
    """One sub-folder per type, ``per_class`` small JPEG/PNG images each, with a colour cue per type so that a
    model can learn something in one epoch."""
    rng = np.random.default_rng(seed)
    for index, slug in enumerate(CLASSES):
        folder = root / (names or {}).get(slug, slug)
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            base = np.zeros((size, size, 3), np.float32)
            base[..., index % 3] = 60 + 40 * index
            noise = rng.normal(0, 20, (size, size, 3))
            pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
            image = Image.fromarray(pixels)
            if i % 2:
                image.save(folder / f"{slug}-{i}.png")
            else:
                image.save(folder / f"{slug}-{i}.jpg", quality=90)
    return root
