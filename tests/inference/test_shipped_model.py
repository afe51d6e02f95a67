"""The model the product ships with (``inference/weights/DEFAULT``): its folder is complete, its card holds the
figures the README quotes, and it serves through the loader the way workers use it."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference import loader
from inference.architectures import CLASSES, EMBEDDING_DIM

WEIGHTS = Path(__file__).resolve().parents[2] / "inference" / "weights"


@pytest.fixture
def shipped(settings):
    settings.ARTSITE_MODEL_DIRS = [WEIGHTS]
    settings.ARTSITE_DEFAULT_MODEL = ""
    loader.clear_cache()
    version = (WEIGHTS / "DEFAULT").read_text().strip()
    yield version, WEIGHTS / version
    loader.clear_cache()


def test_default_version_folder_is_complete(shipped):
    version, folder = shipped
    card = json.loads((folder / "card.json").read_text())
    assert card["version"] == version and card["classes"] == list(CLASSES)
    for name in ("model.keras", "model.tflite", "card.json", "MODEL_CARD.md", "confusion.png", "curves.png"):
        assert (folder / name).is_file(), name
    metrics = card["metrics"]
    assert metrics["evaluated_on"] == "val" and metrics["n"] > 0
    for key in ("accuracy", "macro_f1", "ece", "precision_at_5", "per_type"):
        assert key in metrics
    assert card["serving"]["file"] == "model.tflite" and "metrics" in card["serving"]


def test_default_version_carries_a_passing_check_of_its_tflite_copy(shipped):
    """Activation requires it: a check of this very model.tflite against model.keras, recorded on the card."""
    from inference import tflite

    _, folder = shipped
    card = json.loads((folder / "card.json").read_text())
    assert tflite.check_problem(folder, card) is None
    check = card["serving"]["check"]
    assert check["max_probability_diff"] <= check["max_probability_diff_limit"]
    assert check["min_embedding_cosine"] >= check["min_embedding_cosine_limit"]


def test_default_version_serves_through_the_loader(shipped):
    version, folder = shipped
    card = json.loads((folder / "card.json").read_text())
    classifier = loader.get_classifier(version)
    assert classifier.backend == f"tflite-{card['serving']['quantization']}" and classifier.model is None
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 256, (180, 150, 3), dtype=np.uint8)),
        Image.new("RGB", (300, 320), (236, 228, 210)),
        Image.new("L", (90, 400), 30).convert("RGB"),
    ]
    probabilities, embeddings = classifier.predict_images(images)
    assert probabilities.shape == (3, len(CLASSES)) and embeddings.shape == (3, EMBEDDING_DIM)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-4)
    single, _ = classifier.predict_images(images[:1])  # batch size must not change the answer
    np.testing.assert_allclose(single[0], probabilities[0], atol=2e-3)


def test_training_defaults_to_the_shipped_architecture_and_input_size(shipped):
    from inference.registry import default_architecture
    from inference.training import TrainingConfig

    version, folder = shipped
    card = json.loads((folder / "card.json").read_text())
    shipped_architecture = default_architecture()
    assert (
        shipped_architecture.architecture,
        shipped_architecture.input_size,
        shipped_architecture.version,
    ) == (
        card["architecture"],
        card["input_size"],
        version,
    )
    config = TrainingConfig.for_architecture()
    assert (config.architecture, config.input_size) == (card["architecture"], card["input_size"])
    assert (
        config.soup == card["hyperparameters"]["soup"]["members"] == 3
    )  # the shipped recipe: a 3-member soup
    assert config.tail_trained and config.tflite == card["serving"]["quantization"]
