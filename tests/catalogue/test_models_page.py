"""The portal's Models page: who may look and who may act, what it shows (the active version, label changes, types
the next version learns, the job's progress, the gold-set comparison and the gate), and one-click activation."""

from __future__ import annotations

import numpy as np
import pytest
from django.urls import reverse
from django.utils.html import escape

from catalogue.models import LabelCorrection, TrainingJob
from catalogue.services.artwork_types import artwork_type_create
from catalogue.services.training import gold_gate
from catalogue.services.training_gate import gold_metrics
from inference.models import ModelVersion
from inference.services import model_versions_sync
from tests.catalogue.curation_helpers import logged_in
from tests.catalogue.training_helpers import SLUGS, work
from tests.conftest import TINY_VERSION, write_tiny_model

pytestmark = pytest.mark.django_db
PAGE = reverse("catalogue:models")


@pytest.fixture
def curator_client(client, curator):
    return logged_in(client, curator)


@pytest.fixture
def viewer_client(client, viewer):
    return logged_in(client, viewer)


def finished_job(version: str, *, new_right: int, active_right: int) -> TrainingJob:
    """A done job whose gate compared ``version`` with the tiny model on 25 gold works (5 per type): each version
    gets the first ``*_right`` works of every type right and takes the others for engravings (drawings, for the
    engravings)."""
    labels = np.repeat(np.arange(5), 5)

    def predictions(right: int) -> np.ndarray:
        predicted = labels.copy()
        for t in range(5):
            wrong = np.flatnonzero(labels == t)[right:]
            predicted[wrong] = 1 if t == 0 else 0
        return predicted

    comparison = {
        "classes": SLUGS,
        "left_out_types_neither_knows": 0,
        "new": {"version": version, "known": SLUGS, **gold_metrics(labels, predictions(new_right), SLUGS)},
        "active": {
            "version": TINY_VERSION,
            "known": SLUGS,
            **gold_metrics(labels, predictions(active_right), SLUGS),
        },
    }
    return TrainingJob.objects.create(
        status="done", version=version, gate=gold_gate(comparison), stage="done"
    )


def test_the_page_needs_a_login(client):
    for url in (PAGE, reverse("catalogue:training-status", args=[1])):
        response = client.get(url)
        assert response.status_code == 302 and reverse("login") in response["Location"]


def test_a_viewer_reads_but_may_not_train_cancel_or_activate(viewer_client, active_model):
    job = TrainingJob.objects.create()
    response = viewer_client.get(PAGE)
    html = response.content.decode()
    assert response.status_code == 200
    assert TINY_VERSION in html and 'id="training-job"' in html
    assert reverse("catalogue:training-start") not in html and "Cancel</button>" not in html
    for name, args in (
        ("training-start", []),
        ("training-cancel", [job.pk]),
        ("training-activate", [job.pk]),
    ):
        assert viewer_client.post(reverse(f"catalogue:{name}", args=args)).status_code == 403
    job.refresh_from_db()
    assert job.status == "queued" and TrainingJob.objects.count() == 1


def test_the_nav_links_to_the_page(viewer_client, active_model):
    assert f'href="{PAGE}"' in viewer_client.get(reverse("catalogue:artwork-list")).content.decode()


def test_a_curator_starts_follows_and_cancels_a_job(curator_client, curator, active_model, broker):
    html = curator_client.get(PAGE).content.decode()
    assert "Train a new version</button>" in html
    response = curator_client.post(reverse("catalogue:training-start"), follow=True)
    job = TrainingJob.objects.get()
    assert (job.status, job.requested_by) == ("queued", curator)
    html = response.content.decode()
    assert f"Training job {job.pk} queued" in html
    assert 'disabled title="One job at a time"' in html  # one job at a time
    assert reverse("catalogue:training-status", args=[job.pk]) in html and "js/models.js" in html
    assert "<script>" not in html  # the polling is a static file, no inline script

    TrainingJob.objects.filter(pk=job.pk).update(
        status="running",
        stage="training",
        member=1,
        members=1,
        epoch=3,
        epochs=15,
        log="epoch 3/15  loss 0.9\n",
    )
    status = curator_client.get(reverse("catalogue:training-status", args=[job.pk])).json()
    assert status["active"] is True
    assert (status["stage"], status["member"], status["members"], status["epoch"], status["epochs"]) == (
        "training",
        1,
        1,
        3,
        15,
    )
    assert status["log"].endswith("loss 0.9\n")
    second = curator_client.post(reverse("catalogue:training-start"), follow=True).content.decode()
    assert "one job at a time" in second and TrainingJob.objects.count() == 1

    TrainingJob.objects.filter(pk=job.pk).update(status="queued")
    curator_client.post(reverse("catalogue:training-cancel", args=[job.pk]))
    job.refresh_from_db()
    assert job.status == "cancelled"
    assert curator_client.get(reverse("catalogue:training-status", args=[job.pk])).json()["active"] is False


def test_the_gold_comparison_side_by_side_and_activation_when_the_gate_passed(
    curator_client, active_model, settings, tmp_path
):
    settings.ARTSITE_MODEL_DIRS = [*settings.ARTSITE_MODEL_DIRS, tmp_path]
    write_tiny_model(tmp_path, "candidate", seed=1)
    model_versions_sync()
    job = finished_job("candidate", new_right=5, active_right=4)
    assert job.gate["offered"] is True
    html = curator_client.get(PAGE).content.decode()
    assert 'id="gold-comparison"' in html and escape(job.gate["reason"]) in html
    assert "0.800" in html and "1.000" in html  # gold accuracy: active 20/25, new 25/25
    assert html.count('class="heatmap confusion"') == 2  # both confusion matrices
    assert "Activate candidate</button>" in html

    curator_client.post(reverse("catalogue:training-activate", args=[job.pk]))
    # No ready artwork needs re-embedding here, so the switch is immediate (model_activate).
    assert ModelVersion.objects.active().get().version == "candidate"


def test_no_activate_button_when_the_gate_refused(curator_client, active_model, settings, tmp_path):
    settings.ARTSITE_MODEL_DIRS = [*settings.ARTSITE_MODEL_DIRS, tmp_path]
    write_tiny_model(tmp_path, "weaker", seed=2)
    model_versions_sync()
    job = finished_job("weaker", new_right=3, active_right=4)
    assert job.gate["offered"] is False
    html = curator_client.get(PAGE).content.decode()
    assert "Not offered" in html and "Activate weaker" not in html
    assert 'class="falls"' in html  # the recalls that fell are marked
    response = curator_client.post(reverse("catalogue:training-activate", args=[job.pk]), follow=True)
    assert "did not pass the gate" in response.content.decode()
    assert ModelVersion.objects.active().get().version == TINY_VERSION


def test_the_page_says_how_many_verified_works_a_new_type_needs(viewer_client, active_model):
    artwork_type_create(name="Textile")
    for _ in range(3):
        work("textile", colour=5, gold_split=False)
    work("textile", colour=5, gold_split=False, verified=False)  # imported: not verified
    html = viewer_client.get(PAGE).content.decode()
    row = html.split('data-type="textile"')[1].split("</tr>")[0]
    assert "does not know it" in row and "needs 17 more verified works" in row
    drawings = html.split('data-type="drawings"')[1].split("</tr>")[0]
    assert "learns it" in drawings and "knows it" in drawings


def test_the_page_counts_labels_changed_since_the_active_version(viewer_client, active_model, curator):
    from catalogue.services.labels import label_correct
    from tests.catalogue.curation_helpers import type_of

    artwork = work("painting", gold_split=False, verified=False)
    label_correct(
        artwork=artwork, to_type=type_of("drawings"), user=curator, source=LabelCorrection.Source.REVIEW
    )
    html = viewer_client.get(PAGE).content.decode()
    assert "<strong>2</strong> labels added or changed" in html
    assert "1 set by a curator, 0 confirmed by a curator, 1 given at import" in html


def test_the_page_shows_the_served_copys_figures(client, curator, active_model):
    from inference.models import ModelVersion

    ModelVersion.objects.filter(pk=active_model.pk).update(
        card={
            **active_model.card,
            "metrics": {"accuracy": 0.95, "evaluated_on": "val", "n": 10},
            "serving": {"metrics": {"accuracy": 0.9}},
        }
    )
    client.force_login(curator)
    html = client.get("/models/").content.decode()
    assert "90%" in html and "95%" not in html  # what workers serve, not the float model
