"""The mislabel detector's arrays: out-of-fold probabilities never come from a model that saw the row, confident
learning flags a planted wrong label (and never a verified one), and the frozen features behave."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.neighbors import KNeighborsClassifier

from inference.label_quality import (
    DEFAULT_METHOD,
    FeatureExtractor,
    FeatureSpec,
    ProbeSpec,
    detect,
    label_issues,
    make_probe,
    out_of_fold_probabilities,
)


class RowRecorder(BaseEstimator, ClassifierMixin):
    """Fits nothing; remembers which rows (column 0 holds the row number) it was fitted on and asked about."""

    def __init__(self, log: list[dict[str, set[int]]]) -> None:
        self.log = log

    def fit(self, features: np.ndarray, labels: np.ndarray) -> RowRecorder:
        self.classes_ = np.unique(labels)
        self.entry_ = {"fit": {int(r) for r in features[:, 0]}, "scored": set()}
        self.log.append(self.entry_)
        return self

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        self.entry_["scored"] |= {int(r) for r in features[:, 0]}
        return np.full((len(features), len(self.classes_)), 1 / len(self.classes_))


def test_no_fold_model_scores_a_row_it_was_fitted_on() -> None:
    labels = np.repeat([0, 1, 2], [12, 9, 7])
    features = np.column_stack([np.arange(len(labels)), np.zeros(len(labels))])
    log: list[dict[str, set[int]]] = []

    out_of_fold_probabilities(features, labels, folds=4, seed=3, model=lambda rows: RowRecorder(log))

    assert len(log) == 4
    everything = set(range(len(labels)))
    for fold in log:
        assert fold["fit"].isdisjoint(fold["scored"])
        assert fold["fit"] | fold["scored"] == everything
    scored = [row for fold in log for row in fold["scored"]]
    assert sorted(scored) == sorted(everything)  # every row scored exactly once


def test_rows_left_out_of_fitting_are_still_scored() -> None:
    labels = np.repeat([0, 1], 10)
    features = np.column_stack([np.arange(20), np.zeros(20)])
    fit_on = np.ones(20, dtype=bool)
    fit_on[[2, 13]] = False
    log: list[dict[str, set[int]]] = []

    probabilities = out_of_fold_probabilities(
        features, labels, folds=5, seed=0, model=lambda rows: RowRecorder(log), fit_on=fit_on
    )

    assert all(fold["fit"].isdisjoint({2, 13}) for fold in log)
    assert set().union(*(fold["scored"] for fold in log)) == set(range(20))
    assert probabilities[[2, 13]].sum(axis=1) == pytest.approx([1.0, 1.0])


def test_a_memorising_model_gives_nothing_away() -> None:
    # Random labels on random features: a 1-nearest-neighbour model knows its training rows by heart (probability 1
    # for their label) but can only guess on rows it has not seen.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=200)
    features = rng.normal(size=(200, 8))
    memoriser = KNeighborsClassifier(n_neighbors=1).fit(features, labels)
    assert memoriser.predict_proba(features)[np.arange(200), labels].mean() == 1.0

    probabilities = out_of_fold_probabilities(
        features, labels, folds=5, seed=0, model=lambda rows: KNeighborsClassifier(n_neighbors=1)
    )

    assert 0.35 < probabilities[np.arange(200), labels].mean() < 0.65


def _clusters(per_class: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated clusters in 6 dimensions; the label is the cluster."""
    rng = np.random.default_rng(seed)
    centres = np.eye(3, 6) * 6
    labels = np.repeat([0, 1, 2], per_class)
    return centres[labels] + rng.normal(size=(len(labels), 6)), labels


@pytest.mark.parametrize("probe", [ProbeSpec(), ProbeSpec(alpha=0.48), DEFAULT_METHOD.probe])
def test_a_planted_wrong_label_is_flagged_and_ranked_first(probe: ProbeSpec) -> None:
    features, labels = _clusters()
    noisy = labels.copy()
    noisy[7] = 2  # a cluster-0 row labelled 2

    probabilities = out_of_fold_probabilities(
        features, noisy, seed=1, model=lambda rows: make_probe(rows, probe)
    )
    flagged, quality = label_issues(noisy, probabilities)

    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    assert probabilities[7].argmax() == 0
    assert flagged[7]
    assert flagged.sum() == 1
    assert quality.argmin() == 7


def test_the_product_method_in_two_rounds_still_finds_the_planted_label() -> None:
    features, labels = _clusters()
    noisy = labels.copy()
    noisy[7] = 2

    detection = detect(features, noisy, method=replace(DEFAULT_METHOD, rounds=2), num_classes=3)

    assert np.flatnonzero(detection.flagged).tolist() == [7]
    assert detection.probabilities.shape == (60, 3)


def test_a_verified_label_is_never_flagged_but_still_scored() -> None:
    features, labels = _clusters(per_class=60)
    noisy = labels.copy()
    noisy[[7, 70]] = [2, 0]  # two planted errors; a curator verified the first one (wrongly, as it happens)
    verified = np.zeros(len(noisy), dtype=bool)
    verified[7] = True

    unguarded = detect(features, noisy, method=DEFAULT_METHOD, seed=1)
    guarded = detect(features, noisy, method=DEFAULT_METHOD, never_flag=verified, seed=1)

    assert np.flatnonzero(unguarded.flagged).tolist() == [7, 70]
    assert np.flatnonzero(guarded.flagged).tolist() == [70]
    assert set(np.argsort(guarded.quality)[:2]) == {7, 70}


def test_a_class_too_small_to_split_is_refused() -> None:
    features, labels = _clusters()
    labels[:17] = 1  # class 0 keeps 3 rows
    with pytest.raises(ValueError, match="fewer than 5 rows"):
        out_of_fold_probabilities(features, labels, folds=5)


def test_mismatched_shapes_are_refused() -> None:
    features, labels = _clusters()
    with pytest.raises(ValueError, match="do not match"):
        out_of_fold_probabilities(features[:-1], labels)
    with pytest.raises(ValueError, match="do not match"):
        label_issues(labels, np.full((3, 3), 1 / 3))


def test_frozen_features_of_mirrored_views_ignore_left_and_right() -> None:
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, size=(2, 48, 64, 3), dtype=np.uint8)
    pixels[1, :, :32] = 30  # a dark left half: not symmetric
    images = [Image.fromarray(p) for p in pixels]
    flipped = [image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for image in images]
    spec = FeatureSpec(backbones=(("lite0", 96),), layers=("top", "stage6"), mirrored=True)
    extractor = FeatureExtractor(spec, batch_size=4)

    features = extractor(images)
    plain = FeatureExtractor(FeatureSpec(backbones=(("lite0", 96),)), batch_size=4)(images)

    assert features.shape == (2, 1280 + 192)
    assert features.dtype == np.float32
    np.testing.assert_allclose(extractor(flipped), features, atol=1e-4)
    assert np.abs(plain - features[:, :1280]).max() > 1e-3  # a single view does depend on the side
    assert spec.name == "imagenet:lite0@96:top+stage6:mirrored"


def test_unknown_feature_layer_is_refused() -> None:
    extractor = FeatureExtractor(FeatureSpec(backbones=(("lite0", 96),), layers=("stage9",)))
    with pytest.raises(ValueError, match="Unknown feature layer"):
        extractor([Image.new("RGB", (32, 32))])
