"""Where a label came from (given at import, set or confirmed by a curator): shown on the artwork page and in the
admin, filtered by in the one FilterSet, confirmed from the artwork page, and the quality page's agreement split by
it."""

from __future__ import annotations

import pytest
from django.urls import reverse

from catalogue.filters import ArtworkFilterSet
from catalogue.models import Artwork, LabelCorrection
from catalogue.selectors.artworks import artworks_with_prediction
from catalogue.selectors.curation import model_agreement
from catalogue.services.labels import label_confirm, label_correct
from tests.catalogue.curation_helpers import confident, logged_in, ready_artwork, type_of
from tests.factories import ArtworkFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def curator_client(client, curator):
    return logged_in(client, curator)


@pytest.fixture
def viewer_client(client, viewer):
    return logged_in(client, viewer)


@pytest.fixture
def sources(active_model, curator):
    """One work of each provenance, and one without a label."""
    imported = ready_artwork(
        active_model, confident("painting"), curator_type=type_of("drawings"), title="Imported"
    )
    set_by_curator = ready_artwork(active_model, confident("painting"), title="Set")
    label_correct(
        artwork=set_by_curator,
        to_type=type_of("sculpture"),
        user=curator,
        source=LabelCorrection.Source.PORTAL,
    )
    confirmed = ready_artwork(
        active_model, confident("engraving"), curator_type=type_of("engraving"), title="Confirmed"
    )
    label_confirm(artwork=confirmed, user=curator, source=LabelCorrection.Source.REVIEW)
    unlabelled = ready_artwork(active_model, confident("iconography"), title="Unlabelled")
    return {"imported": imported, "set": set_by_curator, "confirmed": confirmed, "none": unlabelled}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("none", ["Unlabelled"]),
        ("imported", ["Imported"]),
        ("set", ["Set"]),
        ("confirmed", ["Confirmed"]),
        ("verified", ["Confirmed", "Set"]),
    ],
)
def test_provenance_filter(sources, value, expected):
    filters = ArtworkFilterSet({"provenance": value}, queryset=artworks_with_prediction())
    assert filters.is_valid(), filters.errors
    assert sorted(a.title for a in filters.qs) == expected


def test_an_unknown_provenance_is_a_form_error(sources):
    filters = ArtworkFilterSet({"provenance": "guessed"}, queryset=artworks_with_prediction())
    assert not filters.is_valid() and "provenance" in filters.errors


def test_catalogue_page_filters_by_provenance(viewer_client, sources):
    response = viewer_client.get(reverse("catalogue:artwork-list"), {"provenance": "verified"})
    assert sorted(a.title for a in response.context["page"].items) == ["Confirmed", "Set"]
    assert 'name="provenance"' in response.content.decode()


@pytest.mark.parametrize(
    ("name", "text", "verified"),
    [
        ("imported", "given at import", False),
        ("set", "set by a curator", True),
        ("confirmed", "confirmed by a curator", True),
    ],
)
def test_artwork_page_shows_where_the_label_came_from(viewer_client, sources, name, text, verified):
    html = viewer_client.get(reverse("catalogue:artwork-detail", args=[sources[name].pk])).content.decode()
    line = html[html.index('id="label-provenance"') :][:600]
    assert text in line
    assert ("verified</span>" in line) is verified
    assert ("not verified by a curator" in line) is not verified


def test_artwork_page_without_a_label_says_the_type_is_the_models(viewer_client, sources):
    html = viewer_client.get(reverse("catalogue:artwork-detail", args=[sources["none"].pk])).content.decode()
    assert "No label: the type is the model's prediction." in html


def test_curators_confirm_an_imported_label_from_the_artwork_page(curator_client, curator, sources):
    artwork = sources["imported"]
    html = curator_client.get(reverse("catalogue:artwork-detail", args=[artwork.pk])).content.decode()
    assert 'id="confirm-form"' in html and "Confirm Drawing" in html
    response = curator_client.post(reverse("catalogue:artwork-confirm", args=[artwork.pk]))
    assert response.status_code == 302 and response["Location"] == reverse(
        "catalogue:artwork-detail", args=[artwork.pk]
    )
    artwork.refresh_from_db()
    assert (artwork.curator_type.slug, artwork.label_provenance) == ("drawings", Artwork.Provenance.CONFIRMED)
    correction = LabelCorrection.objects.filter(artwork=artwork).order_by("-id").first()
    assert (correction.from_type.slug, correction.to_type.slug, correction.source, correction.user) == (
        "drawings",
        "drawings",
        LabelCorrection.Source.PORTAL,
        curator,
    )
    # Verified now: no Confirm button any more.
    html = curator_client.get(reverse("catalogue:artwork-detail", args=[artwork.pk])).content.decode()
    assert 'id="confirm-form"' not in html


def test_confirming_an_unlabelled_work_adopts_the_models_type(curator_client, sources):
    artwork = sources["none"]
    curator_client.post(reverse("catalogue:artwork-confirm", args=[artwork.pk]))
    artwork.refresh_from_db()
    assert (artwork.curator_type.slug, artwork.label_provenance) == (
        "iconography",
        Artwork.Provenance.CONFIRMED,
    )


def test_confirming_a_work_without_any_type_changes_nothing(curator_client, db):
    artwork = ArtworkFactory()  # pending: no label, no prediction
    response = curator_client.post(reverse("catalogue:artwork-confirm", args=[artwork.pk]), follow=True)
    assert "nothing to confirm" in response.content.decode()
    assert not LabelCorrection.objects.filter(artwork=artwork).exists()


def test_viewers_cannot_confirm(viewer_client, sources):
    artwork = sources["imported"]
    html = viewer_client.get(reverse("catalogue:artwork-detail", args=[artwork.pk])).content.decode()
    assert 'id="confirm-form"' not in html
    assert viewer_client.post(reverse("catalogue:artwork-confirm", args=[artwork.pk])).status_code == 403
    artwork.refresh_from_db()
    assert artwork.label_provenance == Artwork.Provenance.IMPORTED


# --- Admin --------------------------------------------------------------------------------------------------------


def test_admin_lists_and_filters_by_provenance(curator_client, sources):
    changelist = reverse("admin:catalogue_artwork_changelist")
    response = curator_client.get(changelist)
    rows = {a.title: a for a in response.context["cl"].result_list}
    admin = response.context["cl"].model_admin
    assert admin.provenance(rows["Imported"]) == "Given at import"
    assert admin.provenance(rows["Set"]) == "Set by a curator ✓ verified"
    assert admin.provenance(rows["Confirmed"]) == "Confirmed by a curator ✓ verified"
    assert admin.provenance(rows["Unlabelled"]) == "–"
    assert "label source" in response.content.decode().lower()
    for value, expected in [
        ("verified", ["Confirmed", "Set"]),
        ("imported", ["Imported"]),
        ("none", ["Unlabelled"]),
    ]:
        response = curator_client.get(changelist, {"provenance": value})
        assert sorted(a.title for a in response.context["cl"].result_list) == expected


# --- Quality split by provenance ----------------------------------------------------------------------------------


@pytest.fixture
def split(active_model, curator):
    """The model against labels of each provenance, counted by hand:

    imported:  3 works labelled painting; the model says painting on 1, sculpture on 2        → 1 of 3
    set:       engraving on a work predicted engraving (agrees), drawings on one predicted painting → 1 of 2
    confirmed: the model's sculpture confirmed; imported drawings (predicted drawings) confirmed; imported
               iconography (predicted painting) confirmed                                       → 2 of 3
    """
    for predicted in ("painting", "sculpture", "sculpture"):
        ready_artwork(active_model, confident(predicted), curator_type=type_of("painting"))
    for predicted, label in (("engraving", "engraving"), ("painting", "drawings")):
        artwork = ready_artwork(active_model, confident(predicted))
        label_correct(
            artwork=artwork, to_type=type_of(label), user=curator, source=LabelCorrection.Source.PORTAL
        )
    for predicted, label in (("sculpture", None), ("drawings", "drawings"), ("painting", "iconography")):
        artwork = ready_artwork(
            active_model, confident(predicted), curator_type=type_of(label) if label else None
        )
        label_confirm(artwork=artwork, user=curator, source=LabelCorrection.Source.REVIEW)
    ready_artwork(active_model, confident("painting"))  # no label: not compared


def test_agreement_is_split_by_provenance_in_one_query(split, active_model, django_assert_max_num_queries):
    with django_assert_max_num_queries(2):  # the types, and one grouped count
        agreement = model_agreement(version=active_model)
    assert (agreement.compared, agreement.agreed) == (8, 4)
    by = {p.provenance: p.agreement for p in agreement.by_provenance}
    assert [p.provenance for p in agreement.by_provenance] == ["imported", "set", "confirmed"]
    assert (by["imported"].compared, by["imported"].agreed) == (3, 1)
    assert (by["set"].compared, by["set"].agreed) == (2, 1)
    assert (by["confirmed"].compared, by["confirmed"].agreed) == (3, 2)
    index = {t.slug: i for i, t in enumerate(agreement.types)}
    # Imported: rows are the label (painting), columns the model.
    assert by["imported"].matrix[index["painting"]][index["sculpture"]] == 2
    assert by["confirmed"].matrix[index["iconography"]][index["painting"]] == 1


def test_quality_page_shows_the_split(viewer_client, split):
    response = viewer_client.get(reverse("catalogue:quality"))
    html = response.content.decode()
    table = html[html.index('id="by-provenance"') :]
    table = table[: table.index("</table>")]
    for provenance, compared, agreed, rate in [
        ("imported", 3, 1, "33%"),
        ("set", 2, 1, "50%"),
        ("confirmed", 3, 2, "67%"),
    ]:
        row = table[table.index(f'data-provenance="{provenance}"') :]
        row = row[: row.index("</tr>")]
        assert f'class="num">{compared}<' in row and f'class="num">{agreed}<' in row and f">{rate}<" in row
