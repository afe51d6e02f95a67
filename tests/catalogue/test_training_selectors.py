"""The catalogue as training material: the gold split, which types the next version learns, what changed since the
active version was trained, and the training plan (gold works never trained on)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from catalogue.models import Artwork, ArtworkType, LabelCorrection
from catalogue.selectors.training import (
    label_changes_since,
    training_classes,
    type_readiness,
)
from catalogue.services.artwork_types import artwork_type_create
from catalogue.services.labels import label_confirm, label_correct
from catalogue.services.training import training_plan
from tests.catalogue.training_helpers import SLUGS, in_gold_split, training_catalogue, work

pytestmark = pytest.mark.django_db


def test_the_plan_never_trains_on_a_gold_work_and_gold_is_exactly_the_verified_gold_split(active_model):
    made = training_catalogue(gold=2, train=3, imported_gold_split=1)
    plan = training_plan()
    trained = {int(f.relative.split(":")[0]) for f in plan.train_files}
    gold = {int(f.relative.split(":")[0]) for f in plan.gold_files}
    expected_gold = {
        a.pk
        for a in Artwork.objects.all()
        if a.label_provenance in ("set", "confirmed") and in_gold_split(a.image.read())
    }
    assert gold == expected_gold == {a.pk for a in made["gold"]}
    assert not trained & gold
    # Imported labels of the gold split train until a curator verifies them.
    assert {a.pk for a in made["imported_gold_split"]} <= trained
    assert len(plan.train_files) == 5 * (3 + 1)


def test_verifying_a_gold_split_work_moves_it_out_of_training_for_good(active_model, curator):
    imported = work("painting", gold_split=True, verified=False)
    assert imported.pk in {int(f.relative.split(":")[0]) for f in training_plan().train_files}
    label_confirm(artwork=imported, user=curator, source=LabelCorrection.Source.REVIEW)
    plan = training_plan()
    assert imported.pk in {int(f.relative.split(":")[0]) for f in plan.gold_files}
    assert imported.pk not in {int(f.relative.split(":")[0]) for f in plan.train_files}


def test_a_new_type_is_learned_from_twenty_verified_works(active_model):
    textile = artwork_type_create(name="Textile")
    photograph = artwork_type_create(name="Photograph")
    assert training_classes() == tuple(SLUGS)  # the five defaults are learned with no verified work at all
    for i in range(20):
        work("textile", colour=5, gold_split=i < 4)
    for _ in range(19):
        work("photograph", colour=6, gold_split=False)
    work("photograph", colour=6, gold_split=False, verified=False)  # imported: does not count
    assert training_classes() == (*SLUGS, "textile")
    readiness = {r.artwork_type.slug: r for r in type_readiness()}
    assert (readiness["textile"].verified, readiness["textile"].still_needed) == (20, 0)
    assert (readiness["photograph"].verified, readiness["photograph"].still_needed) == (19, 1)
    assert readiness["drawings"].learned_next and readiness["drawings"].known_by_active
    assert not readiness["textile"].known_by_active
    plan = training_plan()
    assert plan.classes == (*SLUGS, "textile")
    assert plan.not_learned == {"photograph": 20}
    assert {plan.classes[f.label] for f in plan.train_files} == {"textile"}
    assert textile.slug in plan.all_types and photograph.slug in plan.all_types


def test_label_changes_since_the_active_version_was_trained_by_provenance(active_model, curator):
    painting, drawings = (ArtworkType.objects.get(slug=s) for s in ("painting", "drawings"))
    before = work("painting", gold_split=False, verified=False)  # its import happened "before" the version
    LabelCorrection.objects.filter(artwork=before).update(created_at=timezone.now() - timedelta(days=3650))
    active_model.card = {**active_model.card, "created": (timezone.now() - timedelta(days=1)).isoformat()}
    active_model.save(update_fields=["card"])
    imported = work("engraving", gold_split=False, verified=False)
    label_correct(artwork=imported, to_type=drawings, user=curator, source=LabelCorrection.Source.REVIEW)
    label_confirm(artwork=before, user=curator, source=LabelCorrection.Source.MISLABELS)
    label_correct(artwork=before, to_type=painting, user=curator, source=LabelCorrection.Source.PORTAL)

    changes = label_changes_since(version=active_model)
    # The engraving's import, its relabelling, and the painting's confirmation twice (same type kept).
    assert changes.by_provenance == {"imported": 1, "set": 1, "confirmed": 2}
    assert changes.total == 4
    assert changes.by_source == {"import": 1, "review": 1, "mislabels": 1, "portal": 1}
    assert label_changes_since(version=None).total == 5  # the old import too
