"""Explanation maps in the portal: the PNG route (login, 404s, the stored copy served on the next call, the timing
header), which types the pages draw, the partial on the artwork page and in the review queue, and the files going
with the artwork."""

from __future__ import annotations

import io
import itertools

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse
from PIL import Image

from catalogue.models import ArtworkType, LabelCorrection
from catalogue.selectors.explanations import artwork_explanation_types
from catalogue.services import explanations
from catalogue.services.artworks import artwork_delete
from catalogue.services.labels import label_correct
from tests.catalogue.curation_helpers import confident, logged_in, ready_artwork, type_of
from tests.factories import ArtworkFactory
from tests.images import image_bytes

pytestmark = pytest.mark.django_db

# Maps are kept by the image's sha256 in a media folder the whole session shares: a new image per test.
_seeds = itertools.count(7000)
SECOND = {"painting": 0.6, "sculpture": 0.3, "drawings": 0.1}  # the model's type, then its second choice


def map_url(artwork, slug: str) -> str:
    return reverse("catalogue:artwork-explanation", args=[artwork.pk, slug])


def timing_stages(response) -> dict[str, float]:
    stages = {}
    for part in response["Server-Timing"].split(","):
        name, _, duration = part.strip().partition(";dur=")
        stages[name] = float(duration)
    return stages


@pytest.fixture
def curator_client(client, curator):
    return logged_in(client, curator)


@pytest.fixture
def wide_work(active_model):
    """A ready 600 x 400 work the active (tiny, real) model has a prediction for."""
    return ready_artwork(active_model, SECOND, data=image_bytes(next(_seeds), size=(600, 400)))


def test_the_map_is_a_png_over_the_image_with_its_time_then_served_from_storage(
    curator_client, wide_work, monkeypatch
):
    response = curator_client.get(map_url(wide_work, "painting"))
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    picture = Image.open(io.BytesIO(response.content))
    assert picture.format == "PNG" and picture.size == (384, 256)  # the image's proportions, longest side 384
    stages = timing_stages(response)
    assert {"decode", "model", "render", "app"} <= stages.keys() and stages["model"] > 0

    def no_model(*args, **kwargs):
        raise AssertionError("the stored map should have been served")

    monkeypatch.setattr(explanations, "occlusion_map", no_model)
    again = curator_client.get(map_url(wide_work, "painting"))
    assert again.status_code == 200 and again.content == response.content
    assert "cache" in timing_stages(again) and "model" not in timing_stages(again)


def test_each_type_has_its_own_map(curator_client, wide_work):
    painting = curator_client.get(map_url(wide_work, "painting"))
    sculpture = curator_client.get(map_url(wide_work, "sculpture"))
    assert painting.status_code == sculpture.status_code == 200
    assert painting.content != sculpture.content
    assert len(explanations.explanation_files(sha256=wide_work.sha256)) == 2


def test_a_half_written_map_is_made_again(curator_client, wide_work):
    first = curator_client.get(map_url(wide_work, "painting")).content
    (name,) = explanations.explanation_files(sha256=wide_work.sha256)
    with default_storage.open(name, "wb") as handle:
        handle.write(first[: len(first) // 2])
    again = curator_client.get(map_url(wide_work, "painting"))
    assert again.status_code == 200 and "model" in timing_stages(again)
    Image.open(io.BytesIO(again.content)).load()


def test_the_map_needs_a_login(client, wide_work):
    response = client.get(map_url(wide_work, "painting"))
    assert response.status_code == 302 and reverse("login") in response["Location"]


def test_viewers_may_look_at_maps(client, viewer, wide_work):
    assert logged_in(client, viewer).get(map_url(wide_work, "painting")).status_code == 200


def test_unknown_artworks_types_and_works_without_a_prediction_are_404(
    curator_client, wide_work, active_model
):
    assert (
        curator_client.get(reverse("catalogue:artwork-explanation", args=[999999, "painting"])).status_code
        == 404
    )
    assert curator_client.get(map_url(wide_work, "watercolour")).status_code == 404
    pending = ArtworkFactory()  # stored, not classified yet
    assert curator_client.get(map_url(pending, "painting")).status_code == 404
    # A type a curator added after the version was trained: the version cannot explain it.
    ArtworkType.objects.create(slug="photograph", name="Photograph", position=9)
    assert curator_client.get(map_url(wide_work, "photograph")).status_code == 404


def test_an_unreadable_stored_image_is_a_404_not_a_500(curator_client, wide_work):
    with default_storage.open(wide_work.image.name, "wb") as handle:
        handle.write(b"not an image any more")
    assert curator_client.get(map_url(wide_work, "painting")).status_code == 404


def test_the_types_drawn_are_the_models_and_the_labels_or_its_second_choice(active_model, curator):
    unlabelled = ready_artwork(active_model, SECOND)
    assert [t.slug for t in artwork_explanation_types(artwork=unlabelled)] == ["painting", "sculpture"]
    disputed = ready_artwork(active_model, SECOND)
    label_correct(
        artwork=disputed, to_type=type_of("drawings"), user=curator, source=LabelCorrection.Source.PORTAL
    )
    disputed.refresh_from_db()
    assert [t.slug for t in artwork_explanation_types(artwork=disputed)] == ["painting", "drawings"]
    agreed = ready_artwork(active_model, confident("sculpture"))
    label_correct(
        artwork=agreed, to_type=type_of("sculpture"), user=curator, source=LabelCorrection.Source.PORTAL
    )
    agreed.refresh_from_db()
    assert [t.slug for t in artwork_explanation_types(artwork=agreed)] == ["sculpture"]
    assert artwork_explanation_types(artwork=ArtworkFactory()) == []


def test_the_artwork_page_shows_the_maps_lazily_with_what_the_colours_mean(
    curator_client, wide_work, curator
):
    label_correct(
        artwork=wide_work, to_type=type_of("drawings"), user=curator, source=LabelCorrection.Source.PORTAL
    )
    html = curator_client.get(reverse("catalogue:artwork-detail", args=[wide_work.pk])).content.decode()
    for slug in ("painting", "drawings"):
        assert f'src="{map_url(wide_work, slug)}" loading="lazy"' in html
    assert map_url(wide_work, "sculpture") not in html
    assert "What the model looked at" in html and "Red: hiding this part" in html


def test_a_work_without_a_prediction_shows_no_maps(curator_client):
    pending = ArtworkFactory()
    html = curator_client.get(reverse("catalogue:artwork-detail", args=[pending.pk])).content.decode()
    assert "/explain/" not in html


def test_the_review_queue_shows_the_maps_of_the_work_under_review(curator_client, wide_work):
    html = curator_client.get(reverse("catalogue:review")).content.decode()
    assert f'data-artwork="{wide_work.pk}"' in html
    for slug in ("painting", "sculpture"):
        assert f'src="{map_url(wide_work, slug)}" loading="lazy"' in html


def test_deleting_the_artwork_deletes_its_maps(curator_client, wide_work, django_capture_on_commit_callbacks):
    curator_client.get(map_url(wide_work, "painting"))
    (name,) = explanations.explanation_files(sha256=wide_work.sha256)
    with django_capture_on_commit_callbacks(execute=True):
        artwork_delete(artwork=wide_work)
    assert not default_storage.exists(name)
