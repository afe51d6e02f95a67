import numpy as np

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
    import pytest

    with pytest.raises(ValueError, match="Unknown architecture"):
        build("resnet-9000")
