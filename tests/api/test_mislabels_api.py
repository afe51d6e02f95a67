"""The possible-mislabels queue in the API (GET mislabels/, POST mislabels/{artwork_id}/decide/), and the label's
provenance on artworks (fields and the ``provenance`` filter)."""

from __future__ import annotations

import pytest

from catalogue.models import Artwork, ArtworkType, LabelCorrection
from catalogue.services.labels import label_confirm, label_correct
from tests.api.conftest import assert_error
from tests.factories import ArtworkFactory, LabelCheckFactory, label_issue_for

pytestmark = pytest.mark.django_db

LIST = "/api/v1/mislabels/"


def decide_url(artwork_id: int) -> str:
    return f"/api/v1/mislabels/{artwork_id}/decide/"


def labelled(catalogue, index: int, slug: str, **kwargs) -> Artwork:  # type: ignore[no-untyped-def]
    """Give one of the catalogue's works an imported label."""
    artwork = catalogue[0][index]
    Artwork.objects.filter(pk=artwork.pk).update(
        curator_type=ArtworkType.objects.get(slug=slug), label_provenance=Artwork.Provenance.IMPORTED
    )
    artwork.refresh_from_db()
    return artwork


@pytest.fixture
def queue(catalogue):  # type: ignore[no-untyped-def]
    """Three doubted imported labels (qualities 0.3, 0.1, 0.2) and one the check trusts."""
    check = LabelCheckFactory(labelled=4)
    works = {}
    for index, (label, suggested, quality, flagged) in enumerate(
        [
            ("drawings", "painting", 0.3, True),
            ("engraving", "iconography", 0.1, True),
            ("drawings", "sculpture", 0.2, True),
            ("painting", "painting", 0.9, False),
        ]
    ):
        artwork = labelled(catalogue, index, label)
        label_issue_for(
            artwork,
            check=check,
            suggested=suggested,
            label_probability=quality,
            suggested_probability=0.6 if flagged else quality,
            quality=quality,
            flagged=flagged,
        )
        works[index] = artwork
    return works, check


def test_list_gives_the_queue_most_doubtful_first(viewer_api, queue):
    works, check = queue
    response = viewer_api.get(LIST)
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert [item["artwork_id"] for item in body["results"]] == [works[1].pk, works[2].pk, works[0].pk]
    first = body["results"][0]
    assert first["url"].endswith(f"/api/v1/artworks/{works[1].pk}/")
    assert first["page_url"].endswith(f"/artworks/{works[1].pk}/")
    assert first["decide_url"].endswith(decide_url(works[1].pk))
    assert first["thumbnail_url"].endswith(works[1].thumbnail.url)
    assert first["image_url"].endswith(f"/artworks/{works[1].pk}/display.jpg")
    assert first["title"] == works[1].title
    assert (first["label"], first["label_provenance"], first["suggested_type"]) == (
        "engraving",
        "imported",
        "iconography",
    )
    assert (first["label_probability"], first["suggested_probability"], first["quality"]) == (0.1, 0.6, 0.1)
    assert first["probabilities"] == pytest.approx(
        {"engraving": 0.1, "iconography": 0.6, "drawings": 0.1, "painting": 0.1, "sculpture": 0.1}
    )
    assert first["check_id"] == check.pk and first["checked_at"].startswith(str(check.finished_at.date()))


def test_list_is_paginated(viewer_api, queue):
    body = viewer_api.get(LIST, {"page_size": 2}).json()
    assert (body["count"], len(body["results"])) == (3, 2) and body["next"]
    assert len(viewer_api.get(body["next"]).json()["results"]) == 1


def test_list_is_empty_before_any_check_has_finished(viewer_api, catalogue):
    body = viewer_api.get(LIST).json()
    assert (body["count"], body["results"]) == (0, [])


def test_list_needs_an_account(anon, queue):
    assert_error(anon.get(LIST), 401, "not_authenticated")


@pytest.mark.parametrize(
    ("payload", "slug", "provenance"),
    [
        ({"decision": "keep"}, "engraving", "confirmed"),
        ({"decision": "suggestion", "note": "A printed plate."}, "iconography", "set"),
        ({"decision": "type", "type": "Sculptures"}, "sculpture", "set"),
    ],
)
def test_decide_settles_the_label_and_answers_with_the_artwork(
    curator_api, curator, queue, payload, slug, provenance
):
    works, _ = queue
    artwork = works[1]
    response = curator_api.post(decide_url(artwork.pk), payload, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["id"], body["curator_type"], body["type"]) == (artwork.pk, slug, slug)
    assert (body["label_provenance"], body["label_verified"]) == (provenance, True)
    correction = LabelCorrection.objects.filter(artwork=artwork).order_by("-id").first()
    assert (correction.from_type.slug, correction.to_type.slug) == ("engraving", slug)
    assert (correction.source, correction.user) == (LabelCorrection.Source.MISLABELS, curator)
    if "note" in payload:
        assert correction.note == payload["note"]
    remaining = [item["artwork_id"] for item in curator_api.get(LIST).json()["results"]]
    assert remaining == [works[2].pk, works[0].pk]
    # Settled: deciding again is a 404, and nothing more is written.
    count = LabelCorrection.objects.count()
    assert_error(
        curator_api.post(decide_url(artwork.pk), {"decision": "keep"}, format="json"), 404, "not_found"
    )
    assert LabelCorrection.objects.count() == count


@pytest.mark.parametrize(
    ("payload", "field", "code"),
    [
        ({}, "decision", "required"),
        ({"decision": "maybe"}, "decision", "invalid_choice"),
        ({"decision": "type"}, "type", "required"),
        ({"decision": "type", "type": "etching"}, "type", "unknown_type"),
        ({"decision": "keep", "type": "painting"}, "type", "invalid"),
        ({"decision": "keep", "note": "x" * 1001}, "note", "max_length"),
    ],
)
def test_bad_decisions_are_400_with_the_field(curator_api, queue, payload, field, code):
    works, _ = queue
    before = LabelCorrection.objects.count()
    body = assert_error(curator_api.post(decide_url(works[1].pk), payload, format="json"), 400, code)
    assert list(body["fields"]) == [field]
    assert LabelCorrection.objects.count() == before


def test_works_not_in_the_queue_are_404(curator_api, queue, catalogue):
    works, _ = queue
    label_confirm(artwork=works[2], source=LabelCorrection.Source.PORTAL)  # confirmed since the check
    unlabelled = catalogue[0][8]
    for artwork_id in (works[3].pk, works[2].pk, unlabelled.pk, 10**9, 2**70):
        body = assert_error(
            curator_api.post(decide_url(artwork_id), {"decision": "keep"}, format="json"), 404
        )
        assert body["code"] == "not_found"
    assert_error(curator_api.post("/api/v1/mislabels/abc/decide/", {"decision": "keep"}, format="json"), 404)


def test_viewers_cannot_decide(viewer_api, queue):
    works, _ = queue
    assert_error(
        viewer_api.post(decide_url(works[1].pk), {"decision": "keep"}, format="json"),
        403,
        "permission_denied",
    )
    works[1].refresh_from_db()
    assert works[1].label_provenance == Artwork.Provenance.IMPORTED


def test_decide_needs_an_account(anon, queue):
    works, _ = queue
    assert_error(anon.post(decide_url(works[1].pk), {"decision": "keep"}, format="json"), 401)


# --- Provenance on artworks ---------------------------------------------------------------------------------------


def test_artworks_say_where_their_label_came_from(viewer_api, catalogue, curator):
    artworks, _ = catalogue
    imported = labelled(catalogue, 0, "painting")
    confirmed = labelled(catalogue, 1, "engraving")
    label_confirm(artwork=confirmed, user=curator, source=LabelCorrection.Source.PORTAL)
    set_by_api = artworks[2]
    label_correct(
        artwork=set_by_api,
        to_type=ArtworkType.objects.get(slug="sculpture"),
        user=curator,
        source=LabelCorrection.Source.API,
    )
    expected = {
        imported.pk: ("imported", False),
        confirmed.pk: ("confirmed", True),
        set_by_api.pk: ("set", True),
        artworks[3].pk: (None, False),
    }
    for pk, (provenance, verified) in expected.items():
        body = viewer_api.get(f"/api/v1/artworks/{pk}/").json()
        assert (body["label_provenance"], body["label_verified"]) == (provenance, verified), pk


@pytest.mark.parametrize(
    ("value", "expected"),
    [("imported", [0]), ("confirmed", [1]), ("set", [2]), ("verified", [1, 2]), ("none", list(range(3, 12)))],
)
def test_artworks_can_be_filtered_by_provenance(viewer_api, catalogue, curator, value, expected):
    artworks, _ = catalogue
    labelled(catalogue, 0, "painting")
    label_confirm(artwork=labelled(catalogue, 1, "engraving"), source=LabelCorrection.Source.PORTAL)
    label_correct(
        artwork=artworks[2],
        to_type=ArtworkType.objects.get(slug="sculpture"),
        source=LabelCorrection.Source.API,
    )
    body = viewer_api.get("/api/v1/artworks/", {"provenance": value, "page_size": 50}).json()
    assert sorted(item["id"] for item in body["results"]) == sorted(artworks[i].pk for i in expected)


def test_an_unknown_provenance_is_a_400(viewer_api, catalogue):
    body = assert_error(viewer_api.get("/api/v1/artworks/", {"provenance": "guessed"}), 400, "invalid_choice")
    assert list(body["fields"]) == ["provenance"]


def test_a_new_upload_has_no_label_and_no_provenance(viewer_api, active_model):
    artwork = ArtworkFactory(status="ready")
    body = viewer_api.get(f"/api/v1/artworks/{artwork.pk}/").json()
    assert (body["curator_type"], body["label_provenance"], body["label_verified"]) == (None, None, False)
