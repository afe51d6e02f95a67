"""Network architectures. Every model built here follows one contract, which the loader and training rely on:

* input ``(N, S, S, 3)`` float32 pixels in [0, 255] (what :func:`inference.preprocessing.to_model_input` returns);
  the model normalises inside its own graph;
* two outputs, in this order: ``probabilities`` (N, classes) softmax over the version's class list (the card's
  ``classes``; :data:`CLASSES` by default), and ``embedding`` (N, 128), the raw (not normalised) output of a linear
  layer;
* a layer named ``logits`` whose output is the pre-softmax scores, so the loader can apply temperature scaling
  exactly (``softmax(logits / T)``) rather than through ``log(probabilities)``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import keras
from keras import layers, ops

# The default class list lives in a module without TensorFlow (the web process names the types); re-exported here.
from inference.classes import CLASSES as CLASSES
from inference.efficientnet_lite import build_efficientnet_lite0, imagenet_weights

EMBEDDING_DIM = 128

LOGITS_LAYER = "logits"


def build_seed_cnn(
    input_size: int = 150, num_classes: int = 5, embedding_dim: int = EMBEDDING_DIM
) -> keras.Model:
    """The seed architecture: five 3x3 ReLU convolutions (16, 32, 64, 128, 256 filters), each followed by 2x2 max
    pooling, global average pooling, three Dense 128 ReLU, a linear Dense ``embedding`` and a 5-way softmax.

    Convolutions use ``same`` padding so that the network also builds at the small input sizes tests use (with
    ``valid`` padding five blocks need at least ~94 px); at 150 px the two differ only at the borders.
    """
    inputs = keras.Input(shape=(input_size, input_size, 3), dtype="float32", name="pixels")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    for i, filters in enumerate((16, 32, 64, 128, 256), start=1):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    for i in range(1, 4):
        x = layers.Dense(128, activation="relu", name=f"dense{i}")(x)
    embedding = layers.Dense(embedding_dim, activation=None, name="embedding")(x)
    # Dense + separate softmax is the same function as Dense(activation="softmax"), but exposes the logits.
    logits = layers.Dense(num_classes, activation=None, name=LOGITS_LAYER)(embedding)
    probabilities = layers.Activation("softmax", name="probabilities")(logits)
    return keras.Model(inputs, [probabilities, embedding], name="seed_cnn")


@keras.saving.register_keras_serializable(package="artsite")
class CosineLogits(layers.Layer):
    """``scale * cos(embedding, w_c)`` for each class ``c``: a normalised-softmax ("cosine") classifier.

    Trained with cross-entropy, it makes the *direction* of the 128-d embedding carry the type, so cosine nearest
    neighbours (what pgvector searches) agree with the classifier; a plain dense head lets the norm carry part of
    the decision, which cosine search ignores. ``scale`` fixes the logits' range (|logit| <= scale); the loader's
    temperature calibrates them afterwards.
    """

    def __init__(self, units: int, scale: float = 16.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = int(units)
        self.scale = float(scale)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.kernel = self.add_weight(
            shape=(int(input_shape[-1] or 0), self.units), initializer="glorot_uniform", name="kernel"
        )

    def call(self, inputs: Any) -> Any:
        x = inputs / ops.maximum(ops.norm(inputs, axis=-1, keepdims=True), 1e-6)
        w = self.kernel / ops.maximum(ops.norm(self.kernel, axis=0, keepdims=True), 1e-6)
        return self.scale * ops.matmul(x, w)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (*input_shape[:-1], self.units)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units, "scale": self.scale}


def build_efficientnet_classifier(
    input_size: int = 224,
    num_classes: int = 5,
    embedding_dim: int = EMBEDDING_DIM,
    *,
    weights: str | None = "imagenet",
    dropout: float = 0.3,
    cosine_scale: float = 16.0,
    variant: str = "lite0",
) -> keras.Model:
    """EfficientNet-Lite0 or, with ``variant="lite1"``, -Lite1 (``inference/efficientnet_lite.py``, ImageNet
    weights shipped in the repository) +
    dropout + a linear 128-d ``embedding`` + a cosine ``logits`` head (:class:`CosineLogits`) + softmax.

    The backbone's layers are part of this model (not a nested model), named as in
    ``inference.efficientnet_lite`` (``block1a_*`` ... ``block7a_*``, ``top_*``), so training can cut the graph at
    any block (:func:`trunk_cut`). It normalises its input itself (``(x - 127) / 128``).
    """

    backbone = build_efficientnet_lite0(
        (input_size, input_size, 3), weights=weights, pooling="avg", variant=variant
    )
    x = layers.Dropout(dropout, name="head_dropout")(backbone.outputs[0])
    embedding = layers.Dense(embedding_dim, activation=None, name="embedding")(x)
    logits = CosineLogits(num_classes, scale=cosine_scale, name=LOGITS_LAYER)(embedding)
    probabilities = layers.Activation("softmax", name="probabilities")(logits)
    return keras.Model(backbone.inputs, [probabilities, embedding], name=f"efficientnet_{variant}_artsite")


def trunk_cut(model: keras.Model, first_trained_block: str) -> Any:
    """The tensor entering block ``first_trained_block`` (e.g. ``"block6a"``) of an EfficientNet classifier: the
    layers before it are the frozen trunk, the ones from it on the trained tail."""
    for suffix in ("_expand_conv", "_dwconv"):  # block1a has no expansion convolution
        try:
            return model.get_layer(f"{first_trained_block}{suffix}").input
        except ValueError:
            continue
    raise ValueError(f"{first_trained_block!r} is not a block of {model.name}.")


#: The EfficientNet-Lite variant behind each EfficientNet architecture (all trained by the same recipe).
EFFICIENTNET_VARIANTS: dict[str, str] = {
    "efficientnet-lite0": "lite0",
    "efficientnet-lite1": "lite1",
    "efficientnet-lite2": "lite2",
}
# Architecture name (as written on the card and given to `train_model --architecture`) -> builder.
ARCHITECTURES: dict[str, Callable[..., keras.Model]] = {
    "seed-cnn": build_seed_cnn,
    **{name: partial(build_efficientnet_classifier, variant=v) for name, v in EFFICIENTNET_VARIANTS.items()},
}
DEFAULT_INPUT_SIZES: dict[str, int] = {
    "seed-cnn": 150,
    "efficientnet-lite0": 224,
    "efficientnet-lite1": 240,
    "efficientnet-lite2": 260,
}


def require_pretrained_weights(architecture: str) -> None:
    """Raise ``FileNotFoundError`` (saying how to port them) if ``architecture`` starts from ImageNet weights that
    are not on disk. Lite2's are not shipped: no shipped version uses them, and they would add 24 MB."""

    if architecture in EFFICIENTNET_VARIANTS:
        imagenet_weights(EFFICIENTNET_VARIANTS[architecture])


def build(architecture: str, **kwargs: Any) -> keras.Model:
    try:
        builder = ARCHITECTURES[architecture]
    except KeyError:
        raise ValueError(
            f"Unknown architecture {architecture!r}; choose one of {', '.join(sorted(ARCHITECTURES))}."
        ) from None
    return builder(**kwargs)
