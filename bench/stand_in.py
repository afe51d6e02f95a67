"""An untrained model of the intended architecture, for benchmarks run before any version is trained: latency depends
on the network's shape, not on its weights."""

from __future__ import annotations

from typing import Any


def efficientnet_stand_in(input_size: int) -> Any:
    """EfficientNet-Lite0 (shipped ImageNet weights) + the 128-d embedding and 5-way heads of the model contract
    (inference/architectures.py), for when no trained version exists yet."""
    import keras
    from keras import layers

    from inference.efficientnet_lite import build_efficientnet_lite0

    backbone = build_efficientnet_lite0(
        input_shape=(input_size, input_size, 3), weights="imagenet", pooling="avg"
    )
    inputs = keras.Input(shape=(input_size, input_size, 3), dtype="float32", name="pixels")
    features = backbone(inputs)
    embedding = layers.Dense(128, name="embedding")(features)
    logits = layers.Dense(5, name="logits")(embedding)
    probabilities = layers.Activation("softmax", name="probabilities")(logits)
    return keras.Model(inputs, [probabilities, embedding], name="efficientnet_lite0_stand_in")
