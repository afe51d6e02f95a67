"""Train a model version: a new folder ``<output_dir>/<version>/`` with model.keras, card.json, MODEL_CARD.md,
confusion.png and curves.png (and model.tflite, the fast serving copy, where the recipe makes one).

* Reproducible: one seed drives Keras, TensorFlow, NumPy, the shuffling and the augmentation.
* A stratified share of the training images (``holdout_fraction``) is held out; it picks the best epoch (lowest
  held-out loss) and fits the temperature. The separate validation set, when given, is never used to make a
  choice, so the card's metrics on it are honest.
* Class weights (inverse frequency) make up for the smaller painting class.
* Two recipes. The seed CNN trains end to end with Keras ``fit`` and in-graph augmentation
  (:mod:`~inference.training.keras_fit`). The EfficientNet-Lite variants keep their ImageNet trunk frozen, cache
  the trunk's activations for several augmented views of each image once, and train the last blocks and the heads
  on those (:mod:`~inference.training.tail`): minutes on two CPU cores instead of hours. Either way the saved model
  has no augmentation in it, and the hue is never changed: colour against monochrome is a real cue between types.

The modules, in the order a run goes through them: :mod:`~inference.training.config` (every hyperparameter, with
the per-architecture defaults), :mod:`~inference.training.pipeline` (:func:`train`), the two recipes,
:mod:`~inference.training.tflite_copy` (the serving copy and its checks) and :mod:`~inference.training.writer` (the
card and the version folder).
"""

from inference.training.common import TrainingEvents, class_weights
from inference.training.config import TrainingConfig
from inference.training.pipeline import TrainedVersion, train

__all__ = ["TrainedVersion", "TrainingConfig", "TrainingEvents", "class_weights", "train"]
