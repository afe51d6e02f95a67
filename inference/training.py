"""Train a model version: a new folder ``<output_dir>/<version>/`` with model.keras, card.json, confusion.png and
curves.png (and model.tflite, the fast serving copy, where the recipe makes one).

* Reproducible: one seed drives Keras, TensorFlow, NumPy, the shuffling and the augmentation.
* A stratified share of the training images (``holdout_fraction``) is held out; it picks the best epoch (lowest
  held-out loss) and fits the temperature. The separate validation set, when given, is never used to make a
  choice, so the card's metrics on it are honest.
* Class weights (inverse frequency) make up for the smaller painting class.
* Two recipes. The seed CNN trains end to end with Keras ``fit`` and in-graph augmentation (random flips, small
  shifts and zooms). EfficientNet-Lite0 keeps its ImageNet trunk frozen, caches the trunk's activations for
  several augmented views of each image once, and trains the last blocks and the heads on those
  (:func:`_fit_tail`): minutes on two CPU cores instead of hours. Either way the saved model has no augmentation
  in it, and the hue is never changed: colour against monochrome is a real cue between types.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from django.conf import settings
from keras import layers

from inference import architectures, evaluation, model_card
from inference.datasets import ImageSet, augmented_views, stratified_split
from inference.registry import CARD_FILE, MODEL_FILE, new_version_name
from inference.tflite import TFLITE_FILE

logger = logging.getLogger(__name__)

PREPROCESSING = (
    "inference.preprocessing.decode_image then to_model_input: EXIF orientation applied, any mode to 8-bit RGB "
    "(alpha composited on white), the whole image resized to SxS (bilinear, no crop), float32 pixels in [0, 255]; "
    "the model normalises inside its graph (see 'normalisation')."
)
OUTPUTS_DOC = (
    "outputs[0] 'probabilities': softmax (N, 5) in card['classes'] order, NOT temperature-scaled (the loader "
    "applies softmax(logits / temperature) using the 'logits' layer); outputs[1] 'embedding': (N, 128) raw, "
    "L2-normalise before cosine search (the loader does)."
)


@dataclass
class TrainingEvents:
    """Optional progress hooks for a command's progress bar."""

    on_batch: Callable[[int, int], None] | None = None  # (steps done this epoch, steps per epoch)
    on_epoch: Callable[[int, int, dict[str, float]], None] | None = None  # (epoch, epochs, logs)
    on_stage: Callable[[str], None] | None = None  # "training", "calibrating", "writing"...


@dataclass
class TrainedVersion:
    version: str
    path: Path
    card: dict[str, Any]


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """``n / (k * n_c)``: a class with half the images weighs twice as much; the mean weight per image is 1."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.ones(num_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return {i: float(w) for i, w in enumerate(weights)}


def _augmentation(seed: int) -> keras.Sequential:
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomTranslation(0.08, 0.08, fill_mode="reflect", seed=seed + 1),
            layers.RandomZoom((-0.12, 0.08), fill_mode="reflect", seed=seed + 2),
        ],
        name="augmentation",
    )


def _predictor(model: keras.Model) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(probabilities, raw embeddings) of the in-memory model, 64 images per step, traced once (no
    ``model.predict`` overhead)."""
    size = model.inputs[0].shape[1]
    step = tf.function(
        lambda x: model(x, training=False), input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32)]
    )

    def predict(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probabilities, embeddings = [], []
        for start in range(0, len(images), 64):
            p, e = step(tf.constant(images[start : start + 64], tf.float32))
            probabilities.append(p.numpy())
            embeddings.append(e.numpy())
        if not probabilities:
            return np.zeros((0, model.outputs[0].shape[-1]), np.float32), np.zeros(
                (0, model.outputs[1].shape[-1])
            )
        return np.concatenate(probabilities), np.concatenate(embeddings)

    return predict


@dataclass(frozen=True)
class _FitInputs:
    """What every training recipe gets: the architecture, the images and their fit / held-out split, the shared
    hyperparameters and the progress hooks."""

    architecture: str
    train_data: ImageSet
    fit_idx: np.ndarray
    held_idx: np.ndarray
    epochs: int
    seed: int
    batch_size: int
    learning_rate: float
    augment: bool
    weights: dict[int, float]
    events: TrainingEvents


@dataclass
class _Fitted:
    """What a training recipe hands back to the common calibrate / evaluate / write steps."""

    model: keras.Model
    history: dict[str, list[float]]
    best_epoch: int  # 0-based
    hyperparameters: dict[str, Any]
    # indices into train_data -> (probabilities (uncalibrated), raw embeddings) of those training images
    predict_train: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


# Per-architecture defaults for the arguments left as None.
RECIPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "seed-cnn": {"epochs": 20, "batch_size": 32, "learning_rate": 1e-3, "tflite": None},
    "efficientnet-lite0": {"epochs": 15, "batch_size": 64, "learning_rate": 1e-3, "tflite": "int8"},
    "efficientnet-lite1": {"epochs": 15, "batch_size": 64, "learning_rate": 1e-3, "tflite": "int8"},
    "efficientnet-lite2": {"epochs": 15, "batch_size": 64, "learning_rate": 1e-3, "tflite": "int8"},
}
TAIL_TRAINED = set(architectures.EFFICIENTNET_VARIANTS)


def train(
    *,
    train_data: ImageSet,
    val_data: ImageSet | None = None,
    architecture: str = "seed-cnn",
    epochs: int | None = None,
    seed: int = 1337,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    holdout_fraction: float = 0.1,
    augment: bool = True,
    output_dir: Path | str | None = None,
    version: str | None = None,
    events: TrainingEvents | None = None,
    fine_tune_from: str = "block6a",
    augment_views: int = 4,
    weight_decay: float = 1e-4,
    label_smoothing: float = 0.1,
    mixup: float = 0.3,
    ema_decay: float = 0.99,
    body_lr_factor: float = 0.2,
    soup: int = 1,
    tflite: str | None = "default",
    quantized_trunk: bool = True,
    extra_card: dict[str, Any] | None = None,
) -> TrainedVersion:
    """Train, calibrate, evaluate and write a new model version; returns its name, folder and card.

    ``train_data`` (and ``val_data``) must have been read at the architecture's input size. Without ``val_data``
    the card's metrics are measured on the held-out share of ``train_data``. ``epochs``, ``batch_size``,
    ``learning_rate`` and ``tflite`` default per architecture (:data:`RECIPE_DEFAULTS`).

    EfficientNet-Lite0 only: ``fine_tune_from`` (the first trained block; the ones before it keep their ImageNet
    weights), ``augment_views`` (augmented copies of each image whose trunk activations are cached),
    ``weight_decay``, ``label_smoothing``, ``mixup`` (Beta parameter; 0 for none), ``ema_decay`` (weight
    averaging; 0 for none), ``body_lr_factor`` (learning rate of the pretrained blocks relative to the new
    layers), ``soup`` (train this many members from the same start and average their weights),
    ``quantized_trunk`` (with an int8 serving copy: cache the activations of the int8 trunk that the serving copy
    runs, so the tail learns on the features it will be served; see :func:`_fit_tail`). ``tflite``: quantization
    of the fast serving copy written beside model.keras (``fp32``, ``fp16``, ``int8``; ``None`` for none).
    """
    events = events or TrainingEvents()
    stage = events.on_stage or (lambda _name: None)
    if architecture not in architectures.ARCHITECTURES:
        raise ValueError(f"Unknown architecture {architecture!r}.")
    defaults = RECIPE_DEFAULTS.get(architecture, RECIPE_DEFAULTS["seed-cnn"])
    epochs = int(epochs if epochs is not None else defaults["epochs"])
    batch_size = int(batch_size if batch_size is not None else defaults["batch_size"])
    learning_rate = float(learning_rate if learning_rate is not None else defaults["learning_rate"])
    quantization = defaults["tflite"] if tflite == "default" else tflite
    classes = train_data.classes
    input_size = train_data.input_size
    if val_data is not None and (val_data.classes != classes or val_data.input_size != input_size):
        raise ValueError("The validation set must have the training set's classes and input size.")
    if len(train_data) < 2 * len(classes):
        raise ValueError(f"Too few training images ({len(train_data)}); need at least two per type.")
    if epochs < 1:
        raise ValueError("Train for at least one epoch.")
    output_root = Path(output_dir) if output_dir else Path(settings.ARTSITE_MODEL_DIRS[-1])
    output_root.mkdir(parents=True, exist_ok=True)
    version = version or new_version_name(architecture)
    if (output_root / version).exists():
        raise FileExistsError(f"{output_root / version} already exists.")

    started = time.perf_counter()
    cpu_started = time.process_time()
    keras.utils.set_random_seed(seed)

    fit_idx, held_idx = stratified_split(train_data.labels, holdout_fraction, seed=seed)
    fit_set, held_set = train_data.subset(fit_idx), train_data.subset(held_idx)
    weights = class_weights(fit_set.labels, len(classes))
    # The images the int8 copy is calibrated on (and, with quantized_trunk, the trunk the tail learns from).
    calibration = _calibration_images(fit_set, seed) if quantization == "int8" else None

    run = _FitInputs(
        architecture=architecture,
        train_data=train_data,
        fit_idx=fit_idx,
        held_idx=held_idx,
        epochs=epochs,
        seed=seed,
        batch_size=batch_size,
        learning_rate=learning_rate,
        augment=augment,
        weights=weights,
        events=events,
    )
    if architecture in TAIL_TRAINED:
        fitted = _fit_tail(
            run,
            fine_tune_from=fine_tune_from,
            augment_views=augment_views,
            weight_decay=weight_decay,
            label_smoothing=label_smoothing,
            mixup=mixup,
            ema_decay=ema_decay,
            body_lr_factor=body_lr_factor,
            soup=max(1, int(soup)),
            int8_trunk_calibration=calibration if quantized_trunk else None,
        )
    else:
        fitted = _fit_keras(run)
    model = fitted.model
    training_seconds = time.perf_counter() - started
    training_cpu_seconds = time.process_time() - cpu_started

    stage("calibrating")
    held_p, _ = fitted.predict_train(held_idx)
    temperature = evaluation.fit_temperature(held_p, held_set.labels) if len(held_set) else 1.0

    stage("evaluating")
    predict = _predictor(model)
    report_set, evaluated_on = (val_data, "val") if val_data is not None else (held_set, "holdout")
    report_p, report_e = predict(report_set.images)
    catalogue_e: np.ndarray | None = None
    if val_data is not None:
        # The catalogue through the same network as the queries (predict_train may run another trunk: the int8 one).
        _, catalogue_e = predict(train_data.images)
    metrics = _metrics(report_p, report_e, report_set, temperature, classes, catalogue_e, train_data.labels)
    metrics["evaluated_on"] = evaluated_on

    files: dict[str, bytes] = {}
    serving: dict[str, Any] | None = None
    serving_error: str | None = None
    if quantization:
        stage(f"converting to TFLite ({quantization})")
        try:
            files[TFLITE_FILE], serving = _tflite_copy(
                model,
                quantization=quantization,
                representative=calibration,
                fit_set=fit_set,
                temperature=temperature,
                report=(report_p, report_e),
                report_set=report_set,
                train_data=train_data,
                classes=classes,
                with_catalogue=val_data is not None,
            )
        except Exception as exc:  # noqa: BLE001  (the trained model is still good: keep it, serve it with Keras)
            logger.exception("The TFLite copy (%s) failed; the version is written without it.", quantization)
            serving_error = f"{quantization} TFLite copy failed: {type(exc).__name__}: {exc}"[:500]
            stage(f"TFLite copy failed, kept model.keras only: {serving_error}")

    stage("writing")
    card: dict[str, Any] = {
        "version": version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "architecture": architecture,
        "classes": list(classes),
        "input_size": input_size,
        "embedding_dim": int(model.outputs[1].shape[-1]),
        "outputs": OUTPUTS_DOC,
        "preprocessing": PREPROCESSING,
        "normalisation": _normalisation(model),
        "temperature": round(float(temperature), 4),
        "calibration": {
            "method": "temperature scaling: the T minimising the NLL of the held-out share of the TRAINING images "
            "(never the validation set, which stays an honest test)",
            "n": len(held_set),
        },
        "data": {
            **train_data.summary(),
            "fit_n": len(fit_set),
            "holdout": {"n": len(held_set), "counts": held_set.counts, "fraction": holdout_fraction},
            "val": val_data.summary() if val_data is not None else None,
        },
        "hyperparameters": {
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "seed": seed,
            "holdout_fraction": holdout_fraction,
            "class_weights": {classes[i]: round(w, 4) for i, w in weights.items()},
            "best_epoch": fitted.best_epoch + 1,
            "selection": "lowest held-out loss",
            **fitted.hyperparameters,
        },
        "metrics": metrics,
        "serving": serving,
        **({"serving_error": serving_error} if serving_error else {}),
        "history": {k: [round(float(v), 5) for v in values] for k, values in fitted.history.items()},
        "training_seconds": round(training_seconds, 1),
        "training_cpu_seconds": round(training_cpu_seconds, 1),
        "environment": {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        **(extra_card or {}),
    }
    destination = _write_version(
        output_root, version, model, card, fitted.history, metrics["confusion"], classes, files=files
    )
    return TrainedVersion(version=version, path=destination, card=card)


def _metrics(
    probabilities: np.ndarray,
    embeddings: np.ndarray,
    dataset: ImageSet,
    temperature: float,
    classes: tuple[str, ...],
    catalogue_e: np.ndarray | None,
    catalogue_labels: np.ndarray,
) -> dict[str, Any]:
    calibrated = evaluation.apply_temperature(probabilities, temperature)
    metrics = evaluation.classification_metrics(
        calibrated,
        dataset.labels,
        classes,
        embeddings=embeddings,
        catalogue_embeddings=catalogue_e,
        catalogue_labels=catalogue_labels if catalogue_e is not None else None,
    )
    metrics["ece_uncalibrated"] = evaluation.expected_calibration_error(probabilities, dataset.labels)
    metrics["nll_uncalibrated"] = evaluation.negative_log_likelihood(probabilities, dataset.labels)
    if catalogue_e is None:
        metrics["precision_at_5_catalogue"] = "leave-one-out within the evaluated images"
    return metrics


def _normalisation(model: keras.Model) -> str:
    names = {layer.name for layer in model.layers}
    if "input_normalization" in names:
        return "(x - 127) / 128 inside the model (EfficientNet-Lite's constants)"
    if "rescale" in names:
        return "x / 255 inside the model"
    return "inside the model"


def _fit_keras(run: _FitInputs) -> _Fitted:
    """End-to-end Keras ``fit`` with in-graph augmentation (the seed CNN)."""
    architecture, train_data, fit_idx, held_idx = run.architecture, run.train_data, run.fit_idx, run.held_idx
    epochs, seed, batch_size, learning_rate = run.epochs, run.seed, run.batch_size, run.learning_rate
    augment, weights, events = run.augment, run.weights, run.events
    stage = events.on_stage or (lambda _name: None)
    fit_set, held_set = train_data.subset(fit_idx), train_data.subset(held_idx)
    input_size = train_data.input_size
    model = architectures.build(architecture, input_size=input_size, num_classes=len(train_data.classes))
    logits_model = keras.Model(model.inputs, model.get_layer(architectures.LOGITS_LAYER).output)
    inputs = keras.Input(shape=(input_size, input_size, 3), dtype="float32")
    x = _augmentation(seed)(inputs) if augment else inputs
    trainer = keras.Model(inputs, logits_model(x), name="trainer")

    steps_per_epoch = max(1, -(-len(fit_set) // batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(
        learning_rate, decay_steps=steps_per_epoch * epochs, alpha=0.02
    )
    trainer.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        # XLA cannot compile the augmentation layers, and for these small convolutions on CPU it was no faster.
        jit_compile=False,
    )

    def as_dataset(images: np.ndarray, labels: np.ndarray, *, shuffle: bool) -> tf.data.Dataset:
        ds = tf.data.Dataset.from_tensor_slices((images, labels))
        if shuffle:
            ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
        return (
            ds.batch(batch_size)
            .map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE)
        )

    best = _BestWeights(model)
    callbacks: list[keras.callbacks.Callback] = [best, _Events(events, epochs)]
    stage("training")
    history = trainer.fit(
        as_dataset(fit_set.images, fit_set.labels, shuffle=True),
        validation_data=as_dataset(held_set.images, held_set.labels, shuffle=False)
        if len(held_set)
        else None,
        epochs=epochs,
        class_weight=weights,
        callbacks=callbacks,
        shuffle=False,  # the dataset shuffles itself, with the seed
        verbose=0,
    ).history
    best.restore()
    predict = _predictor(model)
    return _Fitted(
        model=model,
        history=history,
        best_epoch=best.best_epoch,
        hyperparameters={
            "optimizer": "adam",
            "schedule": "cosine decay to 2% over all steps",
            "augmentation": "horizontal flip, translate 8%, zoom -12%..+8% (reflect)" if augment else "none",
        },
        predict_train=lambda indices: predict(train_data.images[indices]),
    )


def _fit_tail(
    run: _FitInputs,
    *,
    fine_tune_from: str,
    augment_views: int,
    weight_decay: float,
    label_smoothing: float,
    mixup: float,
    ema_decay: float,
    body_lr_factor: float,
    soup: int,
    int8_trunk_calibration: np.ndarray | None = None,
) -> _Fitted:
    """Fine-tune the last blocks of a pretrained network on cached trunk activations.

    The blocks before ``fine_tune_from`` keep their ImageNet weights and run once per image and view: their
    output for the plain image, its mirror image and ``augment_views`` random crops with colour jitter
    (:func:`inference.datasets.random_view`) is cached (float16). The tail (the remaining blocks, the 1280-d head
    convolution, the 128-d embedding and the cosine classifier) then trains on a random cached view of each image
    per epoch, which costs a fraction of running the whole network. Batch-norm statistics stay ImageNet's (the
    tail's BN layers are frozen: with ~2,300 images, re-estimating them measured worse); stochastic depth and the
    head's dropout are on while training. AdamW with a linear warm-up then cosine decay (the pretrained blocks at
    ``body_lr_factor`` of the rate), label smoothing, class weights and mixup of the cached activations in the
    cross-entropy; the kept weights are an exponential moving average of the trained ones (mixup and the average
    were worth about 1.5 points of val accuracy in the experiments that chose this recipe).

    With ``int8_trunk_calibration`` the cached activations come from the trunk quantised to int8 on those images,
    exactly as it runs inside the int8 serving copy (same weights, same calibration images, so the same activation
    ranges): the tail learns on the features it will be served. Trained on the float trunk instead, int8 serving
    agreed with the Keras model on only 95-97 % of val and lost 0.5-2.3 points of its accuracy.
    """
    architecture, train_data, fit_idx, held_idx = run.architecture, run.train_data, run.fit_idx, run.held_idx
    epochs, seed, batch_size, learning_rate = run.epochs, run.seed, run.batch_size, run.learning_rate
    augment, weights, events = run.augment, run.weights, run.events
    stage = events.on_stage or (lambda _name: None)
    classes = train_data.classes
    model = architectures.build(architecture, input_size=train_data.input_size, num_classes=len(classes))
    cut = architectures.trunk_cut(model, fine_tune_from)
    trunk = keras.Model(model.inputs, cut, name="trunk")
    tail = keras.Model(
        cut, [model.get_layer(architectures.LOGITS_LAYER).output, model.outputs[1]], name="tail"
    )
    for layer in tail.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False
    size = train_data.input_size
    trunk_step: Callable[[np.ndarray], np.ndarray]
    if int8_trunk_calibration is not None:
        from inference import tflite

        stage("quantising the trunk (int8)")
        trunk_step = tflite.FeatureRunner(
            tflite.quantize_int8(trunk, int8_trunk_calibration), threads=os.cpu_count() or 1
        )
    else:
        float_step = tf.function(
            lambda x: trunk(x, training=False),
            input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32)],
        )
        trunk_step = lambda x: float_step(tf.constant(x)).numpy()  # noqa: E731

    def activations(images: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [
                trunk_step(images[start : start + 64].astype(np.float32)).astype(np.float16)
                for start in range(0, len(images), 64)
            ]
        )

    fit_set = train_data.subset(fit_idx)
    n_views = 1 + (1 + augment_views if augment else 0)
    stage(f"caching trunk activations (view 1 of {n_views})")
    clean = activations(
        train_data.images
    )  # every training image: the held-out share and the catalogue need it
    views = [clean[fit_idx]]
    if augment:
        stage(f"caching trunk activations (view 2 of {n_views})")
        views.append(activations(fit_set.images[:, :, ::-1]))
        for view in range(augment_views):
            stage(f"caching trunk activations (view {view + 3} of {n_views})")
            cached = np.empty_like(views[0])
            for start, batch in augmented_views(fit_set, view, seed=seed):
                cached[start : start + len(batch)] = activations(batch)
                if events.on_batch is not None:
                    events.on_batch(start + len(batch), len(fit_set))
            views.append(cached)
    stacked = np.stack(views)  # (views, fit images, h, w, c) float16
    del views

    fit_labels = train_data.labels[fit_idx]
    held_labels = train_data.labels[held_idx]
    held_x = clean[held_idx]
    class_weight = tf.constant([weights[i] for i in range(len(classes))], tf.float32)
    steps_per_epoch = max(1, -(-len(fit_idx) // batch_size))
    total_steps = steps_per_epoch * epochs

    def optimizer_for(peak: float, trained: list[Any]) -> keras.optimizers.Optimizer:
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0, total_steps, alpha=0.01, warmup_target=peak, warmup_steps=max(1, total_steps // 20)
        )
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=weight_decay)
        optimizer.build(trained)
        return optimizer

    # The new layers (embedding, cosine classifier) learn at the full rate; the pretrained blocks at a fraction of
    # it, so that fine-tuning adapts ImageNet's features rather than overwriting them.
    variables = tail.trainable_variables
    head_layers = {"embedding", architectures.LOGITS_LAYER}
    head_vars = [v for v in variables if v.path.split("/")[0] in head_layers]
    body_vars = [v for v in variables if v.path.split("/")[0] not in head_layers]
    ordered = head_vars + body_vars
    averaged = [tf.Variable(v, trainable=False) for v in ordered]  # exponential moving average of the weights
    initial = [v.numpy() for v in ordered]
    num_classes = len(classes)

    def make_train_step() -> Callable[..., tuple[tf.Tensor, tf.Tensor]]:
        """A fresh optimizer pair (and the step that uses them) for one soup member."""
        head_optimizer = optimizer_for(learning_rate, head_vars)
        body_optimizer = optimizer_for(learning_rate * body_lr_factor, body_vars) if body_vars else None

        @tf.function
        def train_step(
            x: tf.Tensor, y: tf.Tensor, mix: tf.Tensor, partner: tf.Tensor
        ) -> tuple[tf.Tensor, tf.Tensor]:
            # Mixup on the cached activations ("manifold mixup"): each example blended with a partner from the
            # batch, targets (smoothed) and class weights blended alike; mix = 1 turns it off.
            x = tf.cast(x, tf.float32)
            targets = tf.one_hot(y, num_classes) * (1.0 - label_smoothing) + label_smoothing / num_classes
            w = tf.gather(class_weight, y)
            x = mix * x + (1.0 - mix) * tf.gather(x, partner)
            targets = mix * targets + (1.0 - mix) * tf.gather(targets, partner)
            w = mix * w + (1.0 - mix) * tf.gather(w, partner)
            with tf.GradientTape() as tape:
                logits, _ = tail(x, training=True)
                per_example = tf.nn.softmax_cross_entropy_with_logits(targets, logits)
                loss = tf.reduce_sum(per_example * w) / tf.reduce_sum(w)
            gradients = tape.gradient(loss, ordered)
            head_optimizer.apply_gradients(zip(gradients[: len(head_vars)], head_vars, strict=True))
            if body_optimizer is not None:
                body_optimizer.apply_gradients(zip(gradients[len(head_vars) :], body_vars, strict=True))
            for average, variable in zip(averaged, ordered, strict=True):
                average.assign(ema_decay * average + (1.0 - ema_decay) * variable)
            return loss, tf.reduce_sum(
                tf.cast(tf.argmax(logits, axis=-1) == tf.cast(y, tf.int64), tf.float32)
            )

        return train_step

    tail_step = tf.function(lambda x: tail(tf.cast(x, tf.float32), training=False))

    def tail_predict(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not len(x):
            return np.zeros((0, num_classes), np.float32), np.zeros(
                (0, int(model.outputs[1].shape[-1])), np.float32
            )
        logits, embeddings = [], []
        for start in range(0, len(x), 256):
            lg, e = tail_step(x[start : start + 256])
            logits.append(lg.numpy())
            embeddings.append(e.numpy())
        return evaluation.softmax(np.concatenate(logits).astype(np.float64)).astype(
            np.float32
        ), np.concatenate(embeddings)

    def assign(values: list[np.ndarray]) -> None:
        for variable, value in zip(ordered, values, strict=True):
            variable.assign(value)

    def held_out_logs() -> dict[str, float]:
        if not len(held_idx):
            return {}
        held_p, _ = tail_predict(held_x)
        weights_held = np.asarray([weights[int(c)] for c in held_labels])
        smoothed = np.full(held_p.shape, label_smoothing / num_classes)
        smoothed[np.arange(len(held_labels)), held_labels] += 1.0 - label_smoothing
        per_example = -(smoothed * np.log(np.maximum(held_p, 1e-12))).sum(axis=1)
        return {
            "val_loss": float((per_example * weights_held).sum() / weights_held.sum()),
            "val_accuracy": float((held_p.argmax(axis=1) == held_labels).mean()),
        }

    history: dict[str, list[float]] = {}
    members: list[list[np.ndarray]] = []
    member_summaries: list[dict[str, Any]] = []
    for member in range(soup):
        # Every member starts from the same weights (so their average is meaningful) with its own data order,
        # views and mixup draws.
        assign(initial)
        for average, value in zip(averaged, initial, strict=True):
            average.assign(value)
        train_step = make_train_step()
        rng = np.random.default_rng([seed, member])
        prefix = f"member{member + 1}_" if member else ""
        best_loss, best_epoch, best_weights = float("inf"), 0, None
        stage("training" if soup == 1 else f"training (soup member {member + 1} of {soup})")
        for epoch in range(epochs):
            order = rng.permutation(len(fit_idx))
            chosen_view = rng.integers(0, len(stacked), len(order))
            loss_sum = correct = 0.0
            for step_index, start in enumerate(range(0, len(order), batch_size), start=1):
                rows, picks = order[start : start + batch_size], chosen_view[start : start + batch_size]
                mix = float(rng.beta(mixup, mixup)) if mixup > 0 else 1.0
                partner = rng.permutation(len(rows))
                loss, hits = train_step(
                    tf.constant(stacked[picks, rows]),
                    tf.constant(fit_labels[rows]),
                    tf.constant(mix, tf.float32),
                    tf.constant(partner),
                )
                loss_sum += float(loss) * len(rows)
                correct += float(hits)
                if events.on_batch is not None:
                    events.on_batch(step_index, steps_per_epoch)
            logs = {"loss": loss_sum / len(order), "accuracy": correct / len(order)}
            # The held-out share judges the averaged weights (what would be kept); then training resumes.
            current = [v.numpy() for v in ordered]
            assign([a.numpy() for a in averaged])
            logs.update(held_out_logs())
            for key, value in logs.items():
                history.setdefault(prefix + key, []).append(value)
            held_loss = logs.get("val_loss")
            if held_loss is None or held_loss <= best_loss:
                best_loss = held_loss if held_loss is not None else best_loss
                best_epoch, best_weights = epoch, [v.numpy() for v in ordered]
            assign(current)
            if events.on_epoch is not None:
                events.on_epoch(epoch + 1, epochs, logs)
        members.append(best_weights if best_weights is not None else [v.numpy() for v in ordered])
        member_summaries.append(
            {
                "best_epoch": best_epoch + 1,
                **({"held_out_loss": round(best_loss, 5)} if len(held_idx) else {}),
            }
        )
    # A uniform "model soup": the members' weights averaged (one network, so serving costs the same).
    assign([np.mean([weights_[i] for weights_ in members], axis=0) for i in range(len(ordered))])
    best_epoch = member_summaries[0]["best_epoch"] - 1
    soup_logs = held_out_logs()
    return _Fitted(
        model=model,
        history=history,
        best_epoch=best_epoch,
        hyperparameters={
            "optimizer": f"AdamW (weight decay {weight_decay:g}); pretrained blocks at {body_lr_factor:g} x the "
            "learning rate of the new layers",
            "schedule": "linear warm-up over 5% of the steps, then cosine decay to 1%",
            "loss": f"cross-entropy, label smoothing {label_smoothing:g}, class-weighted",
            "mixup": f"on the cached activations, mixing weight ~ Beta({mixup:g}, {mixup:g}) per batch"
            if mixup > 0
            else "none",
            "weight_averaging": f"exponential moving average of the weights (decay {ema_decay:g} per step); the "
            "averaged weights are the ones judged and kept",
            "soup": {
                "members": soup,
                "how": "members trained from the same start with different data orders, views and mixup draws; "
                "their weights averaged uniformly"
                if soup > 1
                else "one member (no averaging)",
                "per_member": member_summaries,
                **(
                    {
                        "held_out_loss": round(soup_logs["val_loss"], 5),
                        "held_out_accuracy": round(soup_logs["val_accuracy"], 4),
                    }
                    if soup_logs
                    else {}
                ),
            },
            "fine_tune_from": fine_tune_from,
            "trunk_activations": f"the int8 trunk of the serving copy (calibrated on {len(int8_trunk_calibration)} "
            "training images): the tail learned on the features it is served"
            if int8_trunk_calibration is not None
            else "the float32 trunk",
            "frozen": f"input normalisation, stem and every block before {fine_tune_from} (ImageNet weights); "
            "all batch-norm statistics",
            "trainable_parameters": int(sum(int(np.prod(v.shape)) for v in variables)),
            "head": "dropout 0.3, Dense 128 (embedding), cosine classifier (scale 16) on the normalised embedding",
            "augmentation": (
                f"cached trunk activations of {n_views} views per image: plain, mirrored, {augment_views} random "
                "crops (55-100% area, aspect 3:4-4:3) with flip and brightness/contrast/saturation +-20%; "
                "one view drawn per image and epoch"
                if augment
                else "none (plain images only)"
            ),
        },
        predict_train=lambda indices: tail_predict(clean[indices]),
    )


def _tflite_copy(
    model: keras.Model,
    *,
    quantization: str,
    representative: np.ndarray | None,
    fit_set: ImageSet,
    temperature: float,
    report: tuple[np.ndarray, np.ndarray],
    report_set: ImageSet,
    train_data: ImageSet,
    classes: tuple[str, ...],
    with_catalogue: bool,
) -> tuple[bytes, dict[str, Any]]:
    """The fast serving copy and its card block: how it was made, how it scores on the same evaluation images,
    how closely it agrees with the Keras model, and the tolerance the loader checks it against."""
    from inference import tflite

    content = tflite.convert(model, quantization=quantization, representative=representative)
    runner = tflite.TFLiteRunner(content, num_classes=len(classes), threads=os.cpu_count() or 1)

    def predict(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, embeddings = [], []
        for start in range(0, len(images), 64):
            lg, e = runner(images[start : start + 64].astype(np.float32))
            logits.append(lg)
            embeddings.append(e)
        return evaluation.softmax(np.concatenate(logits).astype(np.float64)), np.concatenate(embeddings)

    report_p, report_e = predict(report_set.images)
    catalogue_e = predict(train_data.images)[1] if with_catalogue else None
    metrics = _metrics(report_p, report_e, report_set, temperature, classes, catalogue_e, train_data.labels)
    metrics.pop("confusion", None)

    def normalised(e: np.ndarray) -> np.ndarray:
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)

    on_report = tflite.agreement(
        evaluation.apply_temperature(report[0], temperature),
        normalised(report[1]),
        evaluation.apply_temperature(report_p, temperature),
        normalised(report_e),
    )
    probe = tflite.verification_inputs(fit_set.input_size)
    keras_p, keras_e = _predictor(model)(probe)
    probe_p, probe_e = predict(probe)
    on_probe = tflite.agreement(
        evaluation.apply_temperature(keras_p, temperature),
        normalised(keras_e),
        evaluation.apply_temperature(probe_p, temperature),
        normalised(probe_e),
    )
    default_p, default_cos = tflite.DEFAULT_TOLERANCE[quantization]
    tolerance = {
        # Twice what was measured here, never tighter than the defaults: catches a wrong or damaged file, not
        # rounding on another CPU.
        "max_probability_diff": round(max(default_p, 2 * on_probe["max_probability_diff"]), 4),
        "min_embedding_cosine": round(min(default_cos, 1 - 2 * (1 - on_probe["min_embedding_cosine"])), 4),
    }
    return content, {
        "file": tflite.TFLITE_FILE,
        "format": "tflite (TensorFlow Lite flatbuffer, XNNPACK)",
        "quantization": quantization,
        "quantization_detail": {
            "int8": f"the backbone's weights and activations int8 (calibrated on {len(representative) if representative is not None else 0} training images), "
            "the head after global pooling (embedding, cosine classifier) float32; float32 in and out",
            "fp16": "weights stored as float16, computed in float32",
            "fp32": "float32 as trained",
        }[quantization],
        "size_bytes": len(content),
        "metrics": metrics,
        "agreement_with_keras": on_report,
        "agreement_on_verification_images": on_probe,
        "tolerance": tolerance,
    }


def _calibration_images(fit_set: ImageSet, seed: int, n: int = 300) -> np.ndarray:
    """The training images an int8 copy is calibrated on: ``n`` drawn with ``seed``, in dataset order."""
    picks = np.sort(np.random.default_rng(seed).permutation(len(fit_set))[: min(n, len(fit_set))])
    return fit_set.images[picks]


def _write_version(
    root: Path,
    version: str,
    model: Any,
    card: dict[str, Any],
    history: dict[str, list[float]],
    confusion: list[list[int]],
    classes: tuple[str, ...],
    *,
    files: dict[str, bytes] | None = None,
) -> Path:
    """Write into a hidden temporary folder and rename it, so a half-written version is never listed."""

    staging = root / f".{version}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        model.save(staging / MODEL_FILE)
        for name, content in (files or {}).items():
            (staging / name).write_bytes(content)
        evaluated_on = card["metrics"].get("evaluated_on", "")
        evaluation.render_confusion_png(
            confusion, classes, staging / "confusion.png", title=f"{version} - {evaluated_on}"
        )
        evaluation.render_curves_png(history, staging / "curves.png", title=f"{version} - training")
        (staging / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        model_card.write(staging, card)
        destination = root / version
        staging.rename(destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return destination


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
