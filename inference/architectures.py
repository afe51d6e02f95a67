"""Network architectures. Every model built here follows one contract, which the loader and training rely on:

* input ``(N, S, S, 3)`` float32 pixels in [0, 255] (what :func:`inference.preprocessing.to_model_input` returns);
  the model normalises inside its own graph;
* two outputs, in this order: ``probabilities`` (N, 5) softmax over :data:`CLASSES`, and ``embedding`` (N, 128),
  the raw (not normalised) output of a linear layer;
* a layer named ``logits`` whose output is the pre-softmax scores, so the loader can apply temperature scaling
  exactly (``softmax(logits / T)``) rather than through ``log(probabilities)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import layers

# Output order of every model's probabilities; the slugs of catalogue.ArtworkType.
CLASSES: tuple[str, ...] = ("drawings", "engraving", "iconography", "painting", "sculpture")
EMBEDDING_DIM = 128

OUTPUT_NAMES = ("probabilities", "embedding")
LOGITS_LAYER = "logits"


def build_seed_cnn(input_size: int = 150, num_classes: int = 5, embedding_dim: int = EMBEDDING_DIM) -> keras.Model:
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


def build_efficientnet_classifier(
    input_size: int = 224, num_classes: int = 5, embedding_dim: int = EMBEDDING_DIM, **kwargs: Any
) -> keras.Model:
    """EfficientNet-Lite0 backbone (``inference/efficientnet_lite.py``) + a 128-d projection head + a 5-way head.

    Not available until the backbone port lands.
    """
    raise NotImplementedError("The EfficientNet-Lite0 classifier is not available yet.")


# Architecture name (as written on the card and given to `train_model --architecture`) -> builder.
ARCHITECTURES: dict[str, Callable[..., keras.Model]] = {
    "seed-cnn": build_seed_cnn,
}
DEFAULT_INPUT_SIZES: dict[str, int] = {"seed-cnn": 150}


def build(architecture: str, **kwargs: Any) -> keras.Model:
    try:
        builder = ARCHITECTURES[architecture]
    except KeyError:
        raise ValueError(
            f"Unknown architecture {architecture!r}; choose one of {', '.join(sorted(ARCHITECTURES))}."
        ) from None
    return builder(**kwargs)


def register_custom_objects() -> None:
    """Import the modules whose custom layers saved models may reference, so ``keras.saving.load_model`` finds
    them. The seed CNN uses built-in layers only."""
    try:
        import inference.efficientnet_lite  # noqa: F401  (registers its layers as Keras serialisables)
    except ImportError:
        pass
