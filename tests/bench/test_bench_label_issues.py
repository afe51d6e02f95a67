"""The label-issue benchmark's own arithmetic: the planted flips and the figures it prints from a detection."""

from __future__ import annotations

import numpy as np
import pytest

from bench.label_issues import Timed, labels_flip, noise_figures
from inference.label_quality import Detection


def test_flips_change_exactly_the_share_asked_to_another_class_and_are_seeded() -> None:
    labels = np.repeat(np.arange(5), 40)

    noisy, flipped = labels_flip(labels, 0.05, num_classes=5, seed=3)

    assert len(flipped) == 10 == len(np.unique(flipped))
    assert np.all(noisy[flipped] != labels[flipped])
    assert np.array_equal(np.flatnonzero(noisy != labels), flipped)
    assert noisy.min() >= 0 and noisy.max() < 5
    again, _ = labels_flip(labels, 0.05, num_classes=5, seed=3)
    assert np.array_equal(again, noisy)


def test_figures_count_hits_and_leave_out_what_was_doubted_before_flipping() -> None:
    # 10 works; 0, 1, 2, 3 flipped. Flagged: 0, 1 (hits), 5 (doubted before flipping too), 6 (a new false alarm).
    flagged = np.zeros(10, bool)
    flagged[[0, 1, 5, 6]] = True
    before = np.zeros(10, bool)
    before[[1, 5]] = True  # 1 is flipped, so it still counts as found
    quality = np.asarray([0.1, 0.5, 0.2, 0.9, 0.8, 0.05, 0.7, 0.6, 0.95, 0.99])
    detection = Detection(np.full((10, 2), 0.5), flagged, quality)

    figures = noise_figures(Timed(detection, 1.5), np.asarray([0, 1, 2, 3]), before)

    assert figures["recall"] == pytest.approx(2 / 4)
    assert figures["precision"] == pytest.approx(2 / 4)
    assert figures["precision_new"] == pytest.approx(2 / 3)  # without work 5
    assert figures["top_k"] == pytest.approx(3 / 4)  # the 4 lowest: 5, 0, 2, 1
    assert figures["seconds"] == 1.5
