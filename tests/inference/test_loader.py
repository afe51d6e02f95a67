import numpy as np
import pytest
from PIL import Image

from inference import loader
from inference.loader import ModelNotFound, ModelUnavailable, get_classifier
from tests.inference.conftest import TINY_SIZE


def test_predict_arrays_shapes_probabilities_and_unit_embeddings(tiny_version):
    tiny_version("tiny-v1")
    classifier = get_classifier("tiny-v1")
    assert classifier.classes == ("drawings", "engraving", "iconography", "painting", "sculpture")
    assert classifier.input_size == TINY_SIZE
    batch = np.random.default_rng(0).uniform(0, 255, (3, TINY_SIZE, TINY_SIZE, 3)).astype(np.float32)
    probabilities, embeddings = classifier.predict_arrays(batch)
    assert probabilities.shape == (3, 5) and embeddings.shape == (3, 128)
    assert embeddings.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_predictions_match_the_keras_model_and_batches_of_any_size(tiny_version, tiny_model_file):
    import keras

    tiny_version("tiny-v1")
    classifier = get_classifier("tiny-v1")
    assert classifier.backend == "tflite-fp32" and classifier.model is None
    batch = np.random.default_rng(1).uniform(0, 255, (70, TINY_SIZE, TINY_SIZE, 3)).astype(np.float32)
    probabilities, embeddings = classifier.predict_arrays(batch)
    assert probabilities.shape == (70, 5)
    expected_p, expected_e = keras.saving.load_model(tiny_model_file, compile=False)(batch[:5])
    np.testing.assert_allclose(probabilities[:5], np.asarray(expected_p), atol=1e-5)
    expected_e = np.asarray(expected_e) / np.linalg.norm(np.asarray(expected_e), axis=1, keepdims=True)
    np.testing.assert_allclose(embeddings[:5], expected_e, atol=1e-5)
    single_p, _ = classifier.predict_arrays(batch[3])
    np.testing.assert_allclose(single_p[0], probabilities[3], atol=1e-5)


def test_temperature_from_the_card_softens_probabilities(tiny_version):
    tiny_version("t1")
    tiny_version("t3", temperature=3.0)
    batch = np.random.default_rng(2).uniform(0, 255, (4, TINY_SIZE, TINY_SIZE, 3)).astype(np.float32)
    p1, e1 = get_classifier("t1").predict_arrays(batch)
    p3, e3 = get_classifier("t3").predict_arrays(batch)
    expected = np.exp(np.log(p1) / 3.0)
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(p3, expected, atol=1e-5)
    np.testing.assert_allclose(e1, e3, atol=1e-6)


def test_predict_images_uses_the_shared_preprocessing(tiny_version):
    tiny_version("tiny-v1")
    classifier = get_classifier("tiny-v1")
    images = [Image.new("RGB", (50, 40), (200, 10, 10)), Image.new("L", (20, 60), 128)]
    probabilities, embeddings = classifier.predict_images(images)
    assert probabilities.shape == (2, 5) and embeddings.shape == (2, 128)
    empty_p, empty_e = classifier.predict_images([])
    assert empty_p.shape == (0, 5) and empty_e.shape == (0, 128)


def test_wrong_input_shape_is_a_clear_error(tiny_version):
    tiny_version("tiny-v1")
    with pytest.raises(ValueError, match="Expected a batch"):
        get_classifier("tiny-v1").predict_arrays(np.zeros((1, 10, 10, 3), np.float32))


def test_same_version_is_loaded_once(tiny_version):
    tiny_version("tiny-v1")
    first = get_classifier("tiny-v1")
    assert get_classifier("tiny-v1") is first
    assert loader.loaded_versions() == ["tiny-v1"]
    loader.clear_cache()
    assert get_classifier("tiny-v1") is not first


def test_missing_version_folder(model_dirs):
    with pytest.raises(ModelNotFound) as caught:
        get_classifier("absent")
    assert isinstance(caught.value, ModelUnavailable)
    assert caught.value.version == "absent"
    assert "no folder named 'absent'" in caught.value.reason


def test_serving_needs_only_the_tflite_copy(tiny_version):
    folder = tiny_version("tiny-v1")
    (folder / "model.keras").unlink()
    classifier = get_classifier("tiny-v1")
    assert classifier.backend == "tflite-fp32" and classifier.embedding_dim == 128
    with pytest.raises(ModelUnavailable, match="model.keras is missing"):
        get_classifier("tiny-v1", backend="keras")


def test_a_version_without_tflite_copy_cannot_serve_and_says_why(tiny_version):
    folder = tiny_version("tiny-v1")
    (folder / "model.tflite").unlink()
    with pytest.raises(ModelUnavailable) as caught:
        get_classifier("tiny-v1")
    assert "model.tflite is missing" in caught.value.reason
    assert "runs only the TFLite copy" in caught.value.reason
    assert get_classifier("tiny-v1", backend="keras").backend == "keras"  # training and evaluation still can


def test_corrupt_model_file_then_repaired(tiny_version, tiny_model_file):
    folder = tiny_version("tiny-v1")
    good = (folder / "model.tflite").read_bytes()
    (folder / "model.tflite").write_bytes(b"this is not a flatbuffer")
    with pytest.raises(ModelUnavailable) as caught:
        get_classifier("tiny-v1")
    assert "could not be loaded" in caught.value.reason
    (folder / "model.tflite").write_bytes(good)
    assert get_classifier("tiny-v1").version == "tiny-v1"  # failures are not cached


def test_corrupt_keras_model_on_the_keras_backend(tiny_version):
    folder = tiny_version("tiny-v1")
    (folder / "model.keras").write_bytes(b"this is not a keras archive")
    with pytest.raises(ModelUnavailable, match="could not be loaded"):
        get_classifier("tiny-v1", backend="keras")
    assert get_classifier("tiny-v1").backend == "tflite-fp32"  # serving never opens it


def test_corrupt_card(tiny_version):
    folder = tiny_version("tiny-v1")
    (folder / "card.json").write_text("{")
    # version_dirs skips it (no readable card), but find_version still finds the folder
    with pytest.raises(ModelUnavailable, match="could not be read"):
        get_classifier("tiny-v1")


def test_card_that_does_not_match_the_model(tiny_version):
    tiny_version("tiny-v1", classes=["a", "b"])
    with pytest.raises(ModelUnavailable, match="do not include 2 class scores"):
        get_classifier("tiny-v1")
    with pytest.raises(ModelUnavailable, match="predicts 5 classes but the card lists 2"):
        get_classifier("tiny-v1", backend="keras")
    tiny_version("tiny-v2", input_size=64)
    with pytest.raises(ModelUnavailable, match=r"takes \(32, 32, 3\) but the card says 64 px"):
        get_classifier("tiny-v2")


def test_unknown_backend_is_refused(tiny_version):
    tiny_version("tiny-v1")
    with pytest.raises(ValueError, match="Unknown backend"):
        get_classifier("tiny-v1", backend="onnx")
