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
    assert evaluation.expected_calibration_error(overconfident, np.array([0] * 5 + [1] * 5)) == pytest.approx(0.5)


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
    history = {"loss": [1.2, 0.8, 0.6], "val_loss": [1.3, 1.0, 0.9], "accuracy": [0.4, 0.6, 0.7],
               "val_accuracy": [0.3, 0.5, 0.6]}
    path = evaluation.render_curves_png(history, tmp_path / "h.png")
    with Image.open(path) as image:
        assert image.format == "PNG"
    evaluation.render_curves_png({"loss": [1.0], "accuracy": [0.5]}, tmp_path / "one-epoch.png")


def test_bench_model_command_reports_both_paths(tiny_version):
    import json
    from io import StringIO

    from django.core.management import call_command

    tiny_version("tiny-v1")
    out = StringIO()
    call_command("bench_model", "--model", "tiny-v1", "--images", "3", "--repeats", "3", "--reference-repeats", "2",
                 "--batch-size", "4", "--batch-repeats", "2", "--json", stdout=out)
    figures = json.loads(out.getvalue())
    assert figures["version"] == "tiny-v1"
    assert figures["single"]["serving"]["n"] == 3 and figures["single"]["model_predict"]["n"] == 2
    assert figures["batch"]["serving_images_per_s"] > 0 and figures["batch"]["model_predict_images_per_s"] > 0
    out = StringIO()
    call_command("bench_model", "--model", "tiny-v1", "--images", "2", "--repeats", "2", "--reference-repeats", "2",
                 "--batch-size", "2", "--batch-repeats", "1", stdout=out)
    assert "model.predict" in out.getvalue() and "faster" in out.getvalue()
