"""The EfficientNet recipe: fine-tune the last blocks of an ImageNet-pretrained network on cached trunk activations.

The blocks before ``fine_tune_from`` keep their ImageNet weights and run once per image and view: their output for
the plain image, its mirror image and ``augment_views`` random crops with colour jitter
(:func:`inference.datasets.random_view`) is cached (float16). The tail (the remaining blocks, the 1280-d head
convolution, the 128-d embedding and the cosine classifier) then trains on a random cached view of each image per
epoch, which costs a fraction of running the whole network: minutes on two CPU cores instead of hours. Batch-norm
statistics stay ImageNet's (the tail's BN layers are frozen: with ~2,300 images, re-estimating them measured
worse); stochastic depth and the head's dropout are on while training. AdamW with a linear warm-up then cosine decay
(the pretrained blocks at ``body_lr_factor`` of the rate), label smoothing, class weights and mixup of the cached
activations in the cross-entropy; the kept weights are an exponential moving average of the trained ones (mixup and
the average were worth about 1.5 points of val accuracy in the experiments that chose this recipe). With ``soup``
above 1, several members train from the same start and their weights are averaged.

With ``quantized_trunk`` and an int8 serving copy, the cached activations come from the trunk quantised to int8 on
the serving copy's calibration images, exactly as it runs inside that copy (same weights, same calibration images,
so the same activation ranges): the tail learns on the features it will be served. Trained on the float trunk
instead, int8 serving agreed with the Keras model on only 95-97 % of val and lost 0.5-2.3 points of its accuracy.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from inference import architectures, evaluation, tflite
from inference.datasets import augmented_views
from inference.training.common import FitInputs, Fitted, TrainingEvents
from inference.training.tflite_copy import quantize_int8

TrunkStep = Callable[[np.ndarray], np.ndarray]  # images -> trunk activations
HEAD_LAYERS = {"embedding", architectures.LOGITS_LAYER}  # the new layers: trained at the full learning rate


def fit_tail(run: FitInputs) -> Fitted:
    """Train the tail (see the module docstring) and return the model with the averaged weights of the soup."""
    config = run.config
    model = architectures.build(
        config.architecture, input_size=run.train_data.input_size, num_classes=len(run.train_data.classes)
    )
    trunk, tail = _split(model, config.fine_tune_from)
    int8_calibration = run.calibration if config.quantized_trunk else None
    trunk_step = _trunk_runner(trunk, int8_calibration, run.events)
    cache = _cache_activations(run, trunk_step)
    trainer = _TailTrainer(run, tail, cache)
    history, per_member = trainer.train_soup()
    soup_logs = trainer.held_out_logs()
    return Fitted(
        model=model,
        history=history,
        best_epoch=per_member[0]["best_epoch"] - 1,
        hyperparameters=_describe(run, trainer, per_member, soup_logs, int8_calibration),
        predict_train=lambda indices: trainer.predict(cache.clean[indices]),
    )


def _split(model: keras.Model, fine_tune_from: str) -> tuple[keras.Model, keras.Model]:
    """(frozen trunk, trained tail) of ``model``, cut where block ``fine_tune_from`` starts; the two share the
    model's layers, so training the tail trains the model."""
    cut = architectures.trunk_cut(model, fine_tune_from)
    trunk = keras.Model(model.inputs, cut, name="trunk")
    tail = keras.Model(
        cut, [model.get_layer(architectures.LOGITS_LAYER).output, model.outputs[1]], name="tail"
    )
    for layer in tail.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False
    return trunk, tail


def _trunk_runner(
    trunk: keras.Model, int8_calibration: np.ndarray | None, events: TrainingEvents
) -> TrunkStep:
    """The trunk as the cache sees it: quantised to int8 on ``int8_calibration`` when given, else float32."""
    if int8_calibration is not None:
        events.stage("quantising the trunk (int8)")
        return tflite.FeatureRunner(quantize_int8(trunk, int8_calibration), threads=os.cpu_count() or 1)
    size = trunk.inputs[0].shape[1]
    float_step = tf.function(
        lambda x: trunk(x, training=False), input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32)]
    )
    return lambda x: float_step(tf.constant(x)).numpy()


@dataclass
class _ActivationCache:
    clean: np.ndarray  # (all training images, h, w, c) float16: the plain view of every image
    views: np.ndarray  # (views, fit images, h, w, c) float16: what the tail trains on


def _cache_activations(run: FitInputs, trunk_step: TrunkStep) -> _ActivationCache:
    """The trunk's activations of every training image (the held-out share and the catalogue need them) and of
    every view of the fit images: plain, mirrored and ``augment_views`` random crops (plain only without
    augmentation)."""
    config, events = run.config, run.events

    def activations(images: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [
                trunk_step(images[start : start + 64].astype(np.float32)).astype(np.float16)
                for start in range(0, len(images), 64)
            ]
        )

    fit_set = run.train_data.subset(run.fit_idx)
    n_views = _view_count(run)
    events.stage(f"caching trunk activations (view 1 of {n_views})")
    clean = activations(run.train_data.images)
    views = [clean[run.fit_idx]]
    if config.augment:
        events.stage(f"caching trunk activations (view 2 of {n_views})")
        views.append(activations(fit_set.images[:, :, ::-1]))
        for view in range(config.augment_views):
            events.stage(f"caching trunk activations (view {view + 3} of {n_views})")
            cached = np.empty_like(views[0])
            for start, batch in augmented_views(fit_set, view, seed=config.seed):
                cached[start : start + len(batch)] = activations(batch)
                if events.on_batch is not None:
                    events.on_batch(start + len(batch), len(fit_set))
            views.append(cached)
    return _ActivationCache(clean=clean, views=np.stack(views))


def _view_count(run: FitInputs) -> int:
    return 1 + (1 + run.config.augment_views if run.config.augment else 0)


class _TailTrainer:
    """The tail's training loop on cached activations: one optimizer pair per soup member, an exponential moving
    average of the weights (what is judged and kept), and the held-out share judging each epoch."""

    def __init__(self, run: FitInputs, tail: keras.Model, cache: _ActivationCache) -> None:
        self.run, self.config, self.tail, self.views = run, run.config, tail, cache.views
        labels = run.train_data.labels
        self.fit_labels, self.held_labels = labels[run.fit_idx], labels[run.held_idx]
        self.held_x = cache.clean[run.held_idx]
        self.num_classes = len(run.train_data.classes)
        self.embedding_dim = int(tail.outputs[1].shape[-1])
        self.class_weight = tf.constant([run.weights[i] for i in range(self.num_classes)], tf.float32)
        self.steps_per_epoch = max(1, -(-len(run.fit_idx) // self.config.batch_size))
        # The new layers (embedding, cosine classifier) learn at the full rate; the pretrained blocks at a fraction
        # of it, so that fine-tuning adapts ImageNet's features rather than overwriting them.
        self.variables = tail.trainable_variables
        self.head_vars = [v for v in self.variables if v.path.split("/")[0] in HEAD_LAYERS]
        self.body_vars = [v for v in self.variables if v.path.split("/")[0] not in HEAD_LAYERS]
        self.ordered = self.head_vars + self.body_vars
        self.averaged = [tf.Variable(v, trainable=False) for v in self.ordered]
        self.initial = [v.numpy() for v in self.ordered]
        self.predict_step = tf.function(lambda x: tail(tf.cast(x, tf.float32), training=False))

    def train_soup(self) -> tuple[dict[str, list[float]], list[dict[str, Any]]]:
        """Train every member, then keep their uniform average (a "model soup": one network, so serving costs the
        same); (history, per-member summary)."""
        history: dict[str, list[float]] = {}
        members: list[list[np.ndarray]] = []
        per_member: list[dict[str, Any]] = []
        for member in range(self.config.soup):
            weights, summary = self._train_member(member, history)
            members.append(weights)
            per_member.append(summary)
        self._assign([np.mean([weights[i] for weights in members], axis=0) for i in range(len(self.ordered))])
        return history, per_member

    def _train_member(
        self, member: int, history: dict[str, list[float]]
    ) -> tuple[list[np.ndarray], dict[str, Any]]:
        """One member's best averaged weights (lowest held-out loss) and its summary; its epochs go to ``history``
        (keys prefixed ``member<n>_`` after the first)."""
        config, events = self.config, self.run.events
        # Every member starts from the same weights (so their average is meaningful) with its own data order,
        # views and mixup draws.
        self._assign(self.initial)
        for average, value in zip(self.averaged, self.initial, strict=True):
            average.assign(value)
        train_step = self._make_train_step()
        rng = np.random.default_rng([config.seed, member])
        prefix = f"member{member + 1}_" if member else ""
        best_loss, best_epoch, best_weights = float("inf"), 0, None
        events.stage(
            "training" if config.soup == 1 else f"training (soup member {member + 1} of {config.soup})"
        )
        events.member(member + 1, config.soup)
        for epoch in range(config.epochs):
            logs = self._train_epoch(train_step, rng)
            # The held-out share judges the averaged weights (what would be kept); then training resumes.
            current = [v.numpy() for v in self.ordered]
            self._assign([a.numpy() for a in self.averaged])
            logs.update(self.held_out_logs())
            for key, value in logs.items():
                history.setdefault(prefix + key, []).append(value)
            held_loss = logs.get("val_loss")
            if held_loss is None or held_loss <= best_loss:
                best_loss = held_loss if held_loss is not None else best_loss
                best_epoch, best_weights = epoch, [v.numpy() for v in self.ordered]
            self._assign(current)
            if events.on_epoch is not None:
                events.on_epoch(epoch + 1, config.epochs, logs)
        summary = {
            "best_epoch": best_epoch + 1,
            **({"held_out_loss": round(best_loss, 5)} if len(self.run.held_idx) else {}),
        }
        return (best_weights if best_weights is not None else [v.numpy() for v in self.ordered]), summary

    def _train_epoch(
        self, train_step: Callable[..., tuple[tf.Tensor, tf.Tensor]], rng: np.random.Generator
    ) -> dict[str, float]:
        """One pass over the fit images, each on a randomly drawn cached view; the epoch's training loss and
        accuracy."""
        batch_size, mixup, on_batch = self.config.batch_size, self.config.mixup, self.run.events.on_batch
        order = rng.permutation(len(self.run.fit_idx))
        chosen_view = rng.integers(0, len(self.views), len(order))
        loss_sum = correct = 0.0
        for step_index, start in enumerate(range(0, len(order), batch_size), start=1):
            rows, picks = order[start : start + batch_size], chosen_view[start : start + batch_size]
            mix = float(rng.beta(mixup, mixup)) if mixup > 0 else 1.0
            partner = rng.permutation(len(rows))
            loss, hits = train_step(
                tf.constant(self.views[picks, rows]),
                tf.constant(self.fit_labels[rows]),
                tf.constant(mix, tf.float32),
                tf.constant(partner),
            )
            loss_sum += float(loss) * len(rows)
            correct += float(hits)
            if on_batch is not None:
                on_batch(step_index, self.steps_per_epoch)
        return {"loss": loss_sum / len(order), "accuracy": correct / len(order)}

    def _make_train_step(self) -> Callable[..., tuple[tf.Tensor, tf.Tensor]]:
        """A fresh optimizer pair (and the step that uses them) for one soup member."""
        config, num_classes, class_weight, tail = self.config, self.num_classes, self.class_weight, self.tail
        smoothing, ema_decay = config.label_smoothing, config.ema_decay
        head_vars, body_vars, ordered, averaged = self.head_vars, self.body_vars, self.ordered, self.averaged
        head_optimizer = self._optimizer(config.learning_rate, head_vars)
        body_optimizer = (
            self._optimizer(config.learning_rate * config.body_lr_factor, body_vars) if body_vars else None
        )

        @tf.function
        def train_step(
            x: tf.Tensor, y: tf.Tensor, mix: tf.Tensor, partner: tf.Tensor
        ) -> tuple[tf.Tensor, tf.Tensor]:
            # Mixup on the cached activations ("manifold mixup"): each example blended with a partner from the
            # batch, targets (smoothed) and class weights blended alike; mix = 1 turns it off.
            x = tf.cast(x, tf.float32)
            targets = tf.one_hot(y, num_classes) * (1.0 - smoothing) + smoothing / num_classes
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

    def _optimizer(self, peak: float, trained: list[Any]) -> keras.optimizers.Optimizer:
        """AdamW with a linear warm-up over 5% of the steps to ``peak``, then cosine decay to 1% of it."""
        total_steps = self.steps_per_epoch * self.config.epochs
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0, total_steps, alpha=0.01, warmup_target=peak, warmup_steps=max(1, total_steps // 20)
        )
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=self.config.weight_decay)
        optimizer.build(trained)
        return optimizer

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, raw embeddings) of the tail on cached activations, with its current weights."""
        if not len(x):
            return np.zeros((0, self.num_classes), np.float32), np.zeros((0, self.embedding_dim), np.float32)
        logits, embeddings = [], []
        for start in range(0, len(x), 256):
            lg, e = self.predict_step(x[start : start + 256])
            logits.append(lg.numpy())
            embeddings.append(e.numpy())
        probabilities = evaluation.softmax(np.concatenate(logits).astype(np.float64)).astype(np.float32)
        return probabilities, np.concatenate(embeddings)

    def held_out_logs(self) -> dict[str, float]:
        """Loss (smoothed, class-weighted, as trained) and accuracy on the held-out share; empty without one."""
        if not len(self.held_labels):
            return {}
        held_p, _ = self.predict(self.held_x)
        labels, smoothing = self.held_labels, self.config.label_smoothing
        weights_held = np.asarray([self.run.weights[int(c)] for c in labels])
        smoothed = np.full(held_p.shape, smoothing / self.num_classes)
        smoothed[np.arange(len(labels)), labels] += 1.0 - smoothing
        per_example = -(smoothed * np.log(np.maximum(held_p, 1e-12))).sum(axis=1)
        return {
            "val_loss": float((per_example * weights_held).sum() / weights_held.sum()),
            "val_accuracy": float((held_p.argmax(axis=1) == labels).mean()),
        }

    def _assign(self, values: list[np.ndarray]) -> None:
        for variable, value in zip(self.ordered, values, strict=True):
            variable.assign(value)


def _describe(
    run: FitInputs,
    trainer: _TailTrainer,
    per_member: list[dict[str, Any]],
    soup_logs: dict[str, float],
    int8_calibration: np.ndarray | None,
) -> dict[str, Any]:
    """The recipe's entries in the card's ``hyperparameters``."""
    c = run.config
    return {
        "optimizer": f"AdamW (weight decay {c.weight_decay:g}); pretrained blocks at {c.body_lr_factor:g} x the "
        "learning rate of the new layers",
        "schedule": "linear warm-up over 5% of the steps, then cosine decay to 1%",
        "loss": f"cross-entropy, label smoothing {c.label_smoothing:g}, class-weighted",
        "mixup": f"on the cached activations, mixing weight ~ Beta({c.mixup:g}, {c.mixup:g}) per batch"
        if c.mixup > 0
        else "none",
        "weight_averaging": f"exponential moving average of the weights (decay {c.ema_decay:g} per step); the "
        "averaged weights are the ones judged and kept",
        "soup": {
            "members": c.soup,
            "how": "members trained from the same start with different data orders, views and mixup draws; "
            "their weights averaged uniformly"
            if c.soup > 1
            else "one member (no averaging)",
            "per_member": per_member,
            **(
                {
                    "held_out_loss": round(soup_logs["val_loss"], 5),
                    "held_out_accuracy": round(soup_logs["val_accuracy"], 4),
                }
                if soup_logs
                else {}
            ),
        },
        "fine_tune_from": c.fine_tune_from,
        "trunk_activations": f"the int8 trunk of the serving copy (calibrated on {len(int8_calibration)} "
        "training images): the tail learned on the features it is served"
        if int8_calibration is not None
        else "the float32 trunk",
        "frozen": f"input normalisation, stem and every block before {c.fine_tune_from} (ImageNet weights); "
        "all batch-norm statistics",
        "trainable_parameters": int(sum(int(np.prod(v.shape)) for v in trainer.variables)),
        "head": "dropout 0.3, Dense 128 (embedding), cosine classifier (scale 16) on the normalised embedding",
        "augmentation": (
            f"cached trunk activations of {_view_count(run)} views per image: plain, mirrored, {c.augment_views} "
            "random crops (55-100% area, aspect 3:4-4:3) with flip and brightness/contrast/saturation +-20%; "
            "one view drawn per image and epoch"
            if c.augment
            else "none (plain images only)"
        ),
    }
