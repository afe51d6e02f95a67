"""Train a new model version on the catalogue itself, measure it against the active version on the gold set, and
publish it with the gate's decision on its card. The work of a training job
(:mod:`catalogue.services.training_jobs`, which ``train_model --from-catalogue`` runs too); it imports TensorFlow.

* Training examples are the ready artworks with their *effective* type (the label, else the active version's
  prediction) of every type the new version learns (:func:`catalogue.selectors.training.training_classes`), minus
  the gold set (:mod:`catalogue.selectors.training`), which is never trained on.
* The recipe is the caller's :class:`~inference.training.TrainingConfig` (the job: the shipped one).
* The version is trained into a hidden folder beside the versions (``<model dir>/.training-…/``), measured there
  through the one loader, its card completed with the gold-set comparison and the gate
  (:func:`catalogue.services.training_gate.training_gate`), and only then renamed into the model dir: a job
  stopped at any point (cancelled, failed, killed) leaves no version folder, half-written or not, and the active
  version keeps serving. It is registered, never activated: activation is a curator's click
  (:func:`catalogue.services.training_jobs.training_job_activate`).
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from catalogue.models import ArtworkType
from catalogue.selectors.training import (
    GOLD_MODULUS,
    MIN_VERIFIED_TO_LEARN,
    TrainingExample,
    training_classes,
    training_examples,
)
from catalogue.services.training_gate import gold_metrics, training_gate
from inference.datasets import LabelledFile, Progress, read_files
from inference.loader import Classifier, get_classifier, load_classifier
from inference.models import ModelVersion
from inference.registry import new_version_name, rewrite_card
from inference.selectors import model_version_active
from inference.services import model_versions_sync
from inference.training import TrainingConfig, TrainingEvents, train

logger = logging.getLogger(__name__)

STAGING_PREFIX = ".training-"


@dataclass
class TrainingPlan:
    """What a training on the catalogue will use: the class list, the training files (labels index ``classes``),
    the gold files (labels index ``all_types``: a gold work may be of a type the new version does not learn)."""

    classes: tuple[str, ...]
    all_types: tuple[str, ...]
    train_files: list[LabelledFile]
    gold_files: list[LabelledFile]
    active: ModelVersion | None
    labelled: int = 0
    verified: int = 0
    not_learned: dict[str, int] = field(
        default_factory=dict
    )  # {type: works left out, the type is not learned}

    def source(self) -> dict[str, Any]:
        """The card's ``catalogue_training`` block."""
        return {
            "source": "catalogue: ready artworks with their effective type (label, else the active version's "
            "prediction), the gold set left out",
            "active_version_when_trained": self.active.version if self.active is not None else None,
            "classes": list(self.classes),
            "examples": len(self.train_files),
            "labelled": self.labelled,
            "verified": self.verified,
            "left_out_types_not_learned": self.not_learned,
            "types_learned_rule": f"the five default types, and every type with at least {MIN_VERIFIED_TO_LEARN} "
            "verified ready works",
            "gold_set": {
                "n": len(self.gold_files),
                "rule": f"verified labels of the works with int(sha256[:8], 16) % {GOLD_MODULUS} == 0; never "
                "trained on",
            },
        }


@dataclass
class CatalogueTraining:
    version: str
    path: Path
    card: dict[str, Any]
    gate: dict[str, Any]

    @property
    def offered(self) -> bool:
        return bool(self.gate.get("offered"))


def _file(example: TrainingExample, label: int) -> LabelledFile:
    return LabelledFile(
        path=Path(example.image_name),
        relative=f"{example.artwork_id}:{example.image_name}",
        label=label,
        opener=example.read_bytes,
    )


def training_plan() -> TrainingPlan:
    """Split the catalogue's examples into training files (types the new version learns, gold works left out) and
    gold files."""
    classes = training_classes()
    all_types = tuple(ArtworkType.objects.values_list("slug", flat=True))
    plan = TrainingPlan(
        classes=classes, all_types=all_types, train_files=[], gold_files=[], active=model_version_active()
    )
    for example in training_examples(version=plan.active):
        if example.gold:
            plan.gold_files.append(_file(example, all_types.index(example.type_slug)))
        elif example.type_slug in classes:
            plan.train_files.append(_file(example, classes.index(example.type_slug)))
            plan.labelled += example.curator_labelled
            plan.verified += example.verified
        else:
            plan.not_learned[example.type_slug] = plan.not_learned.get(example.type_slug, 0) + 1
    return plan


def model_train_from_catalogue(
    *,
    config: TrainingConfig,
    events: TrainingEvents | None = None,
    progress: Progress | None = None,
    log: Callable[[str], None] | None = None,
    version: str | None = None,
    staging_name: str | None = None,
) -> CatalogueTraining:
    """Train, measure, gate and publish a new version (see the module docstring); returns it, registered.

    ``events`` and ``progress`` (reading the images) report progress and may raise to stop the training; ``log``
    gets a line per step. Raises ``ValueError`` when the catalogue has too little to train on and
    ``FileExistsError`` when the version name is taken.
    """
    events = events or TrainingEvents()
    say = log or logger.info
    plan = training_plan()
    if not plan.train_files:
        raise ValueError(
            "The catalogue has no ready artworks with a type the new version learns to train on."
        )
    root = Path(settings.ARTSITE_MODEL_DIRS[-1])
    root.mkdir(parents=True, exist_ok=True)
    version = version or new_version_name(config.architecture)
    if (root / version).exists():
        raise FileExistsError(f"{root / version} already exists.")
    say(
        f"Training {version} ({config.architecture}, {config.input_size} px, {config.epochs} epochs) on "
        f"{len(plan.train_files)} works of {len(plan.classes)} types ({', '.join(plan.classes)}); "
        f"{len(plan.gold_files)} gold works held out"
        + (f"; left out, type not learned yet: {plan.not_learned}" if plan.not_learned else "")
    )
    events.stage("reading images")
    train_data = read_files(
        plan.train_files, config.input_size, classes=plan.classes, root="catalogue", progress=progress
    )
    # The gold works of the types it learns are also its card's honest test set (never used to choose anything).
    val_files = [
        LabelledFile(f.path, f.relative, plan.classes.index(plan.all_types[f.label]), f.opener)
        for f in plan.gold_files
        if plan.all_types[f.label] in plan.classes
    ]
    val_data = read_files(val_files, config.input_size, classes=plan.classes, root="catalogue gold set")
    staging = root / (staging_name or f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        result = train(
            train_data=train_data,
            val_data=val_data if len(val_data) else None,
            config=config,
            output_dir=staging,
            version=version,
            events=events,
            extra_card={"catalogue_training": plan.source()},
        )
        events.stage("comparing with the active version on the gold set")
        comparison = gold_comparison(
            new=load_classifier(result.path),
            active=get_classifier(plan.active.version) if plan.active is not None else None,
            gold_files=plan.gold_files,
            all_types=plan.all_types,
        )
        gate = gold_gate(comparison)
        say(gate["reason"])
        card = {**result.card, "catalogue_training": {**plan.source(), "gate": gate}}
        rewrite_card(result.path, card)
        events.stage("publishing")
        destination = root / version
        if destination.exists():
            raise FileExistsError(f"{destination} appeared while training.")
        os.rename(result.path, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    model_versions_sync()
    return CatalogueTraining(version=version, path=destination, card=card, gate=gate)


def staging_folders_remove(*, keep: Sequence[str] = ()) -> list[Path]:
    """Remove what killed trainings left behind (hidden staging folders in the model dir), except ``keep``."""
    root = Path(settings.ARTSITE_MODEL_DIRS[-1])
    if not root.is_dir():
        return []
    removed = [
        p for p in root.iterdir() if p.is_dir() and p.name.startswith(STAGING_PREFIX) and p.name not in keep
    ]
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    return removed


# --- The gold-set comparison --------------------------------------------------------------------------------------


def gold_comparison(
    *,
    new: Classifier,
    active: Classifier | None,
    gold_files: Sequence[LabelledFile],
    all_types: Sequence[str],
) -> dict[str, Any]:
    """Both versions' :func:`~catalogue.services.training_gate.gold_metrics` on the same gold images, over the
    types either knows (gold works of other types are left out: neither could get them right)."""
    classes = list(new.classes) + [c for c in (active.classes if active else ()) if c not in new.classes]
    files = [f for f in gold_files if all_types[f.label] in classes]
    comparison: dict[str, Any] = {
        "classes": classes,
        "left_out_types_neither_knows": len(gold_files) - len(files),
        "new": None,
        "active": None,
    }
    images: dict[int, Any] = {}  # input size -> the gold images read at it (read once per size)
    for key, classifier in (("new", new), ("active", active)):
        if classifier is None:
            continue
        if classifier.input_size not in images:
            images[classifier.input_size] = read_files(
                files, classifier.input_size, classes=all_types, root="catalogue gold set"
            )
        gold = images[classifier.input_size]
        labels = np.array([classes.index(all_types[label]) for label in gold.labels], np.int64)
        probabilities, _ = classifier.predict_arrays(gold.images)
        predicted = np.array(
            [classes.index(classifier.classes[j]) for j in probabilities.argmax(axis=1)], np.int64
        )
        comparison[key] = {
            "version": classifier.version,
            "known": list(classifier.classes),
            **gold_metrics(labels, predicted, classes),
        }
    return comparison


def gold_gate(comparison: dict[str, Any]) -> dict[str, Any]:
    """The gate's decision on a :func:`gold_comparison`, with the comparison, as recorded on the card and the job."""
    new, active = comparison["new"], comparison["active"]
    decision = training_gate(
        new=new,
        active=active,
        new_classes=new["known"],
        active_classes=active["known"] if active is not None else (),
    )
    return {**decision.as_dict(), "comparison": comparison}
