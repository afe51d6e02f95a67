"""The quality page (agreement and confusion matrix per model version, unfinished jobs with retry); the collection
map's tests are in test_map.py."""

from __future__ import annotations

import re

import numpy as np
import pytest
from django.urls import reverse

from catalogue.models import Artwork, LabelCorrection
from catalogue.selectors.artworks import artworks_unfinished
from catalogue.selectors.curation import model_agreement, model_agreements
from catalogue.services.labels import label_correct
from inference.models import ModelVersion
from tests.catalogue.curation_helpers import (
    confident,
    logged_in,
    ready_artwork,
    reopen_broker_pool,
    type_of,
)
from tests.factories import ArtworkFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def curator_client(client, curator):
    return logged_in(client, curator)


@pytest.fixture
def viewer_client(client, viewer):
    return logged_in(client, viewer)


def label(artwork, slug, user=None):
    label_correct(artwork=artwork, to_type=type_of(slug), user=user, source=LabelCorrection.Source.REVIEW)


@pytest.fixture
def labelled(active_model, curator):
    """Six labelled works: the model is right on 4 (2 paintings, a sculpture, a drawing) and wrong on 2."""
    cases = [
        ("painting", "painting"),
        ("painting", "painting"),
        ("sculpture", "sculpture"),
        ("drawings", "drawings"),
        ("painting", "engraving"),  # the model said painting, the curator engraving
        ("iconography", "painting"),
    ]
    works = []
    for predicted, curated in cases:
        artwork = ready_artwork(active_model, confident(predicted))
        label(artwork, curated, curator)
        works.append(artwork)
    ready_artwork(active_model, confident("painting"))  # not labelled: not counted
    return works


def test_agreement_overall_per_type_and_confusion_matrix(labelled, active_model):
    agreement = model_agreement()
    assert agreement.version == active_model
    assert (agreement.compared, agreement.agreed) == (6, 4)
    assert agreement.rate == pytest.approx(4 / 6)
    index = {t.slug: i for i, t in enumerate(agreement.types)}
    expected = np.zeros((5, 5), dtype=int)
    for predicted, curated in [("painting", "painting")] * 2 + [
        ("sculpture", "sculpture"),
        ("drawings", "drawings"),
        ("painting", "engraving"),
        ("iconography", "painting"),
    ]:
        expected[index[curated], index[predicted]] += 1
    assert np.array_equal(np.array(agreement.matrix), expected)
    per_type = {t.artwork_type.slug: t for t in agreement.per_type}
    assert (per_type["painting"].labelled, per_type["painting"].agreed, per_type["painting"].predicted) == (
        3,
        2,
        3,
    )
    assert per_type["painting"].rate == pytest.approx(2 / 3) and per_type[
        "painting"
    ].precision == pytest.approx(2 / 3)
    assert per_type["engraving"].rate == 0.0 and per_type["engraving"].precision is None
    assert per_type["iconography"].rate is None  # no curator calls anything iconography


def test_agreement_is_kept_per_model_version(labelled, active_model):
    other = ModelVersion.objects.create(
        version="v-older", path="/nowhere", card={"metrics": {"accuracy": 0.5}}
    )
    ModelVersion.objects.create(version="v-unused", path="/nowhere")
    # The older version predicted two of the labelled works, rightly once.
    from catalogue.models import Prediction

    for artwork, predicted in [(labelled[0], "painting"), (labelled[4], "engraving")]:
        source = Prediction.objects.get(artwork=artwork, model_version=active_model)
        Prediction.objects.create(
            artwork=artwork,
            model_version=other,
            predicted_type=type_of(predicted),
            confidence=0.8,
            probabilities=confident(predicted, 0.8),
            embedding=source.embedding,
        )
    agreements = model_agreements()
    assert [a.version.version for a in agreements] == [active_model.version, "v-older"]
    assert (agreements[1].compared, agreements[1].agreed) == (2, 2)
    assert model_agreement(version=other).rate == 1.0
    assert model_agreement().rate == pytest.approx(4 / 6)


def test_quality_page_draws_the_matrix_and_lists_versions(curator_client, labelled, active_model):
    response = curator_client.get(reverse("catalogue:quality"))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="confusion-matrix"' in html
    assert re.search(r'id="overall-agreement">67%<', html)
    # The painting row: 2 right (green), 1 called painting by the curator but iconography by the model (red).
    heatmap = response.context["heatmap"]
    painting_row = next(r for r in heatmap if r["type"].slug == "painting")
    cells = {
        t.slug: c for t, c in zip(response.context["selected"].types, painting_row["cells"], strict=True)
    }
    assert cells["painting"]["count"] == 2 and cells["painting"]["diagonal"]
    assert cells["iconography"]["count"] == 1 and not cells["iconography"]["diagonal"]
    assert "rgba(46, 139, 87, 0.647)" in html  # 2 of 3: the strongest green in the row
    assert active_model.version in html


def test_quality_page_with_no_model_or_labels(curator_client, db):
    response = curator_client.get(reverse("catalogue:quality"))
    assert response.status_code == 200
    assert "No model version yet" in response.content.decode()


def test_unfinished_jobs_are_listed_and_retried(curator_client, broker, django_capture_on_commit_callbacks):
    reopen_broker_pool()
    failed = ArtworkFactory(status=Artwork.Status.FAILED)
    Artwork.objects.filter(pk=failed.pk).update(error="The stored image cannot be read")
    other_failed = ArtworkFactory(status=Artwork.Status.FAILED)
    pending = ArtworkFactory()
    ready = ArtworkFactory(status=Artwork.Status.READY)

    assert [a.pk for a in artworks_unfinished()] == [failed.pk, other_failed.pk, pending.pk]
    page = curator_client.get(reverse("catalogue:quality"))
    html = page.content.decode()
    assert "The stored image cannot be read" in html and "Retry all 2 failed" in html

    with django_capture_on_commit_callbacks(execute=True):
        response = curator_client.post(reverse("catalogue:quality-retry"), {"artwork": [failed.pk, ready.pk]})
    assert response.status_code == 302
    failed.refresh_from_db()
    assert failed.status == Artwork.Status.PENDING and failed.error == ""
    assert Artwork.objects.get(pk=ready.pk).status == Artwork.Status.READY  # a ready work is not "retried"
    assert broker.llen("celery") == 1

    with django_capture_on_commit_callbacks(execute=True):
        curator_client.post(reverse("catalogue:quality-retry"), {"all_failed": "1"})
    assert Artwork.objects.get(pk=other_failed.pk).status == Artwork.Status.PENDING
    assert broker.llen("celery") == 2


def test_viewers_get_no_retry_buttons_and_cannot_retry(viewer_client, broker):
    failed = ArtworkFactory(status=Artwork.Status.FAILED)
    html = viewer_client.get(reverse("catalogue:quality")).content.decode()
    assert failed.title in html and "Retry" not in html
    assert viewer_client.post(reverse("catalogue:quality-retry"), {"all_failed": "1"}).status_code == 403
    assert Artwork.objects.get(pk=failed.pk).status == Artwork.Status.FAILED and broker.llen("celery") == 0
