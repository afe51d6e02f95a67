"""The serving copy: conversion (training code), the LiteRT runner, the check recorded on the card and what
activation makes of it, and ``check_model``."""

import json
import shutil
import threading
from io import StringIO

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter
from django.core.management import CommandError, call_command

from inference import tflite
from inference.loader import ModelUnavailable, get_classifier
from inference.registry import read_card
from inference.training.tflite_copy import convert, quantize_int8, serving_keras_model
from tests.inference.conftest import TINY_SIZE


@pytest.fixture(scope="session")
def tiny_tflite(tiny_model_file):
    """The tiny session model's fp32 TFLite copy."""
    return tiny_model_file.parent / "model.tflite"


@pytest.fixture(scope="session")
def other_tflite(tmp_path_factory):
    """A TFLite file of a *different* network with the same shapes (other random weights)."""
    import keras

    from inference.architectures import build_seed_cnn

    keras.utils.set_random_seed(99)
    path = tmp_path_factory.mktemp("other-tflite") / "model.tflite"
    path.write_bytes(convert(build_seed_cnn(input_size=TINY_SIZE), quantization="fp32"))
    return path


def _batch(n, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, TINY_SIZE, TINY_SIZE, 3)).astype(np.float32)


def test_runner_matches_the_keras_model(tiny_model_file, tiny_tflite):
    import keras

    model = keras.saving.load_model(tiny_model_file, compile=False)
    runner = tflite.TFLiteRunner.from_file(tiny_tflite, num_classes=5, threads=1)
    batch = _batch(3)
    logits, embeddings = runner(batch)
    serving = serving_keras_model(model)
    expected_logits, expected_embeddings = (np.asarray(t) for t in serving(batch))
    np.testing.assert_allclose(logits, expected_logits, atol=1e-4)
    np.testing.assert_allclose(embeddings, expected_embeddings, atol=1e-4)
    single_logits, _ = runner(batch[:1])  # another batch size: its own interpreter
    np.testing.assert_allclose(single_logits[0], logits[0], atol=1e-5)


def test_convert_refuses_unknown_quantization_and_int8_without_images(tiny_model_file):
    import keras

    model = keras.saving.load_model(tiny_model_file, compile=False)
    with pytest.raises(ValueError, match="Unknown quantization"):
        convert(model, quantization="int4")
    with pytest.raises(ValueError, match="representative"):
        convert(model, quantization="int8")


def test_int8_copy_quantises_the_backbone_and_keeps_the_cosine_head_in_float():
    """The int8 copy: convolutions in 8 bits, the embedding and cosine classifier in float32 (fully quantised,
    the classifier's division failed in the interpreter on real images); it still agrees with the Keras model."""
    import keras

    from inference.architectures import build_efficientnet_classifier

    keras.utils.set_random_seed(3)
    size = 96
    model = build_efficientnet_classifier(input_size=size)  # the shipped ImageNet backbone
    images = np.random.default_rng(4).uniform(0, 255, (12, size, size, 3)).astype(np.float32)
    content = convert(model, quantization="int8", representative=images[:8])
    interpreter = Interpreter(model_content=content)
    types_by_op: dict[str, set[str]] = {}
    for op in interpreter._get_ops_details():
        types_by_op.setdefault(op["op_name"], set()).update(
            interpreter._get_tensor_details(i, 0)["dtype"].__name__ for i in op["inputs"] if i >= 0
        )
    assert "int8" in types_by_op["CONV_2D"] and "int8" in types_by_op["DEPTHWISE_CONV_2D"]
    assert types_by_op["DIV"] == {"float32"} and types_by_op["FULLY_CONNECTED"] == {"float32"}
    logits, embeddings = tflite.TFLiteRunner(content, num_classes=5, threads=1)(images)
    expected_logits, expected_embeddings = (np.asarray(t) for t in serving_keras_model(model)(images))
    cosine = (embeddings * expected_embeddings).sum(1) / (
        np.linalg.norm(embeddings, axis=1) * np.linalg.norm(expected_embeddings, axis=1)
    )
    assert logits.dtype == np.float32 and cosine.min() > 0.9


def test_int8_trunk_alone_gives_the_features_the_int8_copy_serves():
    """Training caches the int8 trunk's activations (the trunk quantised alone, on the calibration images) so the
    tail learns on what the int8 serving copy computes. Inside the served copy, the tensor entering the tail must
    be the same: same quantisation scale, values at most one rounding step apart (interpreter kernels round
    differently), far closer than the float trunk's."""
    import keras

    from inference.architectures import build_efficientnet_classifier, trunk_cut

    keras.utils.set_random_seed(5)
    size = 96
    model = build_efficientnet_classifier(input_size=size)
    rng = np.random.default_rng(6)
    calibration = rng.uniform(0, 255, (8, size, size, 3)).astype(np.float32)
    images = rng.uniform(0, 255, (6, size, size, 3)).astype(np.float32)
    trunk = keras.Model(model.inputs, trunk_cut(model, "block6a"))
    int8_features = tflite.FeatureRunner(quantize_int8(trunk, calibration), threads=1)(images)
    float_features = np.asarray(trunk(images))
    assert int8_features.shape == float_features.shape and int8_features.dtype == np.float32

    served = Interpreter(
        model_content=convert(model, quantization="int8", representative=calibration),
        experimental_preserve_all_tensors=True,
    )
    (entry,) = served.get_input_details()
    served.resize_tensor_input(entry["index"], list(images.shape))
    served.allocate_tensors()
    served.set_tensor(entry["index"], images)
    served.invoke()
    candidates = []  # (dequantised values, scale) of every served int8 tensor of the trunk output's shape
    for detail in served.get_tensor_details():
        scale, zero_point = detail["quantization"]
        if tuple(detail["shape"]) == int8_features.shape and detail["dtype"] == np.int8 and scale:
            values = (served.get_tensor(detail["index"]).astype(np.float32) - zero_point) * scale
            candidates.append((values, scale))
    values, scale = min(candidates, key=lambda c: float(np.abs(c[0] - int8_features).mean()))
    assert np.abs(values - int8_features).max() <= 1.01 * scale
    assert np.abs(values - int8_features).mean() < 0.2 * np.abs(values - float_features).mean()


def test_verification_inputs_are_deterministic_pictures():
    first, second = tflite.verification_inputs(40), tflite.verification_inputs(40)
    assert first.shape == (4, 40, 40, 3) and first.min() >= 0 and first.max() <= 255
    np.testing.assert_array_equal(first, second)


def test_serving_copy_follows_the_keras_backend(tiny_version):
    tiny_version("fast", temperature=2.0)
    fast = get_classifier("fast")
    assert fast.backend == "tflite-fp32"
    reference = get_classifier("fast", backend="keras")
    assert reference.backend == "keras" and reference is not fast
    batch = _batch(70, seed=3)  # more than one chunk, padded buckets
    p_fast, e_fast = fast.predict_arrays(batch)
    p_ref, e_ref = reference.predict_arrays(batch)
    np.testing.assert_allclose(p_fast, p_ref, atol=1e-4)  # the card's temperature applied the same way
    np.testing.assert_allclose(e_fast, e_ref, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(e_fast, axis=1), 1.0, atol=1e-5)
    assert get_classifier("fast") is fast


def test_tflite_path_is_thread_safe(tiny_version):
    tiny_version("fast")
    classifier = get_classifier("fast")
    batches = [_batch(1 + i % 3, seed=i) for i in range(8)]
    expected = [classifier.predict_arrays(b)[0] for b in batches]
    results: dict[int, np.ndarray] = {}

    def work(i):
        for _ in range(5):
            results[i] = classifier.predict_arrays(batches[i])[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(8):
        np.testing.assert_allclose(results[i], expected[i], atol=1e-6)


def test_training_code_records_a_passing_check_of_the_very_file(tiny_version):
    folder = tiny_version("fast")
    check = read_card(folder)["serving"]["check"]
    assert check["passed"] is True and check["by"] == "training"
    assert check["runtime"].startswith("ai-edge-litert ")
    assert check["max_probability_diff"] <= 1e-3 and check["min_embedding_cosine"] >= 0.9999  # fp32: rounding
    assert check["file_sha256"] == tflite.file_sha256(folder / "model.tflite")
    assert tflite.check_problem(folder, read_card(folder)) is None


def test_what_keeps_a_version_from_serving(tiny_version, other_tflite):
    folder = tiny_version("v")
    card = read_card(folder)
    no_check = {**card, "serving": {k: v for k, v in card["serving"].items() if k != "check"}}
    assert "records no check" in tflite.check_problem(folder, no_check)
    failed = {**card, "serving": {**card["serving"], "check": {**card["serving"]["check"], "passed": False}}}
    assert "failed its check" in tflite.check_problem(folder, failed)
    shutil.copy(other_tflite, folder / "model.tflite")
    assert "changed since its check" in tflite.check_problem(folder, card)
    (folder / "model.tflite").unlink()
    assert "has no model.tflite" in tflite.check_problem(folder, card)


def test_check_model_measures_again_and_records(tiny_version, db):
    folder = tiny_version("v")
    out = StringIO()
    call_command("check_model", "v", "--record", stdout=out)
    assert "passed" in out.getvalue() and "largest probability diff" in out.getvalue()
    check = read_card(folder)["serving"]["check"]
    assert check["by"] == "check_model" and check["passed"] is True
    assert "Serving check (check_model" in (folder / "MODEL_CARD.md").read_text()
    from inference.models import ModelVersion

    assert ModelVersion.objects.get(version="v").card["serving"]["check"]["by"] == "check_model"


def test_check_model_fails_a_copy_of_another_network_and_activation_refuses_it(
    tiny_version, other_tflite, db
):
    from inference.services import model_version_check_servable

    folder = tiny_version("mismatch")
    shutil.copy(other_tflite, folder / "model.tflite")
    assert get_classifier("mismatch").backend == "tflite-fp32"  # the loader itself does not compare
    with pytest.raises(CommandError, match="fails its check"):
        call_command("check_model", "mismatch", "--record", stdout=StringIO())
    check = json.loads((folder / "card.json").read_text())["serving"]["check"]
    assert check["passed"] is False
    assert (
        check["max_probability_diff"] > check["max_probability_diff_limit"]
        or check["min_embedding_cosine"] < check["min_embedding_cosine_limit"]
    )
    with pytest.raises(ModelUnavailable, match="cannot be activated: model.tflite failed its check"):
        model_version_check_servable(version="mismatch")


def test_check_model_without_a_copy_is_a_clear_error(tiny_version, db):
    folder = tiny_version("plain")
    (folder / "model.tflite").unlink()
    with pytest.raises(CommandError, match="model.tflite is missing"):
        call_command("check_model", "plain", stdout=StringIO())
