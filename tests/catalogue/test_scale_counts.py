"""A million works (issue 17): counts that need not be exact are estimated or capped, and say so; the ones a
curator acts on (unfinished works, labelled works) stay exact."""

from __future__ import annotations

import pytest
from django.db import connection
from django.urls import reverse
from rest_framework.test import APIClient

from catalogue.models import Artwork
from catalogue.selectors import artworks as artwork_selectors
from catalogue.selectors.artworks import Tally, artworks_unfinished_counts, count_capped, count_estimate
from catalogue.selectors.curation import review_progress
from tests.catalogue.curation_helpers import confident, logged_in, ready_artwork
from tests.factories import ArtworkFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def thirty(active_model):
    works = [ready_artwork(active_model, confident("painting", 0.5 + i / 100)) for i in range(30)]
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalogue_artwork")
        cursor.execute("ANALYZE catalogue_prediction")
    return works


def test_tally_prints_how_it_was_counted():
    assert (str(Tally(1_234_567, "about")), str(Tally(1000, "at_least")), str(Tally(12))) == (
        "about 1,234,567",
        "1,000+",
        "12",
    )
    assert Tally(5, "about") + 1 == 6 and not Tally(5, "about").exact and Tally(5).exact


def test_small_counts_are_exact_large_ones_the_planners_estimate(thirty):
    exact = count_estimate(Artwork.objects.all())
    assert (int(exact), exact.kind) == (30, "exact")
    estimated = count_estimate(Artwork.objects.all(), exact_below=10)
    assert estimated.kind == "about" and 20 <= estimated <= 40  # from the statistics ANALYZE gathered


def test_a_broad_filter_is_counted_up_to_a_cap(thirty):
    assert (
        int(count_capped(Artwork.objects.all(), cap=10)),
        count_capped(Artwork.objects.all(), cap=10).kind,
    ) == (
        10,
        "at_least",
    )
    assert count_capped(Artwork.objects.all(), cap=30).kind == "exact"


def test_unfinished_works_are_counted_exactly(thirty):
    ArtworkFactory(status=Artwork.Status.FAILED)
    ArtworkFactory(status=Artwork.Status.PENDING)
    ArtworkFactory(status=Artwork.Status.PENDING)
    assert artworks_unfinished_counts() == {"failed": 1, "pending": 2, "processing": 0}


def test_pages_label_an_estimate(client, curator, thirty, monkeypatch):
    client = logged_in(client, curator)
    exact = client.get(reverse("catalogue:artwork-list")).content.decode()
    assert 'id="catalogue-count">30 works<' in exact
    monkeypatch.setattr(artwork_selectors, "ESTIMATE_ABOVE", 10)
    monkeypatch.setattr(artwork_selectors, "COUNT_CAP", 5)
    html = client.get(reverse("catalogue:artwork-list")).content.decode()
    assert 'id="catalogue-count">about ' in html
    filtered = client.get(reverse("catalogue:artwork-list"), {"type": "painting"}).content.decode()
    assert 'id="catalogue-count">5+ of about ' in filtered
    progress = review_progress()
    assert progress.remaining.kind == "about" and progress.reviewed == 0
    assert "about " in client.get(reverse("catalogue:review")).content.decode()


def test_the_api_says_how_it_counted(viewer, thirty, monkeypatch):
    api = APIClient()
    api.force_authenticate(viewer)
    body = api.get("/api/v1/artworks/").json()
    assert (body["count"], body["count_kind"]) == (30, "exact")
    monkeypatch.setattr(artwork_selectors, "ESTIMATE_ABOVE", 10)
    monkeypatch.setattr(artwork_selectors, "COUNT_CAP", 5)
    assert api.get("/api/v1/artworks/").json()["count_kind"] == "about"
    body = api.get("/api/v1/artworks/", {"type": "painting"}).json()
    assert (body["count"], body["count_kind"]) == (5, "at_least")
    paged = api.get("/api/v1/artworks/", {"page": 2, "page_size": 20}).json()
    assert (paged["count"], paged["count_kind"], len(paged["results"])) == (30, "exact", 10)
