"""Doubtful labels in a labelled image collection: frozen ImageNet features, out-of-fold probabilities, confident
learning (arrays in, arrays out; the catalogue's side is ``catalogue.services.label_checks``).

Three steps:

1. :class:`FeatureExtractor`: features of the ImageNet EfficientNet-Lite backbones shipped in
   ``inference/weights/backbones/``. They were never trained on the catalogue's labels, which matters: features
   fitted to these very labels (the shipped classifier's trunk or its 128-d embedding) have learned the label
   errors too, and agree with them. Images go through the one preprocessing path (:func:`decode_for_features`
   and :func:`~inference.preprocessing.to_model_input`).
2. :func:`out_of_fold_probabilities`: stratified k-fold; each row's probabilities come from a cheap probe (a
   scikit-learn model on the cached features) that never saw that row.
3. :func:`label_issues`: cleanlab's confident learning (``find_label_issues``) flags the labels the out-of-fold
   probabilities doubt, and ``get_label_quality_scores`` ranks every label from 0 (surely wrong) to 1.

What each choice measured on the art-images training set (random flips planted by ``make bench-label-issues``) is
in ``docs/label-quality.md``. TensorFlow is imported only when features are extracted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from PIL import Image

from inference.preprocessing import decode_image, to_model_input

__all__ = [
    "DEFAULT_FEATURES",
    "DEFAULT_ISSUES",
    "DEFAULT_METHOD",
    "DEFAULT_PROBE",
    "BackbonePass",
    "FeatureExtractor",
    "FeatureSpec",
    "Features",
    "IssueSpec",
    "Method",
    "ProbeSpec",
    "Detection",
    "decode_for_features",
    "detect",
    "label_issues",
    "make_probe",
    "out_of_fold_probabilities",
]

#: The pooled layer at the end of the network (the 1280-d features every EfficientNet head sits on).
TOP = "top"


@dataclass(frozen=True)
class BackbonePass:
    """One forward pass of one frozen backbone over every image: which network, at which input size, mirrored or
    not. The unit that callers may cache (:meth:`FeatureExtractor.pass_features`)."""

    variant: str
    size: int
    mirrored: bool

    @property
    def key(self) -> str:
        return f"{self.variant}@{self.size}{'-mirrored' if self.mirrored else ''}"


@dataclass(frozen=True)
class FeatureSpec:
    """Which frozen features describe an image.

    ``backbones``: (EfficientNet-Lite variant, input size) pairs, concatenated. ``layers``: average-pooled outputs
    to take from each, ``"top"`` (the 1280-d head) or ``"stage<N>"`` (the last block of stage N, 1-7), concatenated.
    ``mirrored``: average each image's features with its left-right mirror's (the types do not depend on it).
    """

    backbones: tuple[tuple[str, int], ...] = (("lite0", 224),)
    layers: tuple[str, ...] = (TOP,)
    mirrored: bool = False

    @property
    def name(self) -> str:
        """Identifies the features: cached features are reused only under the same name."""
        nets = "+".join(f"{variant}@{size}" for variant, size in self.backbones)
        return f"imagenet:{nets}:{'+'.join(self.layers)}{':mirrored' if self.mirrored else ''}"

    def passes(self) -> list[BackbonePass]:
        views = (False, True) if self.mirrored else (False,)
        return [
            BackbonePass(variant, size, mirrored) for variant, size in self.backbones for mirrored in views
        ]

    def combine(self, parts: Mapping[str, Mapping[str, np.ndarray]]) -> np.ndarray:
        """The feature matrix from each pass's pooled layers (``parts[pass.key][layer]``, each ``(n, d)``): the
        views of a backbone averaged, then every backbone's layers side by side."""
        blocks: list[np.ndarray] = []
        for variant, size in self.backbones:
            views = [parts[p.key] for p in self.passes() if (p.variant, p.size) == (variant, size)]
            for layer in self.layers:
                blocks.append(np.mean([view[layer] for view in views], axis=0))
        return np.concatenate(blocks, axis=1).astype(np.float32)


class Features(Protocol):
    """What turns decoded images into feature vectors (:class:`FeatureExtractor`, or a stand-in in tests)."""

    @property
    def name(self) -> str: ...

    def __call__(self, images: Sequence[Image.Image]) -> np.ndarray: ...


def decode_for_features(data: bytes, *, size: int = 240) -> Image.Image:
    """An image file's decoded RGB image, as the feature extractor sees it (the shared decoder; large JPEGs are
    decoded at a reduced scale that still covers ``size``, the largest backbone input)."""
    return decode_image(data, draft=size).image


class FeatureExtractor:
    """Frozen ImageNet EfficientNet-Lite features of decoded images (:class:`FeatureSpec`); thread-safe, each
    backbone built once per extractor. Nothing is downloaded: the weights ship in the repository."""

    def __init__(self, spec: FeatureSpec | None = None, *, batch_size: int = 32) -> None:
        self.spec = spec or DEFAULT_FEATURES
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._networks: dict[tuple[str, int], Callable[[np.ndarray], dict[str, np.ndarray]]] = {}

    @property
    def name(self) -> str:
        return self.spec.name

    def __call__(self, images: Sequence[Image.Image]) -> np.ndarray:
        """``(len(images), d)`` float32 features."""
        return self.spec.combine({p.key: self.pass_features(images, p) for p in self.spec.passes()})

    def pass_features(
        self, images: Sequence[Image.Image], backbone_pass: BackbonePass
    ) -> dict[str, np.ndarray]:
        """Every layer of :attr:`spec` average-pooled, ``{layer: (n, d)}``, for one pass over ``images``."""
        network = self._network(backbone_pass.variant, backbone_pass.size)
        chunks: list[dict[str, np.ndarray]] = []
        for start in range(0, len(images), self.batch_size):
            batch = np.stack(
                [
                    to_model_input(image, backbone_pass.size)
                    for image in images[start : start + self.batch_size]
                ]
            )
            if backbone_pass.mirrored:
                batch = batch[:, :, ::-1, :]
            chunks.append(network(batch))
        if not chunks:
            return {layer: np.zeros((0, 0), np.float32) for layer in self.spec.layers}
        return {layer: np.concatenate([chunk[layer] for chunk in chunks]) for layer in self.spec.layers}

    def _network(self, variant: str, size: int) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
        with self._lock:
            if (variant, size) not in self._networks:
                self._networks[(variant, size)] = _pooled_backbone(
                    variant, size, self.spec.layers, self.batch_size
                )
            return self._networks[(variant, size)]


def _stage_output(variant: str, layer: str) -> str:
    """The Keras layer name of ``"top"`` or ``"stage<N>"`` (the output of stage N's last block)."""
    from inference.efficientnet_lite import efficientnet_lite_block_specs  # noqa: PLC0415  # Keras: extraction only

    if layer == TOP:
        return "top_activation"
    specs = [s for s in efficientnet_lite_block_specs(variant) if s.name.startswith(f"block{layer[-1]}")]
    if not layer.startswith("stage") or not specs:
        raise ValueError(f"Unknown feature layer {layer!r}: use 'top' or 'stage1' ... 'stage7'.")
    last = specs[-1]
    return f"{last.name}_add" if last.has_residual else f"{last.name}_project_bn"


def _pooled_backbone(
    variant: str, size: int, layers: Sequence[str], batch_size: int
) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """The ImageNet backbone as one function: ``(n, size, size, 3)`` pixels -> ``{layer: (n, channels)}``."""
    import keras  # noqa: PLC0415  # TensorFlow only where features are extracted; the web process never is
    import tensorflow as tf  # noqa: PLC0415  # (same reason)

    from inference.efficientnet_lite import build_efficientnet_lite0  # noqa: PLC0415  # imports Keras

    trunk = build_efficientnet_lite0((size, size, 3), weights="imagenet", pooling=None, variant=variant)
    outputs = [
        keras.layers.GlobalAveragePooling2D()(trunk.get_layer(_stage_output(variant, layer)).output)
        for layer in layers
    ]
    model = keras.Model(trunk.inputs, outputs)

    @tf.function(input_signature=[tf.TensorSpec((batch_size, size, size, 3), tf.float32)])
    def forward(pixels: tf.Tensor) -> list[tf.Tensor]:
        return model(pixels, training=False)

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        n = len(batch)
        # One fixed batch shape: the function is traced once, whatever the size of the last batch.
        padded = np.zeros((batch_size, size, size, 3), np.float32)
        padded[:n] = batch
        pooled = forward(tf.constant(padded))
        if not isinstance(pooled, list | tuple):  # a model with one output returns it bare
            pooled = [pooled]
        return {layer: np.asarray(out)[:n] for layer, out in zip(layers, pooled, strict=True)}

    return run


# --- Out-of-fold probabilities ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeSpec:
    """The cheap model each fold fits on the features: an L2-regularised logistic regression on standardised
    features, optionally averaged with a cosine k-nearest-neighbour vote (``knn`` neighbours, weight
    ``knn_weight``).

    ``alpha`` is the L2 strength per training row: scikit-learn's ``C`` is ``1 / (alpha * rows)``, so the probe
    regularises a catalogue of a hundred labelled works as much as one of ten thousand (a fixed ``C`` weakens as
    the rows grow). On the art-images training set's folds (2,080 rows), ``alpha=0.48`` is ``C=0.001``.
    """

    alpha: float = 0.048
    knn: int = 0
    knn_weight: float = 0.5
    max_iter: int = 2000

    def describe(self) -> dict[str, Any]:
        return {
            "logistic_alpha": self.alpha,
            "knn": self.knn,
            "knn_weight": self.knn_weight if self.knn else 0.0,
        }


def make_probe(rows: int, spec: ProbeSpec | None = None) -> Any:
    """A fresh, unfitted scikit-learn classifier as ``spec`` describes, for ``rows`` training rows."""
    # scikit-learn and cleanlab take seconds to import: loaded where a check runs, not in every process that
    # imports this module (the web process only reads DEFAULT_METHOD).
    from sklearn.ensemble import VotingClassifier  # noqa: PLC0415  # (see above)
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
    from sklearn.neighbors import KNeighborsClassifier  # noqa: PLC0415
    from sklearn.pipeline import make_pipeline  # noqa: PLC0415
    from sklearn.preprocessing import Normalizer, StandardScaler  # noqa: PLC0415

    spec = spec or DEFAULT_PROBE
    strength = 1.0 / (spec.alpha * max(rows, 1))
    logistic = make_pipeline(StandardScaler(), LogisticRegression(C=strength, max_iter=spec.max_iter))
    if not spec.knn:
        return logistic
    neighbours = max(1, min(spec.knn, rows))
    knn = make_pipeline(Normalizer(), KNeighborsClassifier(n_neighbors=neighbours, weights="distance"))
    return VotingClassifier(
        [("logistic", logistic), ("knn", knn)],
        voting="soft",
        weights=[1.0 - spec.knn_weight, spec.knn_weight],
    )


def out_of_fold_probabilities(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    folds: int = 5,
    seed: int = 0,
    model: Callable[[int], Any] | None = None,
    num_classes: int | None = None,
    fit_on: np.ndarray | None = None,
) -> np.ndarray:
    """``(n, k)`` probabilities of each class for each row, each row's from a model fitted on the other folds only.

    Stratified k-fold (shuffled with ``seed``); ``model(rows)`` makes a fresh scikit-learn classifier per fold for
    that many training rows (default: :func:`make_probe`). ``k`` is ``num_classes`` or ``labels.max() + 1``; a class a fold's model never saw gets 0.
    Every class needs at least ``folds`` rows (else a fold could miss it entirely): ``ValueError`` otherwise.
    ``fit_on`` (bool, ``(n,)``): only these rows are ever fitted on; the others are still scored.
    """
    features = np.asarray(features, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    if features.ndim != 2 or len(features) != len(labels):
        raise ValueError(f"features {features.shape} and labels {labels.shape} do not match")
    k = num_classes or int(labels.max()) + 1
    counts = np.bincount(labels, minlength=k)
    too_few = [int(c) for c in np.flatnonzero((counts > 0) & (counts < folds))]
    if too_few:
        raise ValueError(
            f"classes {too_few} have fewer than {folds} rows; {folds}-fold needs at least {folds} each"
        )
    from sklearn.model_selection import StratifiedKFold  # noqa: PLC0415  # slow to import (see make_probe)
    from threadpoolctl import threadpool_limits  # noqa: PLC0415  # comes with scikit-learn (same reason)

    factory = model or make_probe
    probabilities = np.zeros((len(labels), k), dtype=np.float64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    # One BLAS/OpenMP thread: these matrices are small, and on a busy machine (a worker beside others) OpenBLAS's
    # spinning threads made each fit 15-20x slower (measured: 7 s against 0.45 s per fit; docs/label-quality.md).
    usable = np.ones(len(labels), dtype=bool) if fit_on is None else np.asarray(fit_on, dtype=bool)
    with threadpool_limits(limits=1):
        for train, held_out in splitter.split(features, labels):
            train = train[usable[train]]
            fitted = factory(len(train)).fit(features[train], labels[train])
            columns = np.asarray(fitted.classes_, dtype=np.int64)
            probabilities[np.ix_(held_out, columns)] = fitted.predict_proba(features[held_out])
    return probabilities


# --- Confident learning -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssueSpec:
    """cleanlab's settings: how ``find_label_issues`` prunes (``filter_by``) and how labels are scored
    (``get_label_quality_scores``' ``method``)."""

    filter_by: str = "prune_by_noise_rate"
    quality: str = "self_confidence"
    adjust: bool = False

    def describe(self) -> dict[str, Any]:
        return {"filter_by": self.filter_by, "quality": self.quality, "adjust_pred_probs": self.adjust}


def label_issues(
    labels: np.ndarray,
    probabilities: np.ndarray,
    *,
    spec: IssueSpec | None = None,
    never_flag: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(flagged, quality)``: which labels confident learning doubts (bool, ``(n,)``) and each label's quality
    score (0 surely wrong, 1 surely right; sort ascending for the most doubtful first).

    ``probabilities`` must be out-of-fold (:func:`out_of_fold_probabilities`). Rows where ``never_flag`` is true
    (labels a curator verified) still count in the estimate of the noise, but are never flagged.
    """
    from cleanlab.filter import find_label_issues  # noqa: PLC0415  # slow to import (see make_probe)
    from cleanlab.rank import get_label_quality_scores  # noqa: PLC0415

    spec = spec or DEFAULT_ISSUES
    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or len(probabilities) != len(labels):
        raise ValueError(f"probabilities {probabilities.shape} and labels {labels.shape} do not match")
    # n_jobs=1: cleanlab would otherwise start a multiprocessing pool, unwelcome inside a Celery worker.
    flagged = find_label_issues(labels, probabilities, filter_by=spec.filter_by, n_jobs=1)
    quality = get_label_quality_scores(
        labels, probabilities, method=spec.quality, adjust_pred_probs=spec.adjust
    )
    if never_flag is not None:
        flagged = flagged & ~np.asarray(never_flag, dtype=bool)
    return np.asarray(flagged, dtype=bool), np.asarray(quality, dtype=np.float64)


@dataclass(frozen=True)
class Method:
    """The whole detector: features, probe, folds and cleanlab settings (what a label check records).

    ``rounds=2``: once the first round has flagged its doubtful labels, every fold's probe is fitted again without
    them and every row scored again (still out of fold), so that the labels the detector already doubts no longer
    teach the probes their errors. Verified labels are never left out.
    """

    features: FeatureSpec = field(default_factory=FeatureSpec)
    probe: ProbeSpec = field(default_factory=ProbeSpec)
    issues: IssueSpec = field(default_factory=IssueSpec)
    folds: int = 5
    rounds: int = 1

    def probe_factory(self, rows: int) -> Any:
        """A fresh probe for one fold (:func:`out_of_fold_probabilities`' ``model``)."""
        return make_probe(rows, self.probe)

    def describe(self) -> dict[str, Any]:
        return {
            "features": self.features.name,
            "probe": self.probe.describe(),
            "folds": self.folds,
            "rounds": self.rounds,
            "cleanlab": self.issues.describe(),
        }


@dataclass(frozen=True)
class Detection:
    """What the detector says of each row: out-of-fold probabilities ``(n, k)``, flagged ``(n,)`` and quality
    ``(n,)`` (:func:`label_issues`)."""

    probabilities: np.ndarray
    flagged: np.ndarray
    quality: np.ndarray


def detect(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    method: Method,
    num_classes: int | None = None,
    never_flag: np.ndarray | None = None,
    seed: int = 0,
) -> Detection:
    """The whole detector on one feature matrix: out-of-fold probabilities, then confident learning, in
    ``method.rounds`` rounds (see :class:`Method`)."""
    fit_on: np.ndarray | None = None
    for _ in range(max(1, method.rounds)):
        probabilities = out_of_fold_probabilities(
            features,
            labels,
            folds=method.folds,
            seed=seed,
            model=method.probe_factory,
            num_classes=num_classes,
            fit_on=fit_on,
        )
        flagged, quality = label_issues(labels, probabilities, spec=method.issues, never_flag=never_flag)
        fit_on = ~flagged
    return Detection(probabilities, flagged, quality)


# The product's choice, measured against simpler ones in docs/label-quality.md: both shipped ImageNet backbones,
# each image and its mirror, the head and stage 6 pooled; a strongly regularised logistic regression averaged with
# a 15-neighbour cosine vote; cleanlab pruning by class (as many flags as its default, more of the planted errors).
DEFAULT_FEATURES = FeatureSpec(
    backbones=(("lite0", 224), ("lite1", 240)), layers=(TOP, "stage6"), mirrored=True
)
DEFAULT_PROBE = ProbeSpec(alpha=0.48, knn=15, knn_weight=0.3)
DEFAULT_ISSUES = IssueSpec(filter_by="prune_by_class")
#: What label checks run (the measurements behind it: docs/label-quality.md).
DEFAULT_METHOD = Method(features=DEFAULT_FEATURES, probe=DEFAULT_PROBE, issues=DEFAULT_ISSUES)
