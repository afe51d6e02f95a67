"""The shipped Keras EfficientNet-Lite0 and -Lite1 weights reproduce the PyTorch originals.

The fixtures ``fixtures/efficientnet_lite{0,1}_reference.npz`` were written by
``python -m inference.port.port_efficientnet_lite dump [--variant lite1]`` (PyTorch venv): they hold
deterministic synthetic uint8 images and the PyTorch model's ImageNet logits
and average-pooled 1280-d features for them. These tests need neither torch,
nor network, nor Django.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import keras
import numpy as np
import pytest

from inference.efficientnet_lite import (
    DEFAULT_WEIGHTS_PATH,
    FEATURE_DIM,
    INPUT_MEAN,
    INPUT_STD,
    build_efficientnet_lite0,
    efficientnet_lite0_block_names,
    efficientnet_lite_block_specs,
    layers_of_last_blocks,
    weights_path,
)

FIXTURES = Path(__file__).parent / "fixtures"
VARIANTS = ["lite0", "lite1"]  # the variants whose ImageNet weights ship
# |keras - torch| / max(1, max|torch|); the measured port error is ~2e-6.
RELATIVE_TOLERANCE = 1e-3


@cache
def _reference(variant: str = "lite0") -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"efficientnet_{variant}_reference.npz") as data:
        return {key: data[key] for key in data.files}


@cache
def _model(size: int, include_top: bool, pooling: str | None = "avg", variant: str = "lite0") -> keras.Model:
    return build_efficientnet_lite0(
        (size, size, 3), include_top=include_top, weights="imagenet", pooling=pooling, variant=variant
    )


def _assert_close(got: np.ndarray, want: np.ndarray) -> None:
    scale = max(1.0, float(np.max(np.abs(want))))
    diff = float(np.max(np.abs(got - want)))
    assert diff / scale < RELATIVE_TOLERANCE, f"max abs diff {diff:.3e} (scale {scale:.2f})"


def _run(model: keras.Model, image: np.ndarray) -> np.ndarray:
    return np.asarray(model(image.astype(np.float32)[None], training=False))[0]


def test_shipped_weights_file_exists_with_expected_size() -> None:
    assert DEFAULT_WEIGHTS_PATH.is_file() and weights_path("lite0") == DEFAULT_WEIGHTS_PATH
    assert 14 * 2**20 < DEFAULT_WEIGHTS_PATH.stat().st_size < 20 * 2**20
    assert 19 * 2**20 < weights_path("lite1").stat().st_size < 25 * 2**20


def test_variants_scale_depth_and_width_but_not_stem_head_or_end_stages() -> None:
    lite1, lite2 = efficientnet_lite_block_specs("lite1"), efficientnet_lite_block_specs("lite2")
    # Lite1: depth x1.1 -> stage repeats 1, 3, 3, 4, 4, 5, 1 (first and last stage fixed); widths as Lite0.
    assert [s.name for s in lite1][:4] == ["block1a", "block2a", "block2b", "block2c"]
    assert len(lite1) == 21 and lite1[-2].name == "block6e" and lite1[-1].name == "block7a"
    assert [s.output_filters for s in lite1 if s.name.endswith("a")] == [16, 24, 40, 80, 112, 192, 320]
    # Lite2: width x1.1, rounded to multiples of 8; the stem's 32 filters stay.
    assert [s.output_filters for s in lite2 if s.name.endswith("a")] == [16, 24, 48, 88, 120, 208, 352]
    assert lite2[0].input_filters == 32
    with pytest.raises(ValueError, match="Unknown EfficientNet-Lite variant"):
        efficientnet_lite_block_specs("lite9")
    with pytest.raises(FileNotFoundError, match="No ImageNet weights"):
        build_efficientnet_lite0((96, 96, 3), weights="imagenet", variant="lite2")


def test_fixture_records_the_normalisation_the_model_uses() -> None:
    ref = _reference()
    assert float(ref["input_mean"]) == INPUT_MEAN == 127.0
    assert float(ref["input_std"]) == INPUT_STD == 128.0


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", ["random224", "gradient224", "random160", "random97"])
def test_logits_match_pytorch_reference(name: str, variant: str) -> None:
    ref = _reference(variant)
    image = ref[f"image_{name}"]
    logits = _run(_model(image.shape[0], include_top=True, variant=variant), image)
    assert logits.shape == (1000,)
    _assert_close(logits, ref[f"logits_{name}"])
    assert int(np.argmax(logits)) == int(np.argmax(ref[f"logits_{name}"]))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", ["random224", "gradient224", "random160", "random97"])
def test_pooled_features_match_pytorch_reference(name: str, variant: str) -> None:
    ref = _reference(variant)
    image = ref[f"image_{name}"]
    features = _run(_model(image.shape[0], include_top=False, variant=variant), image)
    assert features.shape == (FEATURE_DIM,)
    _assert_close(features, ref[f"features_{name}"])


def test_other_input_size_output_shapes() -> None:
    batch = np.random.default_rng(0).uniform(0, 255, (2, 160, 160, 3)).astype(np.float32)
    pooled = _model(160, include_top=False)
    assert pooled.output_shape == (None, FEATURE_DIM)
    assert np.asarray(pooled(batch, training=False)).shape == (2, FEATURE_DIM)
    feature_map = _model(160, include_top=False, pooling=None)
    assert np.asarray(feature_map(batch, training=False)).shape == (2, 5, 5, FEATURE_DIM)
    assert "predictions" not in {layer.name for layer in pooled.layers}


def test_normalisation_is_inside_the_model() -> None:
    model = _model(224, include_top=False)
    norm = model.get_layer("input_normalization")
    pixels = np.array([[[[0.0, 127.0, 255.0]]]], dtype=np.float32)
    np.testing.assert_allclose(np.asarray(norm(pixels)), (pixels - 127.0) / 128.0, rtol=0, atol=1e-7)


def test_block_names_and_last_blocks_selection() -> None:
    names = efficientnet_lite0_block_names()
    assert len(names) == 16
    assert names[:3] == ["block1a", "block2a", "block2b"]
    assert names[-2:] == ["block6d", "block7a"]
    model = _model(224, include_top=False)
    layer_names = [layer.name for layer in model.layers]
    for block in names:
        assert f"{block}_dwconv" in layer_names
        assert f"{block}_project_bn" in layer_names
    assert "block1a_expand_conv" not in layer_names  # expansion ratio 1
    assert {"stem_conv", "stem_bn", "top_conv", "top_bn", "top_activation", "avg_pool"} <= set(layer_names)

    tail = {layer.name for layer in layers_of_last_blocks(model, 2)}
    assert tail
    assert all(n.startswith(("block6d_", "block7a_", "top_")) for n in tail)
    assert {"block6d_add", "block7a_project_conv", "top_conv"} <= tail
    assert {layer.name for layer in layers_of_last_blocks(model, 0)} == {
        "top_conv",
        "top_bn",
        "top_activation",
    }
    with pytest.raises(ValueError):
        layers_of_last_blocks(model, 17)


@pytest.mark.parametrize("shape", [(64, 64, 3), (224, 200, 3), (224, 224, 1)])
def test_rejects_unsupported_input_shapes(shape: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError):
        build_efficientnet_lite0(shape)
