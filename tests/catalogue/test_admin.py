"""The admin: list columns and filters, the change page, relabelling (always audited, source=admin), bulk actions,
the read-only audit trail and Models pages, and what each group may do."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from catalogue.models import Artwork, LabelCorrection
from inference.models import ModelVersion
from tests.catalogue.curation_helpers import confident, logged_in, ready_artwork, reopen_broker_pool, type_of
from tests.factories import ArtworkFactory, UserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:catalogue_artwork_changelist"


@pytest.fixture
def curator_client(client, curator):
    return logged_in(client, curator)


@pytest.fixture
def staff_viewer_client(client, viewer):
    viewer.is_staff = True
    viewer.save()
    return logged_in(client, viewer)


@pytest.fixture
def works(active_model, curator):
    """A small catalogue: confident and doubtful predictions, a labelled work, a failed one."""
    painting = ready_artwork(active_model, confident("painting", 0.97), title="Sunset over the harbour")
    doubtful = ready_artwork(active_model, confident("sculpture", 0.42), title="Torso fragment")
    labelled = ready_artwork(active_model, confident("drawings", 0.85), title="Study of hands")
    from catalogue.services.labels import label_correct

    label_correct(
        artwork=labelled, to_type=type_of("engraving"), user=curator, source=LabelCorrection.Source.PORTAL
    )
    failed = ArtworkFactory(status=Artwork.Status.FAILED, title="Broken scan")
    return {"painting": painting, "doubtful": doubtful, "labelled": labelled, "failed": failed}


def listed(client, **params) -> list[str]:
    response = client.get(reverse(CHANGELIST), params)
    assert response.status_code == 200
    return sorted(a.title for a in response.context["cl"].result_list)


def test_list_shows_the_models_view_of_each_work(curator_client, works, active_model):
    response = curator_client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    html = response.content.decode()
    row = next(a for a in response.context["cl"].result_list if a.pk == works["labelled"].pk)
    assert (row.pred_type_name, row.effective_type_name, row.pred_version_name) == (
        "Drawing",
        "Engraving",
        active_model.version,
    )
    assert works["painting"].thumbnail.url in html
    assert "97%" in html and "42%" in html and "85%" in html
    for column in ("predicted type", "confidence", "curator type", "effective type", "model version"):
        assert column.lower() in html.lower()


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"predicted": "painting"}, ["Sunset over the harbour"]),
        ({"predicted": "drawings"}, ["Study of hands"]),
        ({"predicted": "none"}, ["Broken scan"]),
        ({"type": "engraving"}, ["Study of hands"]),
        ({"type": "drawings"}, []),
        ({"status__exact": "failed"}, ["Broken scan"]),
        ({"labelled": "yes"}, ["Study of hands"]),
        ({"labelled": "no"}, ["Broken scan", "Sunset over the harbour", "Torso fragment"]),
        ({"confidence": "lt50"}, ["Torso fragment"]),
        ({"confidence": "80-95"}, ["Study of hands"]),
        ({"confidence": "95+"}, ["Sunset over the harbour"]),
        ({"model_version": "test-tiny"}, ["Study of hands", "Sunset over the harbour", "Torso fragment"]),
        ({"model_version": "none"}, ["Broken scan"]),
        ({"q": "harbour"}, ["Sunset over the harbour"]),
    ],
)
def test_filters_and_search(curator_client, works, params, expected):
    assert listed(curator_client, **params) == expected


def test_list_can_be_sorted_by_confidence(curator_client, works):
    response = curator_client.get(reverse(CHANGELIST), {"o": "4"})  # the 4th column: confidence, ascending
    titles = [a.title for a in response.context["cl"].result_list]
    assert titles[:3] == ["Torso fragment", "Study of hands", "Sunset over the harbour"]


def test_change_page_shows_probabilities_similar_works_and_history(curator_client, works):
    response = curator_client.get(reverse("admin:catalogue_artwork_change", args=[works["painting"].pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Painting</strong>, 97% confident" in html
    for other in ("doubtful", "labelled"):
        assert works[other].thumbnail.url in html
        assert reverse("admin:catalogue_artwork_change", args=[works[other].pk]) in html
    assert 'name="set_type"' in html and 'name="curator_type"' not in html

    history = curator_client.get(
        reverse("admin:catalogue_artwork_change", args=[works["labelled"].pk])
    ).content.decode()
    assert "Type history (audit trail)" in history and "Portal" in history


def change_form_data(client, artwork, **overrides):
    """The change form as the browser would post it back, with ``overrides``."""
    response = client.get(reverse("admin:catalogue_artwork_change", args=[artwork.pk]))
    form = response.context["adminform"].form
    data = {name: form.initial.get(name) or "" for name in form.fields}
    for inline in response.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        data.update({f"{management.prefix}-{name}": value for name, value in management.initial.items()})
    data.update(overrides)
    return data


def test_setting_the_type_on_the_change_form_is_audited(curator_client, curator, works):
    artwork = works["doubtful"]
    url = reverse("admin:catalogue_artwork_change", args=[artwork.pk])
    data = change_form_data(
        curator_client,
        artwork,
        set_type=type_of("painting").pk,
        type_note="signed canvas",
        title="Torso fragment (cast)",
    )
    response = curator_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    artwork.refresh_from_db()
    assert artwork.curator_type == type_of("painting") and artwork.title == "Torso fragment (cast)"
    correction = LabelCorrection.objects.get(artwork=artwork)
    assert (
        correction.source,
        correction.from_type,
        correction.to_type,
        correction.user,
        correction.note,
    ) == ("admin", type_of("sculpture"), type_of("painting"), curator, "signed canvas")

    # Saving again without touching the type writes no second record.
    curator_client.post(url, change_form_data(curator_client, artwork, artist="Workshop"))
    assert LabelCorrection.objects.filter(artwork=artwork).count() == 1
    assert Artwork.objects.get(pk=artwork.pk).artist == "Workshop"


def test_change_form_refuses_a_duplicate_accession_number(curator_client, works):
    Artwork.objects.filter(pk=works["painting"].pk).update(accession_number="INV-1")
    data = change_form_data(curator_client, works["doubtful"], accession_number="INV-1")
    response = curator_client.post(
        reverse("admin:catalogue_artwork_change", args=[works["doubtful"].pk]), data
    )
    assert response.status_code == 200 and "already exists" in response.content.decode()
    assert Artwork.objects.get(pk=works["doubtful"].pk).accession_number is None


def run_action(client, action, artworks):
    return client.post(
        reverse(CHANGELIST),
        {"action": action, ACTION_CHECKBOX_NAME: [a.pk for a in artworks], "index": 0},
        follow=True,
    )


def test_confirm_action_labels_with_the_predicted_type(curator_client, curator, works):
    response = run_action(curator_client, "confirm_predicted_type", works.values())
    html = response.content.decode()
    assert "2 artwork(s) confirmed" in html and "1 skipped: no prediction" in html
    assert "1 left as they are: a curator gave them another type" in html
    for name, slug in (("painting", "painting"), ("doubtful", "sculpture")):
        correction = LabelCorrection.objects.get(artwork=works[name])
        assert (correction.source, correction.to_type, correction.user) == ("admin", type_of(slug), curator)
    # A curator's label outranks the model: the engraving stays, with no admin record.
    works["labelled"].refresh_from_db()
    assert works["labelled"].curator_type == type_of("engraving")
    assert not LabelCorrection.objects.filter(artwork=works["labelled"], source="admin").exists()
    assert Artwork.objects.get(pk=works["failed"].pk).curator_type is None
    # Confirming again changes nothing.
    response = run_action(curator_client, "confirm_predicted_type", [works["painting"]])
    assert "1 already had that type" in response.content.decode()
    assert LabelCorrection.objects.filter(source="admin").count() == 2


def test_set_type_action_labels_every_selected_work(curator_client, works):
    chosen = [works["painting"], works["failed"], works["labelled"]]
    response = run_action(curator_client, "set_type_iconography", chosen)
    assert "3 artwork(s) set to Iconography" in response.content.decode()
    for artwork in chosen:
        artwork.refresh_from_db()
        assert artwork.curator_type == type_of("iconography")
        assert artwork.label_corrections.filter(source="admin", to_type=type_of("iconography")).count() == 1
    # Again: nothing changes, nothing is recorded.
    response = run_action(curator_client, "set_type_iconography", chosen)
    assert "3 already had that type" in response.content.decode()
    assert LabelCorrection.objects.filter(source="admin").count() == 3


def test_reprocess_action_queues_classification(
    curator_client, works, broker, django_capture_on_commit_callbacks
):
    reopen_broker_pool()
    with django_capture_on_commit_callbacks(execute=True):
        response = run_action(curator_client, "reprocess", [works["failed"]])
    assert "1 artwork(s) queued" in response.content.decode()
    assert Artwork.objects.get(pk=works["failed"].pk).status == Artwork.Status.PENDING
    assert broker.llen("celery") == 1


def test_artworks_are_neither_added_nor_deleted_in_the_admin(curator_client, works):
    assert curator_client.get(reverse("admin:catalogue_artwork_add")).status_code == 403
    assert (
        curator_client.get(reverse("admin:catalogue_artwork_delete", args=[works["painting"].pk])).status_code
        == 403
    )
    actions = curator_client.get(reverse(CHANGELIST)).context["action_form"].fields["action"].choices
    names = [name for name, _ in actions]
    assert "delete_selected" not in names
    assert {"confirm_predicted_type", "reprocess", "set_type_painting", "set_type_sculpture"} <= set(names)


def test_audit_trail_is_listed_and_read_only(curator_client, works):
    url = reverse("admin:catalogue_labelcorrection_changelist")
    response = curator_client.get(url, {"source__exact": "portal"})
    assert response.status_code == 200 and len(response.context["cl"].result_list) == 1
    assert "Study of hands" in response.content.decode()
    correction = LabelCorrection.objects.get()
    assert curator_client.get(reverse("admin:catalogue_labelcorrection_add")).status_code == 403
    change_url = reverse("admin:catalogue_labelcorrection_change", args=[correction.pk])
    assert curator_client.get(change_url).status_code == 200  # viewable
    assert curator_client.post(change_url, {"note": "rewritten"}).status_code == 403
    assert (
        curator_client.post(
            reverse("admin:catalogue_labelcorrection_delete", args=[correction.pk])
        ).status_code
        == 403
    )
    assert LabelCorrection.objects.get().note == ""


def test_models_page_lists_versions_metrics_and_the_active_one(curator_client, active_model):
    ModelVersion.objects.create(
        version="v-candidate",
        path="/x",
        card={
            "architecture": "efficientnet",
            "metrics": {"accuracy": 0.913, "macro_f1": 0.9, "ece": 0.031, "n": 400},
        },
    )
    response = curator_client.get(reverse("admin:inference_modelversion_changelist"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "<title>Models" in html or "Models |" in html
    assert "v-candidate" in html and "91.3%" in html and "0.031" in html and "400 images" in html
    active_row = next(v for v in response.context["cl"].result_list if v.is_active)
    assert active_row.version == active_model.version
    assert (
        response.context["action_form"] is None
        or not response.context["action_form"].fields["action"].choices[1:]
    )
    detail = curator_client.get(reverse("admin:inference_modelversion_change", args=[active_model.pk]))
    assert detail.status_code == 200 and "20.0%" in detail.content.decode()  # the tiny model's card accuracy
    assert "0 of 0 ready works have this version" in detail.content.decode()
    assert (
        curator_client.post(
            reverse("admin:inference_modelversion_change", args=[active_model.pk]), {}
        ).status_code
        == 403
    )


def test_viewers_who_are_not_staff_cannot_enter_the_admin(client, viewer, works):
    logged_in(client, viewer)
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 302 and "/admin/login/" in response.url


def test_staff_viewers_see_everything_read_only_without_actions(staff_viewer_client, works):
    response = staff_viewer_client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    assert response.context["action_form"] is None
    url = reverse("admin:catalogue_artwork_change", args=[works["doubtful"].pk])
    page = staff_viewer_client.get(url)
    assert page.status_code == 200 and 'name="set_type"' not in page.content.decode()
    assert (
        staff_viewer_client.post(url, {"title": "Renamed", "set_type": type_of("painting").pk}).status_code
        == 403
    )
    run_action(staff_viewer_client, "set_type_painting", [works["doubtful"]])
    assert not LabelCorrection.objects.filter(source="admin").exists()
    assert Artwork.objects.get(pk=works["doubtful"].pk).title == "Torso fragment"


def test_users_without_any_permission_see_nothing(client, works):
    nobody = UserFactory(username="nobody", is_staff=True)
    logged_in(client, nobody)
    assert client.get(reverse(CHANGELIST)).status_code == 403
