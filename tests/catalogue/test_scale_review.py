"""A million works (issue 17): the stored entropy and margin, and the review queue's three orders served by their
indexes, on generated predictions with ties."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
from django.apps import apps
from django.db import connection

from catalogue.models import Artwork, Prediction, prediction_uncertainty
from catalogue.selectors.curation import review_queue
from catalogue.services.classification import prediction_store
from catalogue.services.labels import label_correct
from tests.catalogue.curation_helpers import SLUGS, type_of
from tests.factories import ArtworkFactory

pytestmark = pytest.mark.django_db


def entropy(p) -> float:
    return -sum(v * math.log(v) for v in p if v > 0)


def margin(p) -> float:
    top = sorted(p, reverse=True) + [0.0]
    return top[0] - top[1]


@pytest.fixture
def generated(active_model):
    """30 ready works whose probabilities come in repeated groups of three (ties in every measure), stored through
    prediction_store as the worker and the import store them."""
    rng = np.random.default_rng(17)
    distinct = rng.dirichlet(np.ones(len(SLUGS)) * 0.7, 10)
    probabilities = np.repeat(distinct, 3, axis=0)
    artworks = [ArtworkFactory(status=Artwork.Status.READY) for _ in probabilities]
    embeddings = rng.normal(size=(len(artworks), 128)).astype(np.float32)
    prediction_store(
        artwork_ids=[a.pk for a in artworks],
        model_version=active_model,
        classes=SLUGS,
        probabilities=probabilities,
        embeddings=embeddings,
    )
    return artworks


def test_stored_entropy_and_margin_are_those_of_the_probabilities(generated, active_model):
    for prediction in Prediction.objects.filter(model_version=active_model):
        values = list(prediction.probabilities.values())
        assert prediction.entropy == pytest.approx(entropy(values), abs=1e-5)
        assert prediction.margin == pytest.approx(margin(values), abs=1e-5)


def test_uncertainty_at_the_edges():
    assert prediction_uncertainty([0.2] * 5)["entropy"] == pytest.approx(math.log(5))
    assert prediction_uncertainty([1.0, 0.0, 0.0]) == {"entropy": 0.0, "margin": 1.0}
    assert prediction_uncertainty([0.5, 0.5])["margin"] == 0.0
    assert prediction_uncertainty([1.0])["margin"] == 1.0  # no runner-up: the gap to nothing


def test_the_migration_backfills_rows_written_without_them(generated, active_model):
    Prediction.objects.update(entropy=None, margin=None)
    migration = importlib.import_module("catalogue.migrations.0009_scale")
    with connection.schema_editor() as editor:
        migration.backfill(apps, editor)
    for prediction in Prediction.objects.all():
        values = list(prediction.probabilities.values())
        assert prediction.entropy == pytest.approx(entropy(values), abs=1e-5)
        assert prediction.margin == pytest.approx(margin(values), abs=1e-5)


@pytest.mark.parametrize("order", ["confidence", "entropy", "margin"])
def test_each_order_with_ties_settled_by_confidence_then_id(generated, active_model, curator, order):
    labelled, failed = generated[0], generated[4]
    label_correct(artwork=labelled, to_type=type_of("painting"), user=curator, source="portal")
    Artwork.objects.filter(pk=failed.pk).update(status=Artwork.Status.FAILED)
    rows = []
    for prediction in Prediction.objects.filter(model_version=active_model).exclude(
        artwork_id__in=[labelled.pk, failed.pk]
    ):
        p = list(prediction.probabilities.values())
        key = {"confidence": max(p), "entropy": -entropy(p), "margin": margin(p)}[order]
        rows.append((round(key, 5), round(max(p), 5), prediction.artwork_id))
    expected = [artwork_id for *_, artwork_id in sorted(rows)]
    assert [a.pk for a in review_queue(order=order)] == expected
    assert len(expected) == len(set(expected)) == 28


@pytest.mark.parametrize(
    ("order", "index"),
    [
        ("confidence", "prediction_review_confidence"),
        ("entropy", "prediction_review_entropy"),
        ("margin", "prediction_review_margin"),
    ],
)
def test_each_order_can_be_read_off_its_index(generated, order, index):
    """The ordering expression matches the index (direction, NULLS LAST, tie-breakers): with sorting made
    prohibitively expensive, PostgreSQL reads the queue straight off it, as it chooses to at a million works."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = review_queue(order=order)[:1].explain()
    assert index in plan
