"""Many files at once: the upload page's per-file endpoint (catalogue.views.artwork_upload_file), one request per
file, with the same checks as the single-file form and its outcome as JSON."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from catalogue.models import Artwork, ArtworkType, LabelCorrection
from catalogue.services.artworks import artwork_create
from tests.images import decompression_bomb_png, image_bytes, truncated_jpeg

pytestmark = pytest.mark.django_db

URL = "/artworks/upload/file/"


def send(client, data: bytes, name: str = "work.jpg", **fields: str):  # type: ignore[no-untyped-def]
    return client.post(URL, {"title": "A work", "image": SimpleUploadedFile(name, data), **fields})


def stored_files(settings) -> list[Path]:  # type: ignore[no-untyped-def]
    return [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]


def test_the_route_is_the_one_the_page_names():
    assert reverse("catalogue:artwork-upload-file") == URL


def test_a_file_is_stored_with_the_shared_metadata_and_its_own_title(curator_client, curator, broker):
    response = send(
        curator_client, image_bytes(1), title="Harbour, morning", artist="Monet", date="1872", type="painting"
    )
    assert response.status_code == 201
    body = response.json()
    artwork = Artwork.objects.get()
    assert body["outcome"] == "stored" and body["id"] == artwork.pk and body["status"] == "pending"
    assert (
        body["url"] == f"/artworks/{artwork.pk}/" and body["status_url"] == f"/artworks/{artwork.pk}/status/"
    )
    assert (artwork.title, artwork.artist, artwork.date) == ("Harbour, morning", "Monet", "1872")
    assert artwork.uploaded_by == curator
    # The type given at upload is the curator's label, set by a curator through the portal, and in the history.
    assert artwork.curator_type == ArtworkType.objects.get(slug="painting")
    assert artwork.label_provenance == Artwork.Provenance.SET
    correction = LabelCorrection.objects.get(artwork=artwork)
    assert correction.source == LabelCorrection.Source.PORTAL and correction.user == curator
    assert correction.note == "Type given at upload."


def test_without_a_type_the_model_decides(curator_client, broker):
    assert send(curator_client, image_bytes(2)).status_code == 201
    artwork = Artwork.objects.get()
    assert artwork.curator_type is None and artwork.label_provenance == ""


def test_a_duplicate_names_the_work_that_has_the_file(curator_client, settings):
    data = image_bytes(3)
    existing = artwork_create(data=data, title="Original", enqueue=False)
    files_before = stored_files(settings)
    response = send(curator_client, data, title="Again")
    assert response.status_code == 409
    body = response.json()
    assert body["outcome"] == "duplicate"
    assert body["existing"] == {"id": existing.pk, "title": "Original", "url": f"/artworks/{existing.pk}/"}
    assert f"#{existing.pk}" in body["message"]
    assert Artwork.objects.count() == 1 and stored_files(settings) == files_before


@pytest.mark.parametrize(
    ("data", "status", "reason", "words"),
    [
        (b"just some text, not a picture", 415, "not_image", "not an image"),
        ("truncated", 400, None, "truncated"),
        ("bomb", 413, "too_many_pixels", "megapixels"),
    ],
)
def test_a_bad_file_is_refused_with_why_and_nothing_is_stored(
    curator_client, settings, data, status, reason, words
):
    payload = {"truncated": truncated_jpeg(), "bomb": decompression_bomb_png()}.get(data, data)  # type: ignore[call-overload]
    files_before = stored_files(settings)
    response = send(curator_client, payload, name="notes.txt")
    assert response.status_code == status
    body = response.json()
    assert body["outcome"] == "refused" and body["field"] == "image"
    assert reason is None or body["reason"] == reason
    assert words in body["message"]
    assert Artwork.objects.count() == 0 and stored_files(settings) == files_before


def test_a_file_over_the_limit_is_refused(curator_client, settings):
    settings.ARTSITE_MAX_UPLOAD_BYTES = 5_000
    response = send(curator_client, image_bytes(4, size=(400, 400), fmt="PNG"))
    assert response.status_code == 413
    assert response.json()["reason"] == "too_large" and "limit" in response.json()["message"]
    assert Artwork.objects.count() == 0


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"title": ""}, "title"), ({"type": "etching"}, "type"), ({"title": "x" * 301}, "title")],
)
def test_bad_metadata_is_refused_by_field(curator_client, fields, field):
    response = send(curator_client, image_bytes(5), **fields)
    assert response.status_code == 400
    body = response.json()
    assert body["outcome"] == "refused" and body["field"] == field and body["message"]
    assert Artwork.objects.count() == 0


def test_a_request_without_a_file_is_refused(curator_client):
    response = curator_client.post(URL, {"title": "No file"})
    assert response.status_code == 400 and response.json()["field"] == "image"


def test_one_refused_file_does_not_stop_the_next(curator_client, broker):
    """Each file is its own request: a refusal in the middle leaves the files before and after stored."""
    statuses = [
        send(curator_client, image_bytes(6), title="First").status_code,
        send(curator_client, b"not an image", name="x.txt", title="Broken").status_code,
        send(curator_client, image_bytes(6), title="Same as first").status_code,
        send(curator_client, image_bytes(7), title="Third").status_code,
    ]
    assert statuses == [201, 415, 409, 201]
    assert sorted(Artwork.objects.values_list("title", flat=True)) == ["First", "Third"]


def test_only_curators_may_send_files(viewer_client):
    assert send(viewer_client, image_bytes(8)).status_code == 403
    anonymous = send(Client(), image_bytes(8))
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
    assert Artwork.objects.count() == 0


def test_a_get_is_not_allowed(curator_client):
    assert curator_client.get(URL).status_code == 405


def test_the_csrf_token_is_required(curator):
    client = Client(enforce_csrf_checks=True)
    client.force_login(curator)
    assert send(client, image_bytes(9)).status_code == 403
    page = client.get("/artworks/upload/")
    token = page.cookies["csrftoken"].value
    response = client.post(
        URL,
        {"title": "With token", "image": SimpleUploadedFile("a.jpg", b"not an image")},
        HTTP_X_CSRFTOKEN=token,
    )
    assert response.status_code == 415  # past the CSRF check: the file itself is refused


def test_the_page_offers_many_files_through_its_script_and_keeps_the_single_form(curator_client):
    page = curator_client.get("/artworks/upload/").content.decode()
    assert 'id="multi-upload" hidden' in page  # shown by the script only
    assert 'data-endpoint="/artworks/upload/file/"' in page
    assert "/static/js/upload.js" in page
    assert (
        'name="image"' in page and 'enctype="multipart/form-data"' in page
    )  # the form that works without it
    assert "<script>" not in page  # no inline script (the Content-Security-Policy forbids them)
