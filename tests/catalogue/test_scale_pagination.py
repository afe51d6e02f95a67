"""A million works (issue 17): keyset pages of the catalogue and the API on generated data with ties — no row
skipped or repeated across pages in either direction, stable with ties, a row added between two requests."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from catalogue.models import Artwork
from catalogue.selectors.artworks import InvalidCursor, artworks_with_prediction, keyset_page
from catalogue.services.classification import prediction_store
from tests.catalogue.curation_helpers import SLUGS, logged_in
from tests.factories import ArtworkFactory

pytestmark = pytest.mark.django_db

START = timezone.make_aware(dt.datetime(2026, 1, 1))


@pytest.fixture
def works(active_model):
    """26 works: created three to a second (ties for the id to settle), titles repeating every four, confidences
    repeating every five, two pending works without a prediction (NULL confidence)."""
    artworks = [ArtworkFactory(status=Artwork.Status.READY, title=f"Work {i % 4}") for i in range(24)]
    pending = [ArtworkFactory(status=Artwork.Status.PENDING, title="Waiting") for _ in range(2)]
    for n, artwork in enumerate([*artworks, *pending]):
        Artwork.objects.filter(pk=artwork.pk).update(created_at=START + dt.timedelta(seconds=n // 3))
    rng = np.random.default_rng(3)
    probabilities = np.zeros((len(artworks), len(SLUGS)))
    for i in range(len(artworks)):
        top = 0.4 + 0.1 * (i % 5)
        probabilities[i] = [top, *([(1 - top) / 4] * 4)]
    prediction_store(
        artwork_ids=[a.pk for a in artworks],
        model_version=active_model,
        classes=SLUGS,
        probabilities=probabilities,
        embeddings=rng.normal(size=(len(artworks), 128)).astype(np.float32),
    )
    return [*artworks, *pending]


def expected_order(ordering: list[str]) -> list[int]:
    """The full order by an independent sort in Python (NULLs after every value ascending, as PostgreSQL puts them;
    before every value descending)."""
    rows = list(artworks_with_prediction().values("pk", "created_at", "title", "pred_confidence"))
    for key in reversed(ordering):
        name, desc = key.lstrip("-"), key.startswith("-")
        nulls = [r for r in rows if r[name] is None]
        values = sorted((r for r in rows if r[name] is not None), key=lambda r: r[name], reverse=desc)
        rows = nulls + values if desc else values + nulls
    return [r["pk"] for r in rows]


def walk(qs, size: int) -> tuple[list[int], list[list[int]], int]:
    """Every page forward from the first, then every page backward from the last; returns the forward ids, the
    backward pages and the size of the last page."""
    forward, cursor, last = [], None, None
    while True:
        page = keyset_page(qs, cursor=cursor, size=size)
        forward += [a.pk for a in page.items]
        last = page
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    backward, cursor = [], last.previous_cursor
    while cursor is not None:
        page = keyset_page(qs, cursor=cursor, size=size)
        backward.insert(0, [a.pk for a in page.items])
        cursor = page.previous_cursor
    return forward, backward, len(last.items)


@pytest.mark.parametrize(
    "ordering",
    [
        ["-created_at", "-id"],
        ["title", "-id"],
        ["-title", "-id"],
        ["pred_confidence", "-id"],
        ["-pred_confidence", "-id"],
    ],
)
@pytest.mark.parametrize("size", [5, 13, 26])
def test_pages_cover_every_work_once_in_order_both_ways(works, ordering, size):
    qs = artworks_with_prediction().order_by(*ordering)
    expected = expected_order(ordering[:-1] + ["-pk"])
    forward, backward, last = walk(qs, size)
    assert forward == expected
    assert [pk for page in backward for pk in page] == expected[: len(expected) - last]
    assert all(len(page) == size for page in backward)  # full pages going back, up to the first


def test_a_page_boundary_inside_a_tie(works):
    """Page size 4 with three works per second: every boundary but one falls inside a tie of created_at."""
    qs = artworks_with_prediction()
    first = keyset_page(qs, cursor=None, size=4)
    second = keyset_page(qs, cursor=first.next_cursor, size=4)
    expected = expected_order(["-created_at", "-pk"])
    assert [a.pk for a in first.items + second.items] == expected[:8]
    assert first.previous_cursor is None and second.previous_cursor is not None
    back = keyset_page(qs, cursor=second.previous_cursor, size=4)
    assert [a.pk for a in back.items] == expected[:4] and back.previous_cursor is None


def test_a_work_added_between_two_requests_neither_shifts_nor_repeats_the_rest(works):
    qs = artworks_with_prediction()
    expected = expected_order(["-created_at", "-pk"])
    first = keyset_page(qs, cursor=None, size=6)
    newest = ArtworkFactory(status=Artwork.Status.READY)  # sorts before the first page
    older = ArtworkFactory(status=Artwork.Status.READY)  # sorts among the later pages
    Artwork.objects.filter(pk=older.pk).update(created_at=START + dt.timedelta(seconds=1, milliseconds=500))
    rest = []
    cursor = first.next_cursor
    while cursor:
        page = keyset_page(qs, cursor=cursor, size=6)
        rest += [a.pk for a in page.items]
        cursor = page.next_cursor
    assert [a.pk for a in first.items] + [pk for pk in rest if pk != older.pk] == expected
    assert newest.pk not in rest and rest.count(older.pk) == 1
    created_later = 20  # works 6..25, created at 2 s and after
    assert rest.index(older.pk) == created_later - 6


@pytest.mark.parametrize("cursor", ["nonsense", "eyJ2IjpbMV0sImQiOiJuIn0", "eyJ2IjpbIngiLCJ5Il0sImQiOiJuIn0"])
def test_a_bad_cursor_is_refused(works, cursor):
    with pytest.raises(InvalidCursor):
        keyset_page(artworks_with_prediction(), cursor=cursor, size=5)


def test_the_catalogue_page_links_by_cursor_and_survives_a_bad_one(client, curator, works):
    client = logged_in(client, curator)
    first = client.get(reverse("catalogue:artwork-list"))
    page = first.context["page"]
    assert len(page.items) == 24 and page.next_cursor and page.previous_cursor is None
    assert f"cursor={page.next_cursor}" in first.content.decode()
    second = client.get(reverse("catalogue:artwork-list"), {"cursor": page.next_cursor})
    assert [a.pk for a in second.context["page"].items] == expected_order(["-created_at", "-pk"])[24:]
    broken = client.get(reverse("catalogue:artwork-list"), {"cursor": "nonsense"})
    assert broken.status_code == 200 and broken.context["page"].items[0].pk == page.items[0].pk


def test_the_api_walks_by_cursor_and_answers_404_to_a_bad_one(viewer, works):
    viewer_api = APIClient()
    viewer_api.force_authenticate(viewer)
    ids, url = [], "/api/v1/artworks/?page_size=7&ordering=title"
    while url:
        body = viewer_api.get(url).json()
        ids += [a["id"] for a in body["results"]]
        url = body["next"]
    assert ids == expected_order(["title", "-pk"])
    response = viewer_api.get("/api/v1/artworks/?cursor=nonsense")
    assert response.status_code == 404 and response.json()["code"] == "not_found"
