"""Train a new model version on the catalogue itself (``train_model --from-catalogue``), and activate it only if it
does at least as well as the active version on a gold set of curator-labelled works neither was trained on here.

* Training examples are the ready artworks with their *effective* type (the curator's label, else the active
  version's prediction): :func:`catalogue.selectors.training_examples`.
* The gold set is a stratified share (``gold_fraction``) of the curator-labelled works, held out of training.
  Both the new and the active version are measured on it through the one loader; the new one is activated (through
  :func:`catalogue.services.model_rollout.model_activate`, so the catalogue is re-embedded without downtime) only if its gold
  accuracy is at least the active one's, and its macro-F1 too. The comparison and the decision go on its card.
* Without gold works (no curator labels yet) there is no fair comparison: the version is written but not
  activated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from catalogue.selectors.training import training_examples
from catalogue.services.model_rollout import model_activate
from inference.architectures import CLASSES
from inference.datasets import ImageSet, LabelledFile, Progress, read_files, stratified_split
from inference.evaluation import evaluate_classifier
from inference.loader import get_classifier
from inference.models import ModelVersion
from inference.registry import rewrite_card
from inference.selectors import model_version_active
from inference.services import model_versions_sync
from inference.training import TrainingConfig, train

MIN_GOLD = 5


@dataclass
class CatalogueTraining:
    version: str
    path: Path
    card: dict[str, Any]
    comparison: dict[str, Any]
    activated: bool


def _examples_as_files() -> tuple[list[LabelledFile], list[bool], int]:
    files, curated, unknown = [], [], 0
    for example in training_examples():
        if example.type_slug not in CLASSES:
            unknown += 1
            continue
        files.append(
            LabelledFile(
                path=Path(example.image_name),
                relative=f"{example.artwork_id}:{example.image_name}",
                label=CLASSES.index(example.type_slug),
                opener=example.read_bytes,
            )
        )
        curated.append(example.curator_labelled)
    return files, curated, unknown


def _gold_metrics(version: str, files: list[LabelledFile]) -> dict[str, Any]:
    classifier = get_classifier(version)
    gold = read_files(files, classifier.input_size, root="catalogue gold set")
    metrics = evaluate_classifier(classifier, gold)
    return {key: metrics[key] for key in ("accuracy", "macro_f1", "ece", "n", "per_type")}


def model_train_from_catalogue(
    *,
    config: TrainingConfig | None = None,
    gold_fraction: float = 0.2,
    activate: bool = True,
    output_dir: Path | str | None = None,
    version: str | None = None,
    progress: Progress | None = None,
) -> CatalogueTraining:
    """Train on the catalogue, compare with the active version on the gold set, activate if not worse.

    ``config``: the recipe (default: the shipped default version's architecture and input size,
    :meth:`inference.training.TrainingConfig.for_architecture`). Raises ``ValueError`` when the catalogue has too
    little to train on.
    """
    config = config or TrainingConfig.for_architecture()
    seed = config.seed
    files, curated, unknown = _examples_as_files()
    if not files:
        raise ValueError(
            "The catalogue has no ready artworks with a type (curator label or prediction) to train on."
        )
    labels = np.asarray([f.label for f in files])
    curated_idx = np.flatnonzero(curated)
    gold_idx = np.array([], np.int64)
    if len(curated_idx) >= MIN_GOLD:
        _, held = stratified_split(labels[curated_idx], gold_fraction, seed=seed)
        gold_idx = curated_idx[held]
    in_gold = np.zeros(len(files), bool)
    in_gold[gold_idx] = True
    train_files = [f for f, g in zip(files, in_gold, strict=True) if not g]
    gold_files = [f for f, g in zip(files, in_gold, strict=True) if g]

    size = config.input_size
    train_data = read_files(train_files, size, root="catalogue", progress=progress)
    gold_data: ImageSet | None = (
        read_files(gold_files, size, root="catalogue gold set") if gold_files else None
    )
    if gold_data is not None and not len(gold_data):
        gold_data = None

    active = model_version_active()
    active_gold = (
        _gold_metrics(active.version, gold_files) if active is not None and gold_data is not None else None
    )

    source = {
        "source": "catalogue: ready artworks with their effective type (curator label, else the active version's "
        "prediction)",
        "active_version_when_trained": active.version if active is not None else None,
        "examples": len(files),
        "curator_labelled": int(np.sum(curated)),
        "left_out_unknown_type": unknown,
        "gold_set": {
            "n": len(gold_files),
            "fraction_of_curator_labelled": gold_fraction,
            "note": "curator-labelled works held out of this training",
        },
    }
    result = train(
        train_data=train_data,
        val_data=gold_data,
        config=config,
        output_dir=output_dir,
        version=version,
        extra_card={"catalogue_training": source},
    )

    new_gold = None
    if gold_data is not None:
        # What would serve: the fast copy's figures when there is one (the active version's come from the loader too).
        m = (result.card.get("serving") or {}).get("metrics") or result.card["metrics"]
        new_gold = {key: m[key] for key in ("accuracy", "macro_f1", "ece", "n", "per_type")}
    decision, reason = activation_decision(new_gold, active_gold)
    comparison = {
        "gold_n": len(gold_files),
        "new": new_gold,
        "active": {"version": active.version, **active_gold} if active is not None and active_gold else None,
        "rule": "activate only if gold accuracy and macro-F1 are both at least the active version's",
        "activate": bool(decision and activate),
        "reason": reason if activate or not decision else reason + " (activation not requested)",
    }
    card = {**result.card, "catalogue_training": {**source, "comparison": comparison}}
    rewrite_card(result.path, card)

    activated = False
    if decision and activate:
        model_versions_sync()
        model_activate(version=ModelVersion.objects.get(version=result.version))
        activated = True
    return CatalogueTraining(
        version=result.version, path=result.path, card=card, comparison=comparison, activated=activated
    )


def activation_decision(new: dict[str, Any] | None, active: dict[str, Any] | None) -> tuple[bool, str]:
    """Whether a catalogue-trained version may replace the active one, and why, from both versions' gold-set
    metrics (``None``: no gold set / no active version)."""
    if new is None:
        return False, f"no gold set (fewer than {MIN_GOLD} curator-labelled works): not activated"
    if active is None:
        return True, "no active version to compare with"
    decision = new["accuracy"] >= active["accuracy"] and new["macro_f1"] >= active["macro_f1"]
    return decision, (
        f"gold accuracy {new['accuracy']:.3f} vs {active['accuracy']:.3f} active, macro-F1 "
        f"{new['macro_f1']:.3f} vs {active['macro_f1']:.3f}: " + ("at least as good" if decision else "worse")
    )
