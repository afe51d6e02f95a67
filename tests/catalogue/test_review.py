"""The review queue: its order, the page, labelling from it (audited, source=review), permissions, and the
training-examples selector that retraining reads."""

from __future__ import annotations

import math

import pytest
from django.urls import reverse

from catalogue.models import Artwork, LabelCorrection
from catalogue.selectors.curation import review_progress, review_queue
from catalogue.selectors.training import training_examples
from catalogue.services.labels import label_correct
from tests.catalogue.curation_helpers import confident, logged_in, ready_artwork, type_of
from tests.factories import ArtworkFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def curator_client(client, curator):
    return logged_in(client, curator)


@pytest.fixture
def viewer_client(client, viewer):
    return logged_in(client, viewer)


# Four works whose order differs by each measure of doubt.
DOUBTS = {
    "A": {"painting": 0.5, "sculpture": 0.5},
    "B": {"painting": 0.4, "drawings": 0.15, "engraving": 0.15, "iconography": 0.15, "sculpture": 0.15},
    "C": {"painting": 0.45, "sculpture": 0.44, "drawings": 0.11},
    "D": {"painting": 0.34, "sculpture": 0.33, "drawings": 0.33},
}


def entropy(p: dict[str, float]) -> float:
    return -sum(v * math.log(v) for v in p.values() if v > 0)


def margin(p: dict[str, float]) -> float:
    top = sorted(p.values(), reverse=True) + [0.0]
    return top[0] - top[1]


@pytest.fixture
def doubtful(active_model):
    return {name: ready_artwork(active_model, probs, title=f"Work {name}") for name, probs in DOUBTS.items()}


def queue_names(order: str) -> list[str]:
    return [a.title.removeprefix("Work ") for a in review_queue(order=order)]


def test_queue_orders_by_each_measure_of_doubt(doubtful):
    by_conf = sorted(DOUBTS, key=lambda n: max(DOUBTS[n].values()))
    by_entropy = sorted(DOUBTS, key=lambda n: -entropy(DOUBTS[n]))
    by_margin = sorted(DOUBTS, key=lambda n: (round(margin(DOUBTS[n]), 9), max(DOUBTS[n].values())))
    assert len({tuple(by_conf), tuple(by_entropy), tuple(by_margin)}) == 3, (
        "the fixture must tell the orders apart"
    )

    assert queue_names("confidence") == by_conf == ["D", "B", "C", "A"]
    assert queue_names("entropy") == by_entropy == ["B", "D", "C", "A"]
    assert queue_names("margin") == by_margin == ["A", "D", "C", "B"]
    assert queue_names("nonsense") == by_conf
    rows = {a.title.removeprefix("Work "): a for a in review_queue(order="entropy")}
    for name, probs in DOUBTS.items():
        assert rows[name].pred_entropy == pytest.approx(entropy(probs), abs=1e-6)
        assert rows[name].pred_margin == pytest.approx(margin(probs), abs=1e-6)


def test_queue_holds_only_ready_unlabelled_works_with_a_prediction(active_model, curator):
    waiting = ready_artwork(active_model, confident("painting", 0.6))
    labelled = ready_artwork(active_model, confident("painting", 0.3))
    label_correct(
        artwork=labelled, to_type=type_of("sculpture"), user=curator, source=LabelCorrection.Source.PORTAL
    )
    failed = ready_artwork(active_model, confident("painting", 0.2))
    Artwork.objects.filter(pk=failed.pk).update(status=Artwork.Status.FAILED)
    ArtworkFactory()  # pending, no prediction
    assert [a.pk for a in review_queue()] == [waiting.pk]
    assert [a.pk for a in review_queue(exclude_ids=[waiting.pk])] == []

    progress = review_progress()
    assert (progress.reviewed, progress.remaining) == (1, 1)
    assert progress.agreement.compared == 1 and progress.agreement.agreed == 0


def test_queue_page_shows_the_most_doubtful_work_its_probabilities_and_similar_works(
    curator_client, doubtful
):
    response = curator_client.get(reverse("catalogue:review"))
    assert response.status_code == 200
    assert response.context["artwork"].pk == doubtful["D"].pk
    html = response.content.decode()
    assert reverse("catalogue:artwork-display", args=[doubtful["D"].pk]) in html
    assert "34%" in html and "33%" in html  # its probabilities
    similar = response.context["similar"]
    assert len(similar) == 3 and {s.artwork.pk for s in similar} == {doubtful[n].pk for n in "ABC"}
    for item in similar:
        assert reverse("catalogue:artwork-detail", args=[item.artwork.pk]) in html
    assert 'data-key="enter"' in html and 'data-key="5"' in html
    assert 'id="remaining-count">4<' in html and 'id="reviewed-count">0<' in html

    entropy_page = curator_client.get(reverse("catalogue:review"), {"order": "entropy"})
    assert entropy_page.context["artwork"].pk == doubtful["B"].pk


def test_picking_a_type_records_a_review_correction_and_shows_the_next(curator_client, curator, doubtful):
    first = doubtful["D"]
    response = curator_client.post(
        reverse("catalogue:review-label", args=[first.pk]),
        {"type": "engraving", "note": "plate mark", "order": "confidence"},
    )
    assert response.status_code == 302 and response.url == reverse("catalogue:review")
    first.refresh_from_db()
    assert first.curator_type == type_of("engraving")
    correction = LabelCorrection.objects.get(artwork=first)
    assert (
        correction.source,
        correction.from_type,
        correction.to_type,
        correction.user,
        correction.note,
    ) == ("review", type_of("painting"), type_of("engraving"), curator, "plate mark")

    page = curator_client.get(response.url)
    assert page.context["artwork"].pk == doubtful["B"].pk
    assert page.context["progress"].reviewed == 1 and page.context["progress"].remaining == 3
    assert page.context["progress"].agreement.rate == 0.0  # the model said painting, the curator engraving


def test_confirm_takes_the_models_type_and_keeps_the_order(curator_client, doubtful):
    response = curator_client.post(
        reverse("catalogue:review-label", args=[doubtful["B"].pk]), {"confirm": "1", "order": "entropy"}
    )
    assert response.url == reverse("catalogue:review") + "?order=entropy"
    correction = LabelCorrection.objects.get(artwork=doubtful["B"])
    assert correction.source == "review" and correction.to_type == type_of("painting") == correction.from_type
    page = curator_client.get(response.url)
    assert page.context["artwork"].pk == doubtful["D"].pk
    assert page.context["progress"].agreement.rate == 1.0


def test_an_unknown_type_changes_nothing(curator_client, doubtful):
    response = curator_client.post(
        reverse("catalogue:review-label", args=[doubtful["A"].pk]), {"type": "pottery"}, follow=True
    )
    assert response.status_code == 200
    assert "Choose one of the types" in response.content.decode()
    assert not LabelCorrection.objects.exists()
    assert (
        curator_client.post(
            reverse("catalogue:review-label", args=[999999]), {"type": "painting"}
        ).status_code
        == 404
    )


def test_skip_puts_a_work_aside_for_this_session_only(curator_client, doubtful):
    curator_client.post(reverse("catalogue:review-skip", args=[doubtful["D"].pk]))
    page = curator_client.get(reverse("catalogue:review"))
    assert page.context["artwork"].pk == doubtful["B"].pk and page.context["skipped"] == 1
    assert not LabelCorrection.objects.exists()
    curator_client.post(reverse("catalogue:review-reset"))
    assert curator_client.get(reverse("catalogue:review")).context["artwork"].pk == doubtful["D"].pk


def test_viewers_see_the_queue_without_controls_and_cannot_label(viewer_client, doubtful):
    page = viewer_client.get(reverse("catalogue:review"))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="review-form"' not in html and "data-key" not in html
    assert reverse("catalogue:review") not in html.split("<main>")[0], "no Review link in a viewer's nav"
    for url, data in [
        (reverse("catalogue:review-label", args=[doubtful["A"].pk]), {"type": "painting"}),
        (reverse("catalogue:review-label", args=[doubtful["A"].pk]), {"confirm": "1"}),
        (reverse("catalogue:review-skip", args=[doubtful["A"].pk]), {}),
    ]:
        assert viewer_client.post(url, data).status_code == 403
    assert not LabelCorrection.objects.exists()


def test_anonymous_users_are_sent_to_log_in(client, doubtful):
    response = client.get(reverse("catalogue:review"))
    assert response.status_code == 302 and "/accounts/login/" in response.url
    response = client.post(reverse("catalogue:review-label", args=[doubtful["A"].pk]), {"type": "painting"})
    assert response.status_code == 302 and not LabelCorrection.objects.exists()


def test_empty_queue_says_so(curator_client, active_model):
    page = curator_client.get(reverse("catalogue:review"))
    assert page.status_code == 200 and 'id="queue-empty"' in page.content.decode()


def test_training_examples_put_curator_labels_first(active_model, curator):
    predicted_only = ready_artwork(active_model, confident("sculpture"))
    corrected = ready_artwork(active_model, confident("painting"))
    label_correct(
        artwork=corrected, to_type=type_of("drawings"), user=curator, source=LabelCorrection.Source.REVIEW
    )
    imported = ArtworkFactory(
        curator_type=type_of("iconography"), status=Artwork.Status.READY
    )  # labelled, no prediction
    ArtworkFactory(curator_type=type_of("engraving"))  # labelled but still pending: left out
    ArtworkFactory(status=Artwork.Status.READY)  # ready, neither label nor prediction: left out

    examples = training_examples()
    assert [(e.artwork_id, e.type_slug, e.curator_labelled) for e in examples] == [
        (corrected.pk, "drawings", True),
        (imported.pk, "iconography", True),
        (predicted_only.pk, "sculpture", False),
    ]
    assert examples[0].read_bytes() == Artwork.objects.get(pk=corrected.pk).image.read()
    assert examples[0].path and examples[0].path.endswith(corrected.image.name.split("/")[-1])
    assert [e.artwork_id for e in training_examples(curator_only=True)] == [
        corrected.pk,
        imported.pk,
    ]
