"""The seed CNN's recipe: end-to-end Keras ``fit`` with in-graph augmentation (random flips, small shifts and
zooms) that the saved model does not keep."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from inference import architectures
from inference.training.common import FitInputs, Fitted, TrainingEvents, predictor


def fit_keras(run: FitInputs) -> Fitted:
    """Train every layer with Adam and a cosine schedule; keep the epoch with the lowest held-out loss."""
    config, train_data = run.config, run.train_data
    fit_set, held_set = train_data.subset(run.fit_idx), train_data.subset(run.held_idx)
    model = architectures.build(
        config.architecture, input_size=train_data.input_size, num_classes=len(train_data.classes)
    )
    trainer = _trainer(model, train_data.input_size, seed=config.seed, augment=config.augment)
    steps_per_epoch = max(1, -(-len(fit_set) // config.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=steps_per_epoch * config.epochs, alpha=0.02
    )
    trainer.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        # XLA cannot compile the augmentation layers, and for these small convolutions on CPU it was no faster.
        jit_compile=False,
    )
    best = _BestWeights(model)
    run.events.stage("training")
    run.events.member(1, 1)
    history = trainer.fit(
        _dataset(fit_set.images, fit_set.labels, config.batch_size, shuffle_seed=config.seed),
        validation_data=_dataset(held_set.images, held_set.labels, config.batch_size)
        if len(held_set)
        else None,
        epochs=config.epochs,
        class_weight=run.weights,
        callbacks=[best, _Events(run.events, config.epochs)],
        shuffle=False,  # the dataset shuffles itself, with the seed
        verbose=0,
    ).history
    best.restore()
    predict = predictor(model)
    return Fitted(
        model=model,
        history=history,
        best_epoch=best.best_epoch,
        hyperparameters={
            "optimizer": "adam",
            "schedule": "cosine decay to 2% over all steps",
            "augmentation": "horizontal flip, translate 8%, zoom -12%..+8% (reflect)"
            if config.augment
            else "none",
        },
        predict_train=lambda indices: predict(train_data.images[indices]),
    )


def _trainer(model: keras.Model, input_size: int, *, seed: int, augment: bool) -> keras.Model:
    """The model's logits behind the augmentation layers: what ``fit`` trains; ``model`` shares its weights."""
    logits_model = keras.Model(model.inputs, model.get_layer(architectures.LOGITS_LAYER).output)
    inputs = keras.Input(shape=(input_size, input_size, 3), dtype="float32")
    x = _augmentation(seed)(inputs) if augment else inputs
    return keras.Model(inputs, logits_model(x), name="trainer")


def _augmentation(seed: int) -> keras.Sequential:
    # The hue is never changed: colour against monochrome is a real cue between types.
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomTranslation(0.08, 0.08, fill_mode="reflect", seed=seed + 1),
            layers.RandomZoom((-0.12, 0.08), fill_mode="reflect", seed=seed + 2),
        ],
        name="augmentation",
    )


def _dataset(
    images: np.ndarray, labels: np.ndarray, batch_size: int, *, shuffle_seed: int | None = None
) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(labels), seed=shuffle_seed, reshuffle_each_iteration=True)
    return (
        ds.batch(batch_size)
        .map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


class _BestWeights(keras.callbacks.Callback):
    """Keep the weights of the epoch with the lowest held-out loss (or the last epoch without a held-out set)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.target = model
        self.best_loss = float("inf")
        self.best_epoch = 0
        self.best_weights: list[np.ndarray] | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        loss = (logs or {}).get("val_loss")
        if loss is None or loss <= self.best_loss:
            self.best_loss = loss if loss is not None else self.best_loss
            self.best_epoch = epoch
            self.best_weights = self.target.get_weights()

    def restore(self) -> None:
        if self.best_weights is not None:
            self.target.set_weights(self.best_weights)


class _Events(keras.callbacks.Callback):
    """Forwards Keras' batch and epoch ends to the command's progress hooks."""

    def __init__(self, events: TrainingEvents, epochs: int) -> None:
        super().__init__()
        self.events = events
        self.epochs = epochs

    def on_train_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
        if self.events.on_batch is not None:
            self.events.on_batch(batch + 1, self.params.get("steps") or 0)

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        if self.events.on_epoch is not None:
            self.events.on_epoch(epoch + 1, self.epochs, {k: float(v) for k, v in (logs or {}).items()})
