"""The gate, on constructed gold-set metrics (pure: the decision follows from the figures alone), and the gold-set
metrics themselves on hand-counted predictions."""

import numpy as np
import pytest

from catalogue.services.training_gate import gold_metrics, training_gate

FIVE = ["drawings", "engraving", "iconography", "painting", "sculpture"]


def metrics(accuracy, recalls, support=10):
    """Gold metrics with the given accuracy and per-type recalls (``support`` gold works of each type)."""
    return {
        "accuracy": accuracy,
        "macro_f1": accuracy,
        "per_type": {slug: {"recall": r, "support": support} for slug, r in recalls.items()},
    }


def same(value):
    return dict.fromkeys(FIVE, value)


def gate(new, active, new_classes=FIVE, active_classes=FIVE):
    return training_gate(new=new, active=active, new_classes=new_classes, active_classes=active_classes)


def test_a_better_version_is_offered():
    decision = gate(metrics(0.93, same(0.93)), metrics(0.91, same(0.91)))
    assert decision.offered is True
    assert all(check.passed for check in decision.checks)
    assert decision.compared == FIVE


def test_a_tie_is_offered():
    assert gate(metrics(0.9, same(0.9)), metrics(0.9, same(0.9))).offered is True


def test_lower_accuracy_is_refused():
    decision = gate(metrics(0.899, same(0.9)), metrics(0.9, same(0.9)))
    assert decision.offered is False
    assert "accuracy 0.899 against 0.900" in decision.reason


def test_a_recall_falling_more_than_two_points_is_refused_even_with_better_accuracy():
    new = metrics(0.95, {**same(0.95), "drawings": 0.77})
    decision = gate(new, metrics(0.9, {**same(0.9), "drawings": 0.80}))
    assert decision.offered is False
    assert "drawings recall 0.770 against 0.800 (falls 3.0 points" in decision.reason
    failed = [c.name for c in decision.checks if not c.passed]
    assert failed == ["recall drawings"]


def test_a_fall_of_exactly_two_points_is_allowed():
    # 0.90 -> 0.88 is 0.020000000000000018 in floating point: still "not more than 2 points".
    new = metrics(0.95, {**same(0.95), "painting": 0.88})
    assert gate(new, metrics(0.9, {**same(0.9), "painting": 0.90})).offered is True


def test_types_the_active_version_does_not_know_are_compared_as_new():
    six = [*FIVE, "textile"]
    new = metrics(0.9, {**same(0.9), "textile": 0.0}, support=10)
    decision = gate(new, metrics(0.85, same(0.9)), new_classes=six)
    assert decision.offered is True  # textile's recall is not held against it
    assert decision.new_types == ["textile"] and "textile" not in decision.compared


def test_a_type_the_new_version_drops_counts_as_a_fall():
    new = metrics(0.95, {**same(0.95), "sculpture": 0.0})
    decision = gate(new, metrics(0.9, same(0.9)), new_classes=FIVE[:4])
    assert decision.offered is False and "sculpture recall 0.000 against 0.900" in decision.reason


def test_too_few_gold_works_is_refused_and_says_why():
    new, active = metrics(0.99, same(0.99)), metrics(0.5, same(0.5))
    new["per_type"]["engraving"]["support"] = 4
    decision = gate(new, active)
    assert decision.offered is False
    assert "too few gold works" in decision.reason and "engraving 4" in decision.reason
    assert "need 5" in decision.reason


def test_no_active_version_is_offered():
    decision = gate(metrics(0.5, same(0.5)), None, active_classes=())
    assert decision.offered is True and "No active version" in decision.reason


def test_gold_metrics_on_hand_counted_predictions():
    classes = ["a", "b", "c"]
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 0, 0, 1, 1, 1, 2, 0])
    m = gold_metrics(labels, predicted, classes)
    assert m["n"] == 8 and m["accuracy"] == pytest.approx(6 / 8)
    assert m["per_type"]["a"]["recall"] == pytest.approx(3 / 4)
    assert m["per_type"]["b"]["recall"] == pytest.approx(1.0)
    assert m["per_type"]["c"]["recall"] == pytest.approx(1 / 2)
    assert m["confusion"] == [[3, 1, 0], [0, 2, 0], [1, 0, 1]]
    # F1: a (p 3/4, r 3/4) 0.75; b (p 2/3, r 1) 0.8; c (p 1, r 1/2) 2/3.
    assert m["macro_f1"] == pytest.approx((0.75 + 0.8 + 2 / 3) / 3)
