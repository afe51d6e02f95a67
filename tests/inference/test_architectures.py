import numpy as np
import pytest

from inference.architectures import CLASSES, build, build_seed_cnn


def test_seed_cnn_layers_and_outputs():
    model = build_seed_cnn(input_size=32)
    conv = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    assert [layer.filters for layer in conv] == [16, 32, 64, 128, 256]
    assert all(layer.kernel_size == (3, 3) for layer in conv)
    assert sum(layer.__class__.__name__ == "MaxPooling2D" for layer in model.layers) == 5
    dense = [layer for layer in model.layers if layer.__class__.__name__ == "Dense"]
    assert [layer.units for layer in dense] == [128, 128, 128, 128, len(CLASSES)]
    assert model.get_layer("embedding").activation.__name__ == "linear"

    probabilities, embedding = model(np.full((3, 32, 32, 3), 255.0, np.float32))
    assert probabilities.shape == (3, 5)
    assert embedding.shape == (3, 128)
    np.testing.assert_allclose(np.asarray(probabilities).sum(axis=1), 1.0, rtol=1e-5)


def test_seed_cnn_rescales_inside_the_graph():
    model = build_seed_cnn(input_size=32)
    assert model.get_layer("rescale").scale == 1.0 / 255.0


def test_build_rejects_unknown_architecture():
    with pytest.raises(ValueError, match="Unknown architecture"):
        build("resnet-9000")


def test_efficientnet_classifier_contract_and_cosine_logits(tmp_path):
    import keras

    from inference.architectures import CosineLogits, trunk_cut

    model = build("efficientnet-lite0", input_size=96, weights=None, cosine_scale=10.0)
    assert model.inputs[0].shape[1:] == (96, 96, 3)
    assert isinstance(model.get_layer("logits"), CosineLogits)
    assert model.get_layer("embedding").units == 128
    assert model.get_layer("embedding").activation.__name__ == "linear"
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 96, 96, 3)).astype(np.float32)
    probabilities, embedding = model(pixels)
    assert probabilities.shape == (2, 5) and embedding.shape == (2, 128)
    np.testing.assert_allclose(np.asarray(probabilities).sum(axis=1), 1.0, rtol=1e-5)
    logits = keras.Model(model.inputs, model.get_layer("logits").output)(pixels)
    assert np.abs(np.asarray(logits)).max() <= 10.0 + 1e-4  # scale * cosine

    # The custom layer survives a save/load round trip (the loader relies on it being registered).
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    np.testing.assert_allclose(np.asarray(reloaded(pixels)[0]), np.asarray(probabilities), atol=1e-5)

    # Cutting at a block gives a trunk and a tail that compose to the whole network.
    cut = trunk_cut(model, "block6a")
    trunk = keras.Model(model.inputs, cut)
    tail = keras.Model(cut, model.outputs)
    np.testing.assert_allclose(np.asarray(tail(trunk(pixels))[0]), np.asarray(probabilities), atol=1e-5)
    assert trunk_cut(model, "block1a") is not None
    with pytest.raises(ValueError, match="not a block"):
        trunk_cut(model, "block9z")


@pytest.mark.parametrize(
    ("architecture", "variant", "last_repeat"),
    [
        ("efficientnet-lite0", "lite0", "block6d"),
        ("efficientnet-lite1", "lite1", "block6e"),
    ],
)
def test_efficientnet_classifier_starts_from_the_imagenet_trunk(architecture, variant, last_repeat):
    from inference.efficientnet_lite import build_efficientnet_lite0

    model = build(architecture, input_size=96)
    reference = build_efficientnet_lite0((96, 96, 3), weights="imagenet", variant=variant)
    for name in ("top_conv", f"{last_repeat}_project_conv"):
        np.testing.assert_array_equal(
            model.get_layer(name).get_weights()[0], reference.get_layer(name).get_weights()[0]
        )
