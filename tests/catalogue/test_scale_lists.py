"""A million works (issue 17): the catalogue list when a filter matches many works — a search with a common word
(newest first past the ranking limit, saying so), a box on the map (the catalogue's order walked), a type (by the
rule's condition; a rare one from its candidates) — on a generated catalogue, every expected list computed here in
Python from the generated rows, not by the code under test. The limits are lowered (monkeypatch) so a few hundred
rows cross them."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from catalogue.filters import ArtworkFilterSet
from catalogue.models import Artwork, ArtworkType, MapLayout, MapPoint, Prediction, prediction_uncertainty
from catalogue.selectors import artworks as artwork_selectors
from catalogue.selectors import search as search_selectors
from catalogue.selectors.artworks import artworks_tally, artworks_with_prediction, keyset_page
from inference.models import ModelVersion
from tests.catalogue.curation_helpers import SLUGS, logged_in

pytestmark = pytest.mark.django_db

START = timezone.make_aware(dt.datetime(2026, 1, 1))
N = 300
#: The boxes' share of the square the points are spread over: x in [-1, -0.3] holds about 35 % of the works.
BOX = (-1.0, -1.0, -0.3, 1.0)


@pytest.fixture
def rows(active_model) -> list[dict]:
    """N works, created three to a second (ties for the id to settle): 40 % with "portrait" in the title, a few with
    "river" in the title and a few more in the description; the active version predicts painting for most, sculpture
    for many, engraving for a few and drawings for three; 3 % labelled by a curator with another type; 2 % pending
    (no prediction); each prediction placed on the active layout at a random point. An older version predicts
    drawings for a tenth of the works and has its own layout, every point inside the box: neither may count."""
    rng = np.random.default_rng(17)
    types = {t.slug: t for t in ArtworkType.objects.all()}
    older = ModelVersion.objects.create(version="older", path="/nowhere")
    fillers = ["study", "harbour", "evening", "garden", "sketch"]
    specs = []
    for i in range(N):
        words = [fillers[i % 5], fillers[(i // 5) % 5]]
        if rng.random() < 0.4:
            words.insert(1, "portrait")
        river = "title" if i % 37 == 5 else "description" if i % 41 == 7 else ""
        if river == "title":
            words.append("river")
        draw = rng.random()
        predicted = (
            None
            if draw < 0.02
            else "drawings"
            if i in (11, 150, 290)
            else "engraving"
            if draw < 0.06
            else "sculpture"
            if draw < 0.3
            else "painting"
        )
        labelled = predicted is not None and rng.random() < 0.03
        curator = SLUGS[(SLUGS.index(predicted) + 1) % 5] if labelled else None
        specs.append(
            {
                "title": " ".join(words).capitalize(),
                "description": "Boats on the river." if river == "description" else "",
                "artist": ["Hals", "Goya", "Steen", "Avercamp"][i % 4],
                "predicted": predicted,
                "curator": curator,
                "x": float(rng.uniform(-1, 1)),
                "y": float(rng.uniform(-1, 1)),
            }
        )
    artworks = Artwork.objects.bulk_create(
        Artwork(
            title=spec["title"],
            description=spec["description"],
            artist=spec["artist"],
            image=f"artworks/gen/{i}.jpg",
            sha256=f"{i:064x}",
            width=10,
            height=10,
            status=Artwork.Status.READY if spec["predicted"] else Artwork.Status.PENDING,
            curator_type=types[spec["curator"]] if spec["curator"] else None,
            label_provenance=Artwork.Provenance.SET if spec["curator"] else "",
        )
        for i, spec in enumerate(specs)
    )
    first = min(a.pk for a in artworks)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE catalogue_artwork SET created_at = %s + ((id - %s) / 3) * interval '1 second' WHERE id >= %s",
            [START, first, first],
        )
    layout = MapLayout.objects.create(model_version=active_model, status=MapLayout.Status.READY)
    old_layout = MapLayout.objects.create(model_version=older, status=MapLayout.Status.READY)
    vector = np.ones(128, dtype=np.float32) / np.sqrt(128)
    for artwork, spec in zip(artworks, specs, strict=True):
        spec["pk"] = artwork.pk
        if spec["predicted"] is None:
            continue
        probs = {slug: (0.8 if slug == spec["predicted"] else 0.05) for slug in SLUGS}
        prediction = Prediction.objects.create(
            artwork=artwork,
            model_version=active_model,
            predicted_type=types[spec["predicted"]],
            confidence=0.8,
            probabilities=probs,
            embedding=vector,
            **prediction_uncertainty(probs.values()),
        )
        MapPoint.objects.create(layout=layout, prediction=prediction, x=spec["x"], y=spec["y"])
        if artwork.pk % 10 == 0:
            stale = Prediction.objects.create(
                artwork=artwork,
                model_version=older,
                predicted_type=types["drawings"],
                confidence=0.8,
                probabilities=probs,
                embedding=vector,
            )
            MapPoint.objects.create(layout=old_layout, prediction=stale, x=-0.5, y=0.0)
    created = dict(Artwork.objects.values_list("pk", "created_at"))
    for spec in specs:
        spec["created_at"] = created[spec["pk"]]
    with connection.cursor() as cursor:
        for table in ("catalogue_artwork", "catalogue_prediction", "catalogue_mappoint"):
            cursor.execute(f"ANALYZE {table}")
    return specs


def newest_first(specs: list[dict]) -> list[int]:
    return [s["pk"] for s in sorted(specs, key=lambda s: (s["created_at"], s["pk"]), reverse=True)]


def effective(spec: dict) -> str | None:
    return spec["curator"] or spec["predicted"]


def in_box(spec: dict) -> bool:
    x0, y0, x1, y1 = BOX
    return spec["predicted"] is not None and x0 <= spec["x"] <= x1 and y0 <= spec["y"] <= y1


def has_word(spec: dict, word: str) -> bool:
    text = f"{spec['title']} {spec['artist']} {spec['description']}".lower().replace(".", " ")
    return any(w.startswith(word) for w in text.split())


def filterset(**params: str) -> ArtworkFilterSet:
    filters = ArtworkFilterSet(params, queryset=artworks_with_prediction())
    assert filters.is_valid(), filters.errors
    return filters


def pages(qs, size: int) -> list[list[int]]:
    """Every page forward from the first, by cursor."""
    found, cursor = [], None
    while True:
        page = keyset_page(qs, cursor=cursor, size=size)
        found.append([a.pk for a in page.items])
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


def box_param() -> str:
    return ",".join(str(v) for v in BOX)


# --- A search with a common word --------------------------------------------------------------------------------


def test_a_common_word_past_the_limit_is_listed_newest_first_and_says_so(rows, monkeypatch):
    monkeypatch.setattr(search_selectors, "RANK_AT_MOST", 20)
    expected = newest_first([s for s in rows if has_word(s, "portrait")])
    assert len(expected) > 100  # far past the limit
    filters = filterset(search="portrait")
    assert filters.search_ranked is False
    walked = pages(filters.qs, 7)
    assert [pk for page in walked for pk in page] == expected
    assert [len(p) for p in walked[:-1]] == [7] * (len(walked) - 1)
    count = filters.count_known()
    assert (int(count), count.kind) == (20, "at_least")  # "20+": more than the limit matched


def test_a_selective_search_is_ranked_title_above_description(rows, monkeypatch):
    monkeypatch.setattr(search_selectors, "RANK_AT_MOST", 20)
    in_title = [s for s in rows if "river" in s["title"].lower()]
    in_description = [s for s in rows if "river" in s["description"].lower()]
    assert 0 < len(in_title) + len(in_description) <= 20
    # Equal ranks within each field (one occurrence each); ties go to the newest id.
    expected = sorted((s["pk"] for s in in_title), reverse=True) + sorted(
        (s["pk"] for s in in_description), reverse=True
    )
    filters = filterset(search="river")
    assert filters.search_ranked is True
    walked = pages(filters.qs, 4)  # page boundaries inside the title matches and between the two fields
    assert [pk for page in walked for pk in page] == expected
    count = filters.count_known()
    assert (int(count), count.kind) == (len(expected), "exact")


def test_an_explicit_order_needs_no_rank(rows, monkeypatch):
    monkeypatch.setattr(search_selectors, "RANK_AT_MOST", 20)
    filters = filterset(search="river", ordering="-created_at")
    assert filters.search_ranked is None
    assert [a.pk for a in filters.qs] == newest_first([s for s in rows if has_word(s, "river")])


def test_the_search_and_another_filter(rows, monkeypatch):
    monkeypatch.setattr(search_selectors, "RANK_AT_MOST", 20)
    expected = newest_first([s for s in rows if has_word(s, "portrait") and effective(s) == "sculpture"])
    filters = filterset(search="portrait", type="sculpture")
    assert [pk for page in pages(filters.qs, 9) for pk in page] == expected
    assert filters.count_known() is None  # counted as a filtered list, not by the search alone


def test_the_portal_and_the_api_say_a_search_is_not_ranked(rows, curator, client, monkeypatch):
    monkeypatch.setattr(search_selectors, "RANK_AT_MOST", 20)
    expected = newest_first([s for s in rows if has_word(s, "portrait")])
    html_response = logged_in(client, curator).get(reverse("catalogue:artwork-list"), {"search": "portrait"})
    html = html_response.content.decode()
    assert [a.pk for a in html_response.context["page"].items] == expected[:24]
    assert 'id="search-order"' in html and "listed newest first" in html
    assert 'id="catalogue-count">20+ of ' in html
    ranked = client.get(reverse("catalogue:artwork-list"), {"search": "river"}).content.decode()
    assert 'id="search-order"' not in ranked
    api = APIClient()
    api.force_authenticate(curator)
    body = api.get("/api/v1/artworks/", {"search": "portrait"}).json()
    assert (body["search_ranked"], body["count"], body["count_kind"]) == (False, 20, "at_least")
    assert [r["id"] for r in body["results"]] == expected[: len(body["results"])]
    river = api.get("/api/v1/artworks/", {"search": "river"}).json()
    assert river["search_ranked"] is True and river["count_kind"] == "exact"
    assert api.get("/api/v1/artworks/").json()["search_ranked"] is None


def spy(monkeypatch, name: str) -> list:
    """Record the calls of one of the search's roads (which road a search took is what these tests are about; the
    results are checked against the rows whatever the road)."""
    calls: list = []
    real = getattr(search_selectors, name)

    def recording(*args, **kwargs):
        calls.append(args or kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(search_selectors, name, recording)
    return calls


def test_a_common_word_is_settled_among_the_newest_works(rows, monkeypatch):
    # The statistics (the fixture analysed the table) put "portrait" in 40 % of the works: at least
    # (20 + 1) / 100, so the newest 100 are looked at first, and they hold more than 20 of its matches.
    monkeypatch.setattr(search_selectors, "RANK_AT_MOST", 20)
    monkeypatch.setattr(search_selectors, "COMMON_SAMPLE", 100)
    newest, indexed = spy(monkeypatch, "_newest_matching_ids"), spy(monkeypatch, "_indexed_matching_ids")
    expected = newest_first([s for s in rows if has_word(s, "portrait")])
    filters = filterset(search="portrait")
    assert filters.search_ranked is False
    assert [pk for page in pages(filters.qs, 25) for pk in page] == expected
    assert (len(newest), len(indexed)) == (1, 0)  # settled without reading an index


def test_a_typo_of_a_common_artist_is_settled_among_the_newest_works(rows, monkeypatch):
    # No work has the word "avercmp"; a quarter of them have Avercamp, one letter away, whose typo key the
    # statistics of search_keys list: the typo branch alone makes the search common.
    monkeypatch.setattr(search_selectors, "RANK_AT_MOST", 20)
    monkeypatch.setattr(search_selectors, "COMMON_SAMPLE", 100)
    newest, indexed = spy(monkeypatch, "_newest_matching_ids"), spy(monkeypatch, "_indexed_matching_ids")
    expected = newest_first([s for s in rows if s["artist"] == "Avercamp"])
    filters = filterset(search="Avercmp")
    assert filters.search_ranked is False
    assert [pk for page in pages(filters.qs, 25) for pk in page] == expected
    assert (len(newest), len(indexed)) == (1, 0)


def test_too_few_matches_among_the_newest_works_settle_nothing(rows, monkeypatch):
    # Every work is in the sample and "portrait" matches exactly the limit: not more than it, so the indexes are
    # read and the search is ranked, its count exact.
    expected = [s for s in rows if has_word(s, "portrait")]
    monkeypatch.setattr(search_selectors, "RANK_AT_MOST", len(expected))
    monkeypatch.setattr(search_selectors, "COMMON_SAMPLE", 1000)
    newest, indexed = spy(monkeypatch, "_newest_matching_ids"), spy(monkeypatch, "_indexed_matching_ids")
    filters = filterset(search="portrait")
    assert filters.search_ranked is True
    assert sorted(a.pk for a in filters.qs) == sorted(s["pk"] for s in expected)
    count = filters.count_known()
    assert (int(count), count.kind) == (len(expected), "exact")
    assert (len(newest), len(indexed)) == (1, 1)


@pytest.mark.parametrize("text", ["portrait river", "portr rive", "river PORTRAIT"])
def test_a_common_word_is_checked_on_the_works_a_rarer_word_finds(rows, monkeypatch, text):
    # "river" is in about 5 % of the works (a rare word here, under 10 %), "portrait" in 40 % (common, over 20 %):
    # the full-text index is asked for "river" alone and its works are checked for "portrait", prefixes included.
    monkeypatch.setattr(search_selectors, "RARE_WORD_SHARE", 0.1)
    monkeypatch.setattr(search_selectors, "COMMON_WORD_SHARE", 0.2)
    indexed = spy(monkeypatch, "_indexed_matching_ids")
    first, second = (word.lower() for word in text.split())
    expected = [s for s in rows if has_word(s, first) and has_word(s, second)]
    assert 0 < len(expected) < len([s for s in rows if has_word(s, "river")])  # the check leaves some out
    in_title = sorted((s["pk"] for s in expected if "river" in s["title"].lower()), reverse=True)
    in_description = sorted((s["pk"] for s in expected if "river" not in s["title"].lower()), reverse=True)
    filters = filterset(search=text)
    assert filters.search_ranked is True
    assert [a.pk for a in filters.qs] == in_title + in_description
    assert [type(call[0]).__name__ for call in indexed] == ["SearchMatchChecked"]


def test_without_a_rare_word_every_word_goes_to_the_index(rows, monkeypatch):
    monkeypatch.setattr(search_selectors, "RANK_AT_MOST", 500)
    indexed = spy(monkeypatch, "_indexed_matching_ids")
    expected = [s for s in rows if has_word(s, "portrait") and has_word(s, "study")]
    filters = filterset(search="portrait study")
    assert sorted(a.pk for a in filters.qs) == sorted(s["pk"] for s in expected)
    assert [type(call[0]).__name__ for call in indexed] == ["SearchMatch"]


# --- A box on the map ------------------------------------------------------------------------------------------


def test_a_box_lists_its_works_newest_first_across_pages(rows, curator, client):
    expected = newest_first([s for s in rows if in_box(s)])
    assert 60 < len(expected) < 150  # about a third of the works; the older layout's points not among them
    filters = filterset(map_box=box_param())
    walked = pages(filters.qs, 24)
    assert [pk for page in walked for pk in page] == expected
    portal = logged_in(client, curator)
    first = portal.get(reverse("catalogue:artwork-list"), {"map_box": box_param()}).context["page"]
    second = portal.get(
        reverse("catalogue:artwork-list"), {"map_box": box_param(), "cursor": first.next_cursor}
    ).context["page"]
    assert [a.pk for a in first.items] == expected[:24]
    assert [a.pk for a in second.items] == expected[24:48]


def test_a_box_is_counted_from_its_points(rows, monkeypatch):
    expected = [s for s in rows if in_box(s)]
    filters = filterset(map_box=box_param())
    count = filters.count_known()
    assert (int(count), count.kind) == (len(expected), "exact")
    monkeypatch.setattr(artwork_selectors, "COUNT_CAP", 25)
    capped = filters.count_known()
    assert (int(capped), capped.kind) == (25, "at_least")


def test_a_box_with_another_filter(rows):
    expected = newest_first([s for s in rows if in_box(s) and effective(s) == "painting"])
    filters = filterset(map_box=box_param(), type="painting")
    assert [pk for page in pages(filters.qs, 10) for pk in page] == expected
    assert filters.count_known() is None
    shown = artworks_tally(filters.qs, filtered=True)
    assert (int(shown), shown.kind) == (len(expected), "exact")


# --- The effective type ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("slug", ["painting", "sculpture", "engraving", "drawings", "iconography", "none"])
@pytest.mark.parametrize("candidates_at_most", [0, 10**9])
def test_a_type_filter_is_the_rule_by_either_road(rows, monkeypatch, slug, candidates_at_most):
    """From the candidates (a rare type) or walking the list (a common one): the same works, newest first — the
    curator's type when labelled, else the active version's prediction (the older version's "drawings" ignored)."""
    monkeypatch.setattr(artwork_selectors, "TYPE_FROM_CANDIDATES_AT_MOST", candidates_at_most)
    expected = newest_first([s for s in rows if effective(s) == (None if slug == "none" else slug)])
    filters = filterset(type=slug)
    assert [pk for page in pages(filters.qs, 11) for pk in page] == expected
    assert all(
        a.effective_type_id == (None if slug == "none" else ArtworkType.objects.get(slug=slug).pk)
        for a in filters.qs
    )


def test_a_common_type_is_counted_by_the_estimate_a_rare_one_exactly(rows, monkeypatch):
    monkeypatch.setattr(artwork_selectors, "TYPE_FROM_CANDIDATES_AT_MOST", 50)
    paintings = [s for s in rows if effective(s) == "painting"]
    assert len(paintings) > 150
    count = filterset(type="painting").count_known()
    assert count.kind == "about" and abs(int(count) - len(paintings)) <= 0.2 * len(paintings)
    engravings = [s for s in rows if effective(s) == "engraving"]
    filters = filterset(type="engraving")
    assert filters.count_known() is None  # rare: counted
    shown = artworks_tally(filters.qs, filtered=True, known=filters.count_known)
    assert (int(shown), shown.kind) == (len(engravings), "exact")


def test_the_portal_shows_a_common_types_count_as_an_estimate(rows, curator, client, monkeypatch):
    monkeypatch.setattr(artwork_selectors, "TYPE_FROM_CANDIDATES_AT_MOST", 50)
    html = (
        logged_in(client, curator)
        .get(reverse("catalogue:artwork-list"), {"type": "painting"})
        .content.decode()
    )
    assert 'id="catalogue-count">about ' in html


# --- A list that fits one page ----------------------------------------------------------------------------------


def test_a_list_on_one_page_is_counted_from_it(rows):
    expected = newest_first([s for s in rows if has_word(s, "river")])
    filters = filterset(search="river", ordering="-created_at")
    page = keyset_page(filters.qs, cursor=None, size=24)
    assert page.whole and [a.pk for a in page.items] == expected
    shown = artworks_tally(filters.qs, filtered=True, page=page)
    assert (int(shown), shown.kind) == (len(expected), "exact")
    # A page reached by a cursor is not the whole list, even when nothing follows it.
    first = keyset_page(filters.qs, cursor=None, size=3)
    rest = keyset_page(filters.qs, cursor=first.next_cursor, size=100)
    assert not rest.whole and rest.next_cursor is None
