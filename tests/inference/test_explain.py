"""Occlusion maps (inference.explain) on a model whose behaviour the test sets by hand, served as the product serves:
an int8 TFLite copy through the one loader.

The probe model scores "painting" by how much strongly red area the image has and "sculpture" by how much strongly
blue area (a 1x1 convolution with fixed weights, global average pooling, fixed dense layers), so the test knows where
each type's evidence lies without asking the code under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference import loader
from inference.architectures import CLASSES
from inference.explain import MIN_SCALE, occlusion_map, overlay, patch_boxes
from inference.tflite import TFLITE_FILE, verification_inputs
from inference.training.tflite_copy import convert

PROBE = "colour-probe"
SIZE = 32
SIDE = 8  # the default patch (a quarter of the side) at 32 px
RED = (slice(5, 11), slice(19, 25))  # 6 x 6: painting's evidence
BLUE = (slice(19, 23), slice(9, 13))  # 4 x 4: sculpture's evidence


def _probe_model():  # type: ignore[no-untyped-def]
    import keras
    from keras import layers

    inputs = keras.Input((SIZE, SIZE, 3), name="pixels")
    x = layers.Conv2D(2, 1, activation="relu", name="colour")(inputs)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    embedding = layers.Dense(128, name="embedding")(x)
    logits = layers.Dense(len(CLASSES), name="logits")(embedding)
    probabilities = layers.Activation("softmax", name="probabilities")(logits)
    model = keras.Model(inputs, [probabilities, embedding])
    # Channel 0: how far red stands above the other two (over a threshold that grey noise never reaches); channel 1
    # the same for blue.
    kernel = np.zeros((1, 1, 3, 2), np.float32)
    kernel[0, 0, :, 0] = np.array([1.0, -0.5, -0.5]) / 255
    kernel[0, 0, :, 1] = np.array([-0.5, -0.5, 1.0]) / 255
    model.get_layer("colour").set_weights([kernel, np.full(2, -0.2, np.float32)])
    dense = np.zeros((2, 128), np.float32)
    dense[0, 0] = dense[1, 1] = 1.0
    bias = np.zeros(128, np.float32)
    bias[2] = 1.0  # never a zero embedding
    model.get_layer("embedding").set_weights([dense, bias])
    head = np.zeros((128, len(CLASSES)), np.float32)
    head[0, CLASSES.index("painting")] = 40.0
    head[1, CLASSES.index("sculpture")] = 40.0
    model.get_layer("logits").set_weights([head, np.zeros(len(CLASSES), np.float32)])
    return model


def probe_image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pixels = np.clip(128 + rng.normal(0, 10, (SIZE, SIZE, 3)), 0, 255)
    pixels[RED] = (255, 0, 0)
    pixels[BLUE] = (0, 0, 255)
    return pixels.round().astype(np.uint8)


@pytest.fixture(scope="module")
def probe_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("probe-models")
    folder = root / PROBE
    folder.mkdir()
    model = _probe_model()
    model.save(folder / "model.keras")
    calibration = np.concatenate(
        [verification_inputs(SIZE), np.stack([probe_image(seed) for seed in range(16)]).astype(np.float32)]
    )
    (folder / TFLITE_FILE).write_bytes(convert(model, quantization="int8", representative=calibration))
    card = {
        "version": PROBE,
        "classes": list(CLASSES),
        "input_size": SIZE,
        "temperature": 1.0,
        "serving": {"quantization": "int8"},
    }
    (folder / "card.json").write_text(json.dumps(card))
    return root


@pytest.fixture
def probe(probe_root, settings):  # type: ignore[no-untyped-def]
    settings.ARTSITE_MODEL_DIRS = [probe_root]
    classifier = loader.get_classifier(PROBE)
    assert classifier.backend == "tflite-int8"  # the served path, not the Keras model
    return classifier


class CountingClassifier:
    """The probe, counting the model calls and the images sent."""

    def __init__(self, classifier) -> None:  # type: ignore[no-untyped-def]
        self.classifier = classifier
        self.classes = classifier.classes
        self.input_size = classifier.input_size
        self.calls: list[int] = []

    def predict_arrays(self, batch: np.ndarray):  # type: ignore[no-untyped-def]
        self.calls.append(len(batch))
        return self.classifier.predict_arrays(batch)


def _peak(heat: np.ndarray) -> tuple[int, int]:
    """The centre of the map's hottest area (the pixels within 5 % of its maximum: the map has plateaus where
    several squares hid the same evidence)."""
    rows, cols = np.nonzero(heat >= heat.max() - 0.05 * abs(heat.max()))
    return int(round(rows.mean())), int(round(cols.mean()))


def _inside(point: tuple[int, int], region: tuple[slice, slice]) -> bool:
    rows, cols = region
    return rows.start <= point[0] < rows.stop and cols.start <= point[1] < cols.stop


def test_each_types_map_peaks_where_its_evidence_is(probe):
    image = Image.fromarray(probe_image())
    result = occlusion_map(probe, image, types=["painting", "sculpture"])
    assert _inside(_peak(result.heat["painting"]), RED)
    assert _inside(_peak(result.heat["sculpture"]), BLUE)
    # The red patch speaks for painting only: over it, sculpture's map shows no support.
    assert result.heat["sculpture"][RED].max() < 0.2


@pytest.mark.parametrize("fill", ["mean", "grey"])
def test_masking_the_most_salient_region_lowers_the_probability_more_than_random_regions(probe, fill):
    pixels = probe_image(seed=3)
    result = occlusion_map(probe, Image.fromarray(pixels), types=["painting"], fill=fill)
    row, col = _peak(result.heat["painting"])
    # The salient region: a square of the patch's size centred on the map's peak (not one of the grid's squares).
    top, left = (int(np.clip(v - SIDE // 2, 0, SIZE - SIDE)) for v in (row, col))
    rng = np.random.default_rng(7)
    randoms = [tuple(int(v) for v in rng.integers(0, SIZE - SIDE + 1, size=2)) for _ in range(20)]
    colour = pixels.reshape(-1, 3).mean(axis=0) if fill == "mean" else np.full(3, 127.0)
    batch = np.repeat(pixels[None].astype(np.float32), 2 + len(randoms), axis=0)
    for copy, (t, lft) in zip(batch[1:], [(top, left), *randoms], strict=True):
        copy[t : t + SIDE, lft : lft + SIDE] = colour
    painting = probe.predict_arrays(batch)[0][:, CLASSES.index("painting")]
    salient_drop, random_drops = painting[0] - painting[1], painting[0] - painting[2:]
    assert salient_drop > 0.1  # hiding the red square takes most of painting's evidence away
    assert salient_drop >= random_drops.max() - 1e-6
    assert salient_drop > 3 * max(random_drops.mean(), 0.0)


def test_all_occluded_copies_go_through_the_model_in_one_call(probe):
    counting = CountingClassifier(probe)
    result = occlusion_map(counting, Image.fromarray(probe_image()), types=["painting"], grid=6)
    assert counting.calls == [6 * 6 + 1]
    assert (result.model_calls, result.model_images) == (1, 37)
    assert result.drops["painting"].shape == (6, 6)
    assert result.boxes.shape == (36, 4)


def test_maps_are_model_sized_normalised_and_probabilities_are_the_untouched_images(probe):
    pixels = probe_image()
    result = occlusion_map(probe, Image.fromarray(pixels), types=list(CLASSES))
    expected = probe.predict_arrays(pixels[None].astype(np.float32))[0][0]
    assert np.allclose([result.probabilities[c] for c in CLASSES], expected, atol=1e-6)
    for name, heat in result.heat.items():
        assert heat.shape == (SIZE, SIZE) and heat.dtype == np.float32
        assert np.isfinite(heat).all() and np.abs(heat).max() <= 1.0 + 1e-6
        assert result.scale[name] >= MIN_SCALE
    # A type with evidence in the image reaches the full scale somewhere.
    assert np.abs(result.heat["painting"]).max() == pytest.approx(1.0)


def test_a_type_nothing_in_the_image_moves_gives_a_faint_map_not_amplified_noise(probe):
    grey = np.full((SIZE, SIZE, 3), 128, np.uint8)  # no red or blue anywhere: the probe's output never moves
    result = occlusion_map(probe, Image.fromarray(grey), types=["drawings", "painting"])
    for name in ("drawings", "painting"):
        assert np.abs(result.heat[name]).max() < 0.05
        assert np.abs(result.drops[name]).max() < 1e-3


def test_an_image_of_any_size_is_read_through_the_one_preprocessing_path(probe):
    # The probe image drawn at 4x: to_model_input squashes it back to 32 px, so the red region stays where it was.
    big = Image.fromarray(probe_image()).resize((SIZE * 4, SIZE * 4), Image.Resampling.NEAREST)
    result = occlusion_map(probe, big, types=["painting"])
    assert _inside(_peak(result.heat["painting"]), RED)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"types": ["photograph"]}, "does not know"),
        ({"types": ["painting"], "grid": 1}, "grid"),
        ({"types": ["painting"], "patch": 0}, "patch"),
        ({"types": ["painting"], "grid": 2, "patch": 0.1}, "gaps"),
        ({"types": ["painting"], "fill": "noise"}, "fill"),
    ],
)
def test_bad_requests_are_clear_errors(probe, options, message):
    with pytest.raises(ValueError, match=message):
        occlusion_map(probe, Image.fromarray(probe_image()), **options)


def test_patch_boxes_cover_the_whole_input_corner_to_corner():
    boxes = patch_boxes(224)
    assert boxes.shape == (64, 4)
    assert set((boxes[:, 2] - boxes[:, 0]).tolist()) == {56}
    covered = np.zeros((224, 224), bool)
    for top, left, bottom, right in boxes:
        covered[top:bottom, left:right] = True
    assert covered.all()
    assert boxes[0].tolist() == [0, 0, 56, 56] and boxes[-1].tolist() == [168, 168, 224, 224]


def test_overlay_colours_support_red_and_opposition_blue_at_the_images_proportions():
    image = Image.new("RGB", (300, 150), (128, 128, 128))
    heat = np.zeros((32, 32), np.float32)
    heat[:, :8] = 1.0  # the left quarter supports the type
    heat[:, -8:] = -1.0  # the right quarter speaks against it
    picture = overlay(image, heat, max_side=200)
    assert picture.size == (200, 100) and picture.mode == "RGB"
    pixels = np.asarray(picture, np.int32)
    left, middle, right = pixels[50, 10], pixels[50, 100], pixels[50, 190]
    assert left[0] > left[2] + 50  # red
    assert right[2] > right[0] + 50  # blue
    assert abs(middle[0] - middle[2]) < 5  # untouched grey
    with pytest.raises(ValueError, match="square"):
        overlay(image, np.zeros((4, 5), np.float32))
