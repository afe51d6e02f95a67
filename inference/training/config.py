"""Every hyperparameter of a training run in one frozen object, with the per-architecture defaults resolved here and
nowhere else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inference.architectures import ARCHITECTURES, DEFAULT_INPUT_SIZES, EFFICIENTNET_VARIANTS
from inference.registry import default_architecture
from inference.tflite import QUANTIZATIONS

# The fields whose default depends on the architecture. The seed CNN trains end to end with Keras; the EfficientNets
# train a tail on cached trunk activations. Each ships a serving copy (only TFLite serves): float32 for the seed CNN,
# int8 for the EfficientNets.
_SEED_CNN_DEFAULTS: dict[str, Any] = {"epochs": 20, "batch_size": 32, "learning_rate": 1e-3, "tflite": "fp32"}
_EFFICIENTNET_DEFAULTS: dict[str, Any] = {
    "epochs": 15,
    "batch_size": 64,
    "learning_rate": 1e-3,
    "tflite": "int8",
}
RECIPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "seed-cnn": _SEED_CNN_DEFAULTS,
    **{name: _EFFICIENTNET_DEFAULTS for name in EFFICIENTNET_VARIANTS},
}


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    """How to train one model version. Build it with :meth:`for_architecture`, which fills in the defaults.

    The fields from ``fine_tune_from`` on apply to the EfficientNet tail recipe only
    (:mod:`inference.training.tail`); the seed CNN ignores them.
    """

    architecture: str
    input_size: int  # the square the images are read at; train() checks that the data matches
    epochs: int
    batch_size: int
    learning_rate: float  # peak, cosine-decayed
    # quantization of the serving copy beside model.keras (fp32, fp16, int8), or None for a version that is only
    # evaluated (without model.tflite it cannot serve)
    tflite: str | None
    seed: int = 1337  # drives Keras, TensorFlow, NumPy, the shuffling and the augmentation
    holdout_fraction: float = (
        0.1  # stratified share of the training images that picks the epoch and temperature
    )
    augment: bool = True
    # EfficientNet tail recipe:
    fine_tune_from: str = "block6a"  # the first trained block; earlier blocks keep their ImageNet weights
    augment_views: int = 4  # random crop / colour views cached per image, besides the plain and mirrored ones
    weight_decay: float = 1e-4  # AdamW
    label_smoothing: float = 0.1
    mixup: float = 0.3  # Beta(a, a) mixing of the cached activations; 0 for none
    ema_decay: float = 0.99  # exponential moving average of the weights per step; 0 keeps the last weights
    body_lr_factor: float = 0.2  # learning rate of the pretrained blocks relative to the new layers
    soup: int = 1  # members trained from the same start and averaged
    quantized_trunk: bool = True  # with an int8 copy, learn on the int8 trunk's activations (what is served)

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"Unknown architecture {self.architecture!r}; choose one of {', '.join(sorted(ARCHITECTURES))}."
            )
        if self.epochs < 1:
            raise ValueError("Train for at least one epoch.")
        if self.soup < 1:
            raise ValueError("A soup has at least one member.")
        if self.tflite is not None and self.tflite not in QUANTIZATIONS:
            raise ValueError(
                f"Unknown TFLite quantization {self.tflite!r}; choose one of {', '.join(QUANTIZATIONS)}."
            )

    @property
    def tail_trained(self) -> bool:
        """Whether the EfficientNet tail recipe trains this architecture (else Keras ``fit`` end to end)."""
        return self.architecture in EFFICIENTNET_VARIANTS

    @classmethod
    def for_architecture(cls, architecture: str | None = None, **overrides: Any) -> TrainingConfig:
        """The recipe for ``architecture`` with ``overrides`` (field name -> value) replacing its defaults.

        Without ``architecture``: the default version's architecture, and its input size and soup size unless overridden
        (:func:`inference.registry.default_architecture`: a plain ``train_model`` retrains what ships). With one:
        that architecture at its native input size (:data:`inference.architectures.DEFAULT_INPUT_SIZES`).
        """
        shipped_soup: dict[str, Any] = {}
        if architecture is None:
            shipped = default_architecture()
            architecture, input_size = shipped.architecture, shipped.input_size
            shipped_soup = {"soup": shipped.soup}  # the shipped recipe, soup included
        else:
            input_size = DEFAULT_INPUT_SIZES.get(architecture, 0)  # 0: __post_init__ names the unknown one
        defaults = {
            "input_size": input_size,
            **RECIPE_DEFAULTS.get(architecture, _SEED_CNN_DEFAULTS),
            **shipped_soup,
        }
        return cls(architecture=architecture, **{**defaults, **overrides})
