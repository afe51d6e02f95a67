"""The portal pages: login, upload form errors, the artwork page with type, probabilities and similar works."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from catalogue.models import Artwork
from catalogue.services.artworks import artwork_create
from catalogue.services.classification import artwork_classify
from tests.factories import ArtworkFactory
from tests.images import decompression_bomb_png, image_bytes, truncated_jpeg

pytestmark = pytest.mark.django_db


def upload(client, data: bytes, name: str = "work.jpg", **fields):
    payload = {"title": "A work", "image": SimpleUploadedFile(name, data), **fields}
    return client.post(reverse("catalogue:artwork-upload"), payload)


def test_pages_require_login(client):
    for url in (reverse("catalogue:artwork-list"), reverse("catalogue:artwork-upload")):
        response = client.get(url)
        assert response.status_code == 302 and reverse("login") in response["Location"]


def test_viewer_cannot_upload(viewer_client):
    assert viewer_client.get(reverse("catalogue:artwork-upload")).status_code == 403
    assert upload(viewer_client, image_bytes(1)).status_code == 403
    assert Artwork.objects.count() == 0


def test_curator_upload_redirects_to_pending_artwork(curator_client, broker):
    response = upload(curator_client, image_bytes(1), title="Study of hands", artist="Dürer")
    artwork = Artwork.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("catalogue:artwork-detail", args=[artwork.pk])
    assert artwork.status == Artwork.Status.PENDING and artwork.artist == "Dürer"
    page = curator_client.get(response["Location"])
    assert b"Pending" in page.content and b"appear here by themselves" in page.content


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"plain text", "not an image"),
        ("truncated", "truncated"),
        ("bomb", "megapixels"),
    ],
)
def test_bad_uploads_show_the_error_and_store_nothing(curator_client, data, message):
    if data == "truncated":
        data = truncated_jpeg()
    elif data == "bomb":
        data = decompression_bomb_png()
    response = upload(curator_client, data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert Artwork.objects.count() == 0


def test_oversized_upload_shows_the_limit(curator_client, settings):
    settings.ARTSITE_MAX_UPLOAD_BYTES = 5_000
    response = upload(curator_client, image_bytes(2, size=(400, 400), fmt="PNG"))
    assert response.status_code == 413  # stopped while streaming (artsite/request_limits.py)
    assert "limit" in response.content.decode()
    assert Artwork.objects.count() == 0


def test_duplicate_upload_links_to_existing(curator_client):
    data = image_bytes(3)
    existing = artwork_create(data=data, title="Original", enqueue=False)
    response = upload(curator_client, data)
    assert response.status_code == 400
    assert reverse("catalogue:artwork-detail", args=[existing.pk]) in response.content.decode()
    assert Artwork.objects.count() == 1


def test_missing_title_is_a_form_error(curator_client):
    response = curator_client.post(
        reverse("catalogue:artwork-upload"), {"image": SimpleUploadedFile("a.jpg", image_bytes(4))}
    )
    assert response.status_code == 400 and Artwork.objects.count() == 0


def test_artwork_page_shows_type_probabilities_histogram_and_similar(curator_client, active_model):
    works = [ArtworkFactory(title=f"Work {i}") for i in range(7)]
    for work in works:
        artwork_classify(artwork_id=work.pk)
    response = curator_client.get(reverse("catalogue:artwork-detail", args=[works[0].pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Similar works" in html and html.count('class="tile"') == 5
    assert "Work 0" in html and "confident" in html
    assert "<svg" in html and "RGB colour histogram" in html
    for name in ("Drawing", "Engraving", "Iconography", "Painting", "Sculpture"):
        assert name in html
    assert active_model.version in html


def test_failed_artwork_shows_error_and_retry(curator_client, broker):
    artwork = ArtworkFactory(status=Artwork.Status.FAILED)
    Artwork.objects.filter(pk=artwork.pk).update(error="The stored image cannot be read")
    html = curator_client.get(reverse("catalogue:artwork-detail", args=[artwork.pk])).content.decode()
    assert "The stored image cannot be read" in html and "Retry" in html
    response = curator_client.post(reverse("catalogue:artwork-retry", args=[artwork.pk]))
    assert response.status_code == 302
    artwork.refresh_from_db()
    assert artwork.status == Artwork.Status.PENDING


def test_status_endpoint_reports_progress(curator_client):
    artwork = ArtworkFactory()
    body = curator_client.get(reverse("catalogue:artwork-status", args=[artwork.pk])).json()
    assert body == {"id": artwork.pk, "status": "pending", "error": ""}


def test_list_filters_and_search(curator_client, active_model):
    artwork_create(data=image_bytes(5), title="Madonna", artist="Giotto", enqueue=False)
    artwork_create(data=image_bytes(6), title="Bust", artist="Bernini", enqueue=False)
    html = curator_client.get(reverse("catalogue:artwork-list"), {"search": "giotto"}).content.decode()
    assert "Madonna" in html and "Bust" not in html
    html = curator_client.get(reverse("catalogue:artwork-list"), {"status": "ready"}).content.decode()
    assert "Madonna" not in html and "No artworks match" in html


def test_label_from_artwork_page_records_portal_correction(curator_client, active_model):
    artwork = ArtworkFactory()
    artwork_classify(artwork_id=artwork.pk)
    response = curator_client.post(
        reverse("catalogue:artwork-label", args=[artwork.pk]),
        {"type": "sculpture", "next": "https://evil.example/"},
    )
    assert response["Location"] == reverse("catalogue:artwork-detail", args=[artwork.pk])  # no open redirect
    artwork.refresh_from_db()
    assert artwork.curator_type.slug == "sculpture"
    assert artwork.label_corrections.get().source == "portal"
