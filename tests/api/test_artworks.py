"""artworks/: list with filters, search, ordering and pages; upload; detail; PATCH; DELETE; label."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from catalogue.models import Artwork, ArtworkType, LabelCorrection
from tests.api.conftest import TYPES, assert_error
from tests.factories import ArtworkFactory
from tests.images import decompression_bomb_png, image_bytes, truncated_jpeg

pytestmark = pytest.mark.django_db


def _ids(response) -> list[int]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.content[:300]
    return [item["id"] for item in response.json()["results"]]


# --- List -----------------------------------------------------------------------------------------------------


def test_list_pages_with_count_and_links(catalogue, viewer_api):
    artworks, _ = catalogue
    first = viewer_api.get("/api/v1/artworks/?page_size=5").json()
    assert first["count"] == 12 and len(first["results"]) == 5
    assert first["previous"] is None and first["next"].startswith("http://testserver/api/v1/artworks/?")
    # Keyset pages: `next` carries a cursor (issue 17); page numbers still work (below).
    second = viewer_api.get(first["next"]).json()
    third = viewer_api.get(second["next"]).json()
    assert len(third["results"]) == 2 and third["next"] is None and third["previous"]
    assert [a["id"] for a in viewer_api.get(third["previous"]).json()["results"]] == [
        a["id"] for a in second["results"]
    ]
    # Newest first by default; every artwork exactly once across the pages.
    seen = [
        a["id"]
        for page in (1, 2, 3)
        for a in viewer_api.get(f"/api/v1/artworks/?page_size=5&page={page}").json()["results"]
    ]
    assert seen == [a.pk for a in sorted(artworks, key=lambda a: (a.created_at, a.pk), reverse=True)]


def test_list_item_carries_prediction_and_urls(catalogue, viewer_api, active_model):
    artworks, _ = catalogue
    item = next(
        i
        for i in viewer_api.get("/api/v1/artworks/?page_size=100").json()["results"]
        if i["id"] == artworks[3].pk
    )
    assert item["type"] == "painting" and item["curator_type"] is None and item["status"] == "ready"
    assert item["prediction"]["type"] == "painting"
    assert item["prediction"]["model_version"] == active_model.version
    assert item["prediction"]["confidence"] == pytest.approx(0.62)
    assert set(item["prediction"]["probabilities"]) == set(TYPES)
    assert item["url"] == f"http://testserver/api/v1/artworks/{artworks[3].pk}/"
    assert item["page_url"] == f"http://testserver/artworks/{artworks[3].pk}/"
    # The display copy (no EXIF); the original is a curators' download.
    assert item["image_url"] == f"http://testserver/artworks/{artworks[3].pk}/display.jpg"
    assert item["original_url"] == f"http://testserver/artworks/{artworks[3].pk}/original/"
    assert item["thumbnail_url"].startswith("http://testserver/media/thumbnails/")


def test_page_size_is_capped_and_bad_page_is_json_404(catalogue, viewer_api):
    assert len(viewer_api.get("/api/v1/artworks/?page_size=1000").json()["results"]) == 12  # max 100
    assert_error(viewer_api.get("/api/v1/artworks/?page=99"), 404, "not_found")
    assert_error(viewer_api.get("/api/v1/artworks/?page=abc"), 404, "not_found")


def test_filters(catalogue, viewer_api, curator):
    from catalogue.services.labels import label_correct

    artworks, _ = catalogue
    by_type = _ids(viewer_api.get("/api/v1/artworks/?type=painting&page_size=100"))
    assert sorted(by_type) == sorted(a.pk for i, a in enumerate(artworks) if i % 5 == 3)
    assert sorted(_ids(viewer_api.get("/api/v1/artworks/?type=Paintings&page_size=100"))) == sorted(by_type)

    label_correct(
        artwork=artworks[0], to_type=ArtworkType.objects.get(slug="sculpture"), user=curator, source="api"
    )
    assert _ids(viewer_api.get("/api/v1/artworks/?labelled=true")) == [artworks[0].pk]
    assert artworks[0].pk not in _ids(viewer_api.get("/api/v1/artworks/?labelled=false&page_size=100"))
    assert len(_ids(viewer_api.get("/api/v1/artworks/?labelled=false&page_size=100"))) == 11
    # The curator's type is the effective type.
    assert artworks[0].pk in _ids(viewer_api.get("/api/v1/artworks/?type=sculpture&page_size=100"))

    pending = ArtworkFactory(title="Pending one")
    assert _ids(viewer_api.get("/api/v1/artworks/?status=pending")) == [pending.pk]
    assert pending.pk not in _ids(viewer_api.get("/api/v1/artworks/?status=ready&page_size=100"))

    # confidence = 0.5 + 0.04 i
    banded = _ids(viewer_api.get("/api/v1/artworks/?min_confidence=0.6&max_confidence=0.75&page_size=100"))
    assert sorted(banded) == sorted(a.pk for i, a in enumerate(artworks) if 0.6 <= 0.5 + 0.04 * i <= 0.75)


def test_model_version_filter(catalogue, viewer_api, active_model):
    assert (
        len(_ids(viewer_api.get(f"/api/v1/artworks/?model_version={active_model.version}&page_size=100")))
        == 12
    )
    assert_error(viewer_api.get("/api/v1/artworks/?model_version=nope"), 400, "unknown_model_version")


def test_search_title_artist_accession(catalogue, viewer_api):
    artworks, _ = catalogue
    assert _ids(viewer_api.get("/api/v1/artworks/?search=work 05")) == [artworks[5].pk]
    assert sorted(_ids(viewer_api.get("/api/v1/artworks/?search=hals&page_size=100"))) == sorted(
        a.pk for i, a in enumerate(artworks) if i % 3 == 0
    )
    assert _ids(viewer_api.get("/api/v1/artworks/?search=ACC-007")) == [artworks[7].pk]


def test_ordering(catalogue, viewer_api):
    artworks, _ = catalogue
    assert _ids(viewer_api.get("/api/v1/artworks/?ordering=title&page_size=100")) == [a.pk for a in artworks]
    assert _ids(viewer_api.get("/api/v1/artworks/?ordering=-title&page_size=100")) == [
        a.pk for a in reversed(artworks)
    ]
    assert _ids(viewer_api.get("/api/v1/artworks/?ordering=-confidence&page_size=3")) == [
        a.pk for a in artworks[::-1][:3]
    ]


@pytest.mark.parametrize(
    "query, field, code",
    [
        ("type=etching", "type", "unknown_type"),
        ("type=50%25s", "type", "unknown_type"),
        ("status=lost", "status", "invalid_choice"),
        ("labelled=maybe", "labelled", "invalid"),
        ("min_confidence=abc", "min_confidence", "invalid"),
        ("max_confidence=2", "max_confidence", "max_value"),
        ("min_confidence=0.9&max_confidence=0.1", "min_confidence", "invalid"),
        ("ordering=sha256", "ordering", "invalid_choice"),
    ],
)
def test_bad_filters_are_400_with_the_field(catalogue, viewer_api, query, field, code):
    body = assert_error(viewer_api.get(f"/api/v1/artworks/?{query}"), 400, code)
    assert field in body["fields"] and field in body["message"]


# --- Upload -------------------------------------------------------------------------------------------------


def _file(data: bytes, name: str = "photo.jpg", content_type: str = "image/jpeg") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type)


def test_upload_is_202_with_url_status_and_enqueued(
    curator_api, curator, broker, django_capture_on_commit_callbacks, active_model
):
    with django_capture_on_commit_callbacks(execute=True):
        response = curator_api.post(
            "/api/v1/artworks/",
            {
                "image": _file(image_bytes(41)),
                "title": "  Night Watch ",
                "artist": "Rembrandt",
                "date": "1642",
                "accession_number": "SK-C-5",
                "description": "Militia company",
            },
            format="multipart",
        )
    assert response.status_code == 202, response.content
    body = response.json()
    artwork = Artwork.objects.get(pk=body["id"])
    assert body["status"] == "pending" and body["prediction"] is None and body["type"] is None
    assert body["url"] == response["Location"] == f"http://testserver/api/v1/artworks/{artwork.pk}/"
    assert (artwork.title, artwork.artist, artwork.date, artwork.accession_number) == (
        "Night Watch",
        "Rembrandt",
        "1642",
        "SK-C-5",
    )
    assert artwork.uploaded_by == curator and artwork.image.storage.exists(artwork.image.name)
    assert broker.llen("celery") == 1  # the worker's task is queued


def test_upload_same_file_twice_is_409_with_the_existing_artwork(curator_api, media_files):
    data = image_bytes(42)
    first = curator_api.post("/api/v1/artworks/", {"image": _file(data), "title": "One"}, format="multipart")
    assert first.status_code == 202
    before = media_files()
    again = curator_api.post(
        "/api/v1/artworks/", {"image": _file(data, "other.jpg"), "title": "Two"}, format="multipart"
    )
    body = assert_error(again, 409, "duplicate")
    assert body["existing"] == {"id": first.json()["id"], "url": first.json()["url"]}
    assert "already in the catalogue" in body["message"]
    assert media_files() == before and Artwork.objects.count() == 1


def test_duplicate_accession_number_is_409(curator_api):
    ArtworkFactory(accession_number="A-1")
    response = curator_api.post(
        "/api/v1/artworks/",
        {"image": _file(image_bytes(43)), "title": "X", "accession_number": "A-1"},
        format="multipart",
    )
    body = assert_error(response, 409, "duplicate_accession")
    assert "accession_number" in body["fields"] and Artwork.objects.count() == 1


BAD_IMAGES = [
    pytest.param(b"%PDF-1.4 not an image at all", 415, "not_image", id="not-an-image"),
    pytest.param(truncated_jpeg(5), 400, "truncated", id="truncated"),
    pytest.param(decompression_bomb_png(), 413, "too_many_pixels", id="decompression-bomb"),
    pytest.param(image_bytes(6, fmt="GIF"), 415, "unsupported_format", id="gif"),
]


@pytest.mark.parametrize("data, status, code", BAD_IMAGES)
def test_bad_upload_is_refused_and_nothing_is_stored(curator_api, media_files, data, status, code):
    before = media_files()
    response = curator_api.post(
        "/api/v1/artworks/", {"image": _file(data), "title": "Bad"}, format="multipart"
    )
    body = assert_error(response, status, code)
    assert "image" in body["fields"]
    assert media_files() == before and Artwork.objects.count() == 0


def test_oversized_upload_is_413_and_nothing_is_stored(curator_api, media_files, settings):
    settings.ARTSITE_MAX_UPLOAD_BYTES = 10_000
    before = media_files()
    big = image_bytes(7, size=(400, 400), quality=100)
    assert len(big) > 10_000
    body = assert_error(
        curator_api.post("/api/v1/artworks/", {"image": _file(big), "title": "Big"}, format="multipart"),
        413,
        "too_large",
    )
    assert "limit" in body["message"]
    assert media_files() == before and Artwork.objects.count() == 0


@pytest.mark.parametrize(
    "payload, field, code",
    [
        ({"title": "No image"}, "image", "required"),
        ({"image": "not-a-file", "title": "Text"}, "image", "invalid"),
        ({"image": b""}, "title", "required"),
        ({"image": b"", "title": "  "}, "title", "blank"),
        ({"image": b"", "title": "x" * 301}, "title", "max_length"),
    ],
)
def test_missing_or_bad_fields_are_400(curator_api, media_files, payload, field, code):
    payload = {k: (_file(image_bytes(44)) if v == b"" else v) for k, v in payload.items()}
    before = media_files()
    body = assert_error(curator_api.post("/api/v1/artworks/", payload, format="multipart"), 400, code)
    assert field in body["fields"] and field in body["message"]
    assert media_files() == before and Artwork.objects.count() == 0


def test_empty_file_is_400(curator_api):
    body = assert_error(
        curator_api.post("/api/v1/artworks/", {"image": _file(b""), "title": "E"}, format="multipart"), 400
    )
    assert "image" in body["fields"]


def test_json_body_to_upload_is_400_not_500(curator_api):
    response = curator_api.post("/api/v1/artworks/", {"image": "aGVsbG8=", "title": "JSON"}, format="json")
    assert_error(response, 400)
    assert_error(
        curator_api.post("/api/v1/artworks/", "{broken", content_type="application/json"), 400, "parse_error"
    )
    assert_error(
        curator_api.post("/api/v1/artworks/", "x", content_type="text/plain"), 415, "unsupported_media_type"
    )


def test_upload_throttled_with_429(curator_api, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"classify": "100/min", "upload": "2/min"},
    }
    for seed in (51, 52):
        assert (
            curator_api.post(
                "/api/v1/artworks/", {"image": _file(image_bytes(seed)), "title": "T"}, format="multipart"
            ).status_code
            == 202
        )
    response = curator_api.post(
        "/api/v1/artworks/", {"image": _file(image_bytes(53)), "title": "T"}, format="multipart"
    )
    body = assert_error(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0 and "throttled" in body["message"].lower()
    assert Artwork.objects.count() == 2
    # Reads are not throttled by the upload scope.
    assert curator_api.get("/api/v1/artworks/").status_code == 200


# --- Detail, PATCH, DELETE ------------------------------------------------------------------------------------


def test_detail(catalogue, viewer_api, curator):
    from catalogue.services.labels import label_correct

    artwork = catalogue[0][1]
    label_correct(
        artwork=artwork, to_type=ArtworkType.objects.get(slug="painting"), user=curator, source="api"
    )
    body = viewer_api.get(f"/api/v1/artworks/{artwork.pk}/").json()
    assert body["id"] == artwork.pk and body["title"] == "Work 01" and body["accession_number"] == "ACC-001"
    assert body["prediction"]["type"] == "engraving"  # what the model says
    assert body["curator_type"] == "painting" and body["type"] == "painting"  # what counts
    assert body["status"] == "ready" and body["error"] == ""
    assert body["width"] == 64 and body["height"] == 48 and len(body["sha256"]) == 64


def test_detail_of_failed_artwork_shows_the_error(viewer_api):
    artwork = ArtworkFactory()
    Artwork.objects.filter(pk=artwork.pk).update(status="failed", error="The stored image cannot be read")
    body = viewer_api.get(f"/api/v1/artworks/{artwork.pk}/").json()
    assert body["status"] == "failed" and "cannot be read" in body["error"] and body["prediction"] is None


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/artworks/999999/",
        "/api/v1/artworks/99999999999999999999999/",
        "/api/v1/artworks/abc/",
        "/api/v1/artworks/999999/similar/",
    ],
)
def test_unknown_artwork_is_json_404(viewer_api, path):
    assert_error(viewer_api.get(path), 404, "not_found")


def test_patch_metadata(catalogue, curator_api):
    artwork = catalogue[0][2]
    response = curator_api.patch(
        f"/api/v1/artworks/{artwork.pk}/", {"title": "Renamed", "accession_number": ""}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["title"] == "Renamed" and response.json()["accession_number"] is None
    artwork.refresh_from_db()
    assert artwork.title == "Renamed" and artwork.accession_number is None and artwork.artist == "Rembrandt"
    # multipart works too
    assert (
        curator_api.patch(f"/api/v1/artworks/{artwork.pk}/", {"date": "1650"}, format="multipart").json()[
            "date"
        ]
        == "1650"
    )


@pytest.mark.parametrize(
    "payload, field, status, code",
    [
        ({"title": ""}, "title", 400, "blank"),
        ({"status": "ready"}, "status", 400, "not_editable"),
        ({"accession_number": "ACC-000"}, "accession_number", 409, "duplicate_accession"),
    ],
)
def test_patch_refuses_bad_changes(catalogue, curator_api, payload, field, status, code):
    artwork = catalogue[0][2]
    body = assert_error(
        curator_api.patch(f"/api/v1/artworks/{artwork.pk}/", payload, format="json"), status, code
    )
    assert field in body["fields"]
    artwork.refresh_from_db()
    assert (artwork.title, artwork.accession_number, artwork.status) == ("Work 02", "ACC-002", "ready")


def test_put_is_405(catalogue, curator_api):
    artwork = catalogue[0][2]
    body = assert_error(
        curator_api.put(f"/api/v1/artworks/{artwork.pk}/", {"title": "x"}, format="json"),
        405,
        "method_not_allowed",
    )
    assert "PUT" in body["message"]
    assert_error(curator_api.delete("/api/v1/artworks/"), 405, "method_not_allowed")
    assert_error(curator_api.post("/api/v1/types/", {}), 405, "method_not_allowed")


def test_delete_removes_row_and_files(catalogue, curator_api, django_capture_on_commit_callbacks):
    artwork = catalogue[0][4]
    image, thumb = artwork.image.path, artwork.thumbnail.path
    with django_capture_on_commit_callbacks(execute=True):
        assert curator_api.delete(f"/api/v1/artworks/{artwork.pk}/").status_code == 204
    assert not Artwork.objects.filter(pk=artwork.pk).exists()
    import os

    assert not os.path.exists(image) and not os.path.exists(thumb)
    assert_error(curator_api.delete(f"/api/v1/artworks/{artwork.pk}/"), 404, "not_found")


# --- Label ----------------------------------------------------------------------------------------------------


def test_label_sets_curator_type_and_writes_audit_trail(catalogue, curator_api, curator):
    artwork = catalogue[0][1]  # predicted engraving
    response = curator_api.post(
        f"/api/v1/artworks/{artwork.pk}/label/", {"type": "drawings", "note": "pencil"}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["artwork"]["type"] == "drawings" and body["artwork"]["curator_type"] == "drawings"
    assert body["correction"]["from_type"] == "engraving" and body["correction"]["to_type"] == "drawings"
    assert body["correction"]["source"] == "api" and body["correction"]["user"] == curator.username
    correction = LabelCorrection.objects.get(artwork=artwork)
    assert (correction.source, correction.note, correction.user) == ("api", "pencil", curator)
    artwork.refresh_from_db()
    assert artwork.curator_type.slug == "drawings"


@pytest.mark.parametrize(
    "payload, code", [({"type": "etching"}, "unknown_type"), ({}, "required"), ({"note": "x"}, "required")]
)
def test_label_bad_type_is_400_and_nothing_written(catalogue, curator_api, payload, code):
    artwork = catalogue[0][1]
    body = assert_error(
        curator_api.post(f"/api/v1/artworks/{artwork.pk}/label/", payload, format="json"), 400, code
    )
    assert "type" in body["fields"]
    if code == "unknown_type":
        assert "painting" in body["message"]  # it lists the types
    assert not LabelCorrection.objects.filter(artwork=artwork).exists()


# --- Types and models -----------------------------------------------------------------------------------------


def test_types_and_models(viewer_api, active_model):
    types = viewer_api.get("/api/v1/types/").json()
    assert [t["slug"] for t in types] == TYPES and types[3]["name"] == "Painting"
    assert viewer_api.get("/api/v1/types/sculpture/").json()["name"] == "Sculpture"
    assert_error(viewer_api.get("/api/v1/types/etching/"), 404, "not_found")

    models = viewer_api.get("/api/v1/models/").json()
    assert models[0]["version"] == active_model.version and models[0]["is_active"] is True
    assert models[0]["status"] == "active" and models[0]["classes"] == TYPES
    assert models[0]["metrics"] == {"accuracy": 0.2} and models[0]["input_size"] == 32
    assert viewer_api.get(f"/api/v1/models/{active_model.version}/").json()["version"] == active_model.version
    assert_error(viewer_api.get("/api/v1/models/nope/"), 404, "not_found")
