"""The gate a newly trained version passes before it is offered for activation. Pure: metrics in, a decision out.

Both versions are measured on the same gold images (:mod:`catalogue.selectors.training`), over the union of the
types they know: a version that does not know a type never predicts it, so its recall there is 0. The new version
is offered only if

* there is no active version to compare with, or
* every type the active version knows has at least :data:`MIN_GOLD_PER_TYPE` gold works (fewer would make a recall
  of 0.8 or 1.0 a matter of one image), and the new version's gold accuracy is not lower than the active one's, and
  no such type's recall falls by more than :data:`MAX_RECALL_DROP` (2 points).

Types only the new version knows are compared as *new*: their recall is shown, never held against it (the active
version has none to lose), and they need no minimum of gold works.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from inference.evaluation import confusion_matrix, per_type_metrics

MIN_GOLD_PER_TYPE = 5
MAX_RECALL_DROP = 0.02
# Recalls are ratios of small counts: a fall of exactly 2 points must not fail on a rounding error.
_TOLERANCE = 1e-9


def gold_metrics(labels: np.ndarray, predicted: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 (over the types present), per-type precision/recall/F1/support and the confusion matrix
    (rows: label, columns: prediction) of predictions on the gold set; ``labels`` and ``predicted`` index
    ``classes``."""
    labels = np.asarray(labels, np.int64)
    predicted = np.asarray(predicted, np.int64)
    matrix = confusion_matrix(labels, predicted, len(classes))
    per_type = per_type_metrics(matrix, classes)
    present = [slug for slug in classes if per_type[slug]["support"] > 0]
    return {
        "n": int(len(labels)),
        "accuracy": float((labels == predicted).mean()) if len(labels) else 0.0,
        "macro_f1": float(np.mean([per_type[s]["f1"] for s in present])) if present else 0.0,
        "per_type": per_type,
        "confusion": matrix.tolist(),
    }


@dataclass(frozen=True)
class GateCheck:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateDecision:
    """Whether the new version is offered for activation, and each check that decided it."""

    offered: bool
    reason: str
    checks: list[GateCheck] = field(default_factory=list)
    compared: list[str] = field(default_factory=list)  # types whose recall may not fall
    new_types: list[str] = field(default_factory=list)  # types only the new version knows

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "rule": f"gold accuracy not lower than the active version's, no recall of a type it knows falling by "
            f"more than {100 * MAX_RECALL_DROP:.0f} points, at least {MIN_GOLD_PER_TYPE} gold works of each",
        }


def training_gate(
    *,
    new: dict[str, Any],
    active: dict[str, Any] | None,
    new_classes: Sequence[str],
    active_classes: Sequence[str],
    min_per_type: int = MIN_GOLD_PER_TYPE,
    max_recall_drop: float = MAX_RECALL_DROP,
) -> GateDecision:
    """Decide from both versions' :func:`gold_metrics` on the same gold set (``active`` None: no active version)."""
    new_types = [slug for slug in new_classes if slug not in active_classes]
    if active is None:
        return GateDecision(
            offered=True, reason="No active version to compare with.", new_types=list(new_classes)
        )
    compared = list(active_classes)
    support = {slug: int(new["per_type"].get(slug, {}).get("support", 0)) for slug in compared}
    few = [f"{slug} {support[slug]}" for slug in compared if support[slug] < min_per_type]
    if few:
        detail = f"too few gold works to compare (need {min_per_type} of each type): {', '.join(few)}"
        return GateDecision(
            offered=False,
            reason=f"Not offered: {detail}. Verify more labels of these types.",
            checks=[GateCheck("gold set size", False, detail)],
            compared=compared,
            new_types=new_types,
        )
    checks = [_accuracy_check(new, active)]
    for slug in compared:
        checks.append(_recall_check(slug, new, active, max_recall_drop))
    failed = [check.detail for check in checks if not check.passed]
    reason = (
        "Offered: on the gold set it is at least as accurate and no type's recall falls by more than "
        f"{100 * max_recall_drop:.0f} points."
        if not failed
        else "Not offered: " + "; ".join(failed) + "."
    )
    return GateDecision(
        offered=not failed, reason=reason, checks=checks, compared=compared, new_types=new_types
    )


def _accuracy_check(new: dict[str, Any], active: dict[str, Any]) -> GateCheck:
    passed = new["accuracy"] >= active["accuracy"] - _TOLERANCE
    return GateCheck(
        "accuracy",
        passed,
        f"gold accuracy {new['accuracy']:.3f} against {active['accuracy']:.3f} for the active version"
        + ("" if passed else " (lower)"),
    )


def _recall_check(slug: str, new: dict[str, Any], active: dict[str, Any], max_drop: float) -> GateCheck:
    before = float(active["per_type"][slug]["recall"])
    after = float(new["per_type"].get(slug, {}).get("recall", 0.0))
    fall = before - after
    passed = fall <= max_drop + _TOLERANCE
    return GateCheck(
        f"recall {slug}",
        passed,
        f"{slug} recall {after:.3f} against {before:.3f}"
        + ("" if passed else f" (falls {100 * fall:.1f} points, more than {100 * max_drop:.0f})"),
    )
