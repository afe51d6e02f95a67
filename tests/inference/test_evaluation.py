import numpy as np
import pytest
from PIL import Image

from inference import evaluation

CLASSES = ("a", "b", "c")


def test_confusion_and_per_type_metrics():
    labels = np.array([0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 1, 1, 1, 0, 2])
    matrix = evaluation.confusion_matrix(labels, predicted, 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    per_type = evaluation.per_type_metrics(matrix, CLASSES)
    assert per_type["b"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert per_type["c"]["precision"] == 1.0 and per_type["c"]["recall"] == 0.5


def test_classification_metrics_block():
    probabilities = np.eye(3)[[0, 1, 1, 1, 0, 2]] * 0.7 + 0.1
    labels = np.array([0, 0, 1, 1, 2, 2])
    metrics = evaluation.classification_metrics(probabilities, labels, CLASSES)
    assert metrics["n"] == 6
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    expected_f1 = np.mean([0.5, 0.8, 2 / 3])
    assert metrics["macro_f1"] == pytest.approx(expected_f1)
    assert set(metrics["per_type"]) == set(CLASSES)
    assert metrics["ece"] == pytest.approx(abs(0.8 - 4 / 6))  # every confidence is 0.8: one bin
    assert metrics["precision_at_5"] is None


def test_ece_is_zero_when_confidence_matches_accuracy():
    # 10 predictions at confidence 0.7 of which 7 are right; 10 at 1.0, all right.
    probabilities = np.array([[0.7, 0.3]] * 10 + [[1.0, 0.0]] * 10)
    labels = np.array([0] * 7 + [1] * 3 + [0] * 10)
    assert evaluation.expected_calibration_error(probabilities, labels) == pytest.approx(0.0)
    overconfident = np.array([[1.0, 0.0]] * 10)
    assert evaluation.expected_calibration_error(overconfident, np.array([0] * 5 + [1] * 5)) == pytest.approx(
        0.5
    )


def test_precision_at_5_with_catalogue_and_leave_one_out():
    rng = np.random.default_rng(0)
    centres = np.eye(4)[:2] * 10
    catalogue_labels = np.repeat([0, 1], 6)
    catalogue = centres[catalogue_labels] + rng.normal(0, 0.1, (12, 4))
    queries = centres[[0, 1]] + rng.normal(0, 0.1, (2, 4))
    assert evaluation.precision_at_k(queries, np.array([0, 1]), catalogue, catalogue_labels) == 1.0
    assert evaluation.precision_at_k(queries, np.array([1, 0]), catalogue, catalogue_labels) == 0.0
    # Leave-one-out: each class has 6 items, so the 5 neighbours of each (others of its class) all match.
    assert evaluation.precision_at_k(catalogue, catalogue_labels) == 1.0


def test_fit_temperature_softens_overconfident_predictions():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 400)
    logits = rng.normal(0, 1, (400, 3))
    logits[np.arange(400), labels] += 1.0  # right ~60% of the time...
    overconfident = evaluation.softmax(logits * 4)  # ...but with near-certain confidence
    temperature = evaluation.fit_temperature(overconfident, labels)
    assert 3.0 < temperature < 5.5
    calibrated = evaluation.apply_temperature(overconfident, temperature)
    assert (calibrated.argmax(1) == overconfident.argmax(1)).all()
    assert evaluation.expected_calibration_error(calibrated, labels) < evaluation.expected_calibration_error(
        overconfident, labels
    )


def test_figures_are_pngs(tmp_path):
    path = evaluation.render_confusion_png([[3, 1, 0], [0, 2, 0], [1, 0, 4]], CLASSES, tmp_path / "c.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 200
    history = {
        "loss": [1.2, 0.8, 0.6],
        "val_loss": [1.3, 1.0, 0.9],
        "accuracy": [0.4, 0.6, 0.7],
        "val_accuracy": [0.3, 0.5, 0.6],
    }
    path = evaluation.render_curves_png(history, tmp_path / "h.png")
    with Image.open(path) as image:
        assert image.format == "PNG"
    evaluation.render_curves_png({"loss": [1.0], "accuracy": [0.5]}, tmp_path / "one-epoch.png")


def test_model_card_renders_the_card(tmp_path):
    from inference import model_card

    per_type = {
        s: {"precision": 0.9, "recall": 0.8 + i / 100, "f1": 0.85, "support": 10}
        for i, s in enumerate(CLASSES)
    }
    metrics = {
        "n": 30,
        "accuracy": 0.9,
        "macro_f1": 0.89,
        "ece": 0.03,
        "ece_uncalibrated": 0.07,
        "precision_at_5": 0.91,
        "precision_at_5_catalogue": "100 catalogue images",
        "per_type": per_type,
        "confusion": [[9, 1, 0], [0, 10, 0], [1, 0, 9]],
        "evaluated_on": "val",
    }
    card = {
        "version": "v9",
        "architecture": "efficientnet-lite0",
        "classes": list(CLASSES),
        "input_size": 224,
        "temperature": 0.8,
        "metrics": metrics,
        "hyperparameters": {"epochs": 3, "fine_tune_from": "block6a"},
        "serving": {
            "file": "model.tflite",
            "quantization": "int8",
            "metrics": metrics,
            "agreement_with_keras": {"top1_agreement": 0.99},
        },
        "data": {"dir": "/data/train", "n": 100, "counts": {"a": 50, "b": 50}},
        "reproduce": "python manage.py train_model /data/train",
    }
    text = model_card.write(tmp_path, card).read_text()
    assert text.startswith("# Model card: v9")
    assert "| model.keras (float32) | 0.900 | 0.890 | 0.800 | 0.030 | 0.910 |" in text
    assert "model.tflite (int8, what serves)" in text
    assert "First trained block: block6a." in text and "python manage.py train_model /data/train" in text
    assert "| **a** | 9 | 1 | 0 |" in text
