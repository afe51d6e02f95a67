"""Search by image (catalogue.views.image_search): the type with every probability and the most similar works of an
image that is not stored, with the real tiny model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from catalogue.models import Artwork, ArtworkType, Prediction
from catalogue.selectors.artworks import artworks_with_prediction
from catalogue.services.classification import artwork_classify
from tests.factories import ArtworkFactory
from tests.images import decompression_bomb_png, image_bytes

pytestmark = pytest.mark.django_db

URL = "/search/image/"


def ask(client, data: bytes, *, partial: bool = False, **fields: str):  # type: ignore[no-untyped-def]
    headers = {"HTTP_X_REQUESTED_WITH": "fetch"} if partial else {}
    return client.post(URL, {"image": SimpleUploadedFile("query.jpg", data), **fields}, **headers)


def similar_ids(html: str) -> list[int]:
    section = html.split('id="image-search-similar"', 1)[1]
    return [int(pk) for pk in re.findall(r'href="/artworks/(\d+)/"', section)]


def media_files(settings) -> list[Path]:  # type: ignore[no-untyped-def]
    return sorted(p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file())


@pytest.fixture
def classified(active_model) -> list[tuple[Artwork, bytes]]:
    """Eight works classified by the tiny model (real embeddings), with their files."""
    works = []
    for seed in range(8):
        data = image_bytes(100 + seed, size=(96, 72))
        artwork = ArtworkFactory(data=data, title=f"Work {seed}")
        artwork_classify(artwork_id=artwork.pk)
        works.append((artwork, data))
    return works


def test_the_type_every_probability_and_the_nearest_work(curator_client, classified, settings):
    artwork, data = classified[3]
    files_before, count_before = media_files(settings), Artwork.objects.count()
    response = ask(curator_client, data)
    assert response.status_code == 200
    html = response.content.decode()

    # The same file as a catalogued work: the worker's prediction for that work is what the page must say.
    stored = Prediction.objects.select_related("predicted_type").get(artwork=artwork)
    badge = re.search(r'id="predicted-type">([^<]+)<', html)
    assert badge and badge.group(1) == stored.predicted_type.name
    rows = re.findall(r'<tr data-type="([a-z]+)">', html)
    assert sorted(rows) == sorted(stored.probabilities)  # every type, ...
    assert rows[0] == stored.predicted_type.slug  # ... most probable first
    # ... and the work with the same file is the most similar.
    ids = similar_ids(html)
    assert ids[0] == artwork.pk and len(ids) == 5
    # Nothing was stored.
    assert Artwork.objects.count() == count_before and media_files(settings) == files_before


def test_show_more_asks_for_twice_as_many(curator_client, classified):
    _, data = classified[0]
    first = ask(curator_client, data).content.decode()
    more = re.search(r'id="show-more" data-k="(\d+)"', first)
    assert more and more.group(1) == "10"
    second = ask(curator_client, data, k="10").content.decode()
    assert len(similar_ids(second)) == 8  # every ready work, the query's twin included
    assert 'id="show-more"' not in second  # fewer than asked for: there is no more


def test_the_type_filter_keeps_works_of_that_type(curator_client, classified):
    _, data = classified[0]
    slugs = dict(ArtworkType.objects.values_list("pk", "slug"))
    effective = {pk: slugs[t] for pk, t in artworks_with_prediction().values_list("pk", "effective_type_id")}
    slug = effective[classified[5][0].pk]
    ids = similar_ids(ask(curator_client, data, type=slug).content.decode())
    of_that_type = [pk for pk, s in effective.items() if s == slug]
    assert ids and all(effective[pk] == slug for pk in ids)
    assert len(ids) == min(5, len(of_that_type))


def test_the_script_gets_only_the_results(curator_client, classified):
    response = ask(curator_client, classified[0][1], partial=True)
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html and 'id="image-search-result"' in html


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [(b"not a picture at all", 415, "not an image"), ("bomb", 413, "megapixels")],
)
def test_a_bad_file_gets_the_upload_error(curator_client, active_model, settings, data, status, words):
    payload = decompression_bomb_png() if data == "bomb" else data
    files_before = media_files(settings)
    response = ask(curator_client, payload, partial=True)  # type: ignore[arg-type]
    assert response.status_code == status
    assert words in response.content.decode()
    assert media_files(settings) == files_before


def test_no_file_is_a_form_error(curator_client, active_model):
    response = curator_client.post(URL, {})
    assert response.status_code == 400
    assert "required" in response.content.decode()


def test_too_large_a_file_is_refused(curator_client, active_model, settings):
    settings.ARTSITE_MAX_UPLOAD_BYTES = 5_000
    response = ask(curator_client, image_bytes(1, size=(400, 400), fmt="PNG"))
    assert response.status_code == 413 and "limit" in response.content.decode()


def test_without_an_active_model_it_says_so(curator_client):
    response = ask(curator_client, image_bytes(2))
    assert response.status_code == 503
    assert "No model can classify images now" in response.content.decode()


def test_curators_may_add_it_viewers_only_search(curator_client, viewer, classified):
    data = classified[0][1]
    assert 'id="image-add"' in ask(curator_client, data).content.decode()
    viewer_client = Client()
    viewer_client.force_login(viewer)
    response = ask(viewer_client, data)
    assert response.status_code == 200 and 'id="image-add"' not in response.content.decode()


def test_the_page_needs_a_login_and_is_in_the_nav(client, curator_client):
    assert Client().get(URL).status_code == 302
    page = curator_client.get(URL).content.decode()
    assert 'href="/search/image/"' in page and "/static/js/search_image.js" in page
    assert "<script>" not in page
