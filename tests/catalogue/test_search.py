"""Text search (catalogue/selectors/search.py) through the real database: the ``search`` filter of the one
FilterSet, as the portal, the API and the admin use it."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from catalogue.filters import ArtworkFilterSet
from catalogue.models import Artwork
from catalogue.selectors.artworks import artworks_with_prediction
from tests.factories import ArtworkFactory

pytestmark = pytest.mark.django_db


def search(text: str, **params: str) -> list[str]:
    """Titles of the works found, in the order given."""
    filters = ArtworkFilterSet({"search": text, **params}, queryset=artworks_with_prediction())
    assert filters.is_valid(), filters.errors
    return [a.title for a in filters.qs]


@pytest.fixture
def works() -> dict[str, Artwork]:
    rows = [
        ("The Night Watch", "Rembrandt van Rijn", "SK-C-5", "Militia company of District II."),
        ("Self-portrait", "Rembrandt van Rijn", "SK-A-3262", "Painted late in life."),
        ("Melencolia I", "Albrecht Dürer", "RP-P-OB-1066", "An engraving with a magic square."),
        ("The Milkmaid", "Johannes Vermeer", "SK-A-2344", "A maid pouring milk in a quiet room."),
        ("Lighthouse at dusk", "Anonymous", "NG-1", "Coast at evening."),
        ("Harbour scene", "Anonymous", "NG-2", "Boats near a lighthouse at night."),
        ("Engravings of birds", "Maria Sibylla Merian", "RP-P-1", "Plates from the Metamorphosis."),
        ("Still life", "Clara Peeters", None, "Cheese, bread and a jug of 50% ale."),
    ]
    return {
        title: ArtworkFactory(title=title, artist=artist, accession_number=number, description=description)
        for title, artist, number, description in rows
    }


def test_a_title_match_ranks_above_a_description_match(works):
    assert search("lighthouse") == ["Lighthouse at dusk", "Harbour scene"]


def test_descriptions_are_searched(works):
    assert search("magic square") == ["Melencolia I"]


def test_words_match_by_their_beginning(works):
    assert search("engrav") == ["Engravings of birds", "Melencolia I"]  # title (A) above description (D)
    assert search("milk") == ["The Milkmaid"]
    assert search("vermeer milkm") == ["The Milkmaid"]


def test_every_word_must_match(works):
    assert search("rembrandt watch") == ["The Night Watch"]
    assert search("rembrandt milkmaid") == []


def test_accents_are_ignored_both_ways(works):
    assert search("Durer") == ["Melencolia I"]
    assert search("dürer") == ["Melencolia I"]
    assert search("DÜRER") == ["Melencolia I"]
    ArtworkFactory(title="Étude", artist="Édouard Manet")
    assert search("etude") == ["Étude"]
    assert search("Edouard") == ["Étude"]


def test_typos_in_artists_names_are_tolerated(works):
    assert set(search("Rembrant")) == {"The Night Watch", "Self-portrait"}  # a letter left out
    assert search("Vermer") == ["The Milkmaid"]
    assert search("Vemreer") == ["The Milkmaid"]  # two letters swapped
    assert search("Merain") == ["Engravings of birds"]
    assert search("Peeterz") == ["Still life"]  # a letter changed
    assert search("Rembrant Rijn") != []
    assert search("Xembrunt") == []  # two edits away: not a typo any more


def test_an_exact_artist_ranks_above_a_typo(works):
    ArtworkFactory(title="Study", artist="Rembrand Workshop")
    found = search("Rembrandt")
    assert (
        found[-1] == "Study"
    )  # "Rembrand" is one letter from the search: found, but after the exact matches
    assert set(found[:2]) == {"The Night Watch", "Self-portrait"}


def test_accession_numbers_exact_and_fuzzy(works):
    assert search("SK-A-3262")[0] == "Self-portrait"
    assert search("sk-a-3262")[0] == "Self-portrait"
    assert "Self-portrait" in search("SK-A-3263")  # one digit wrong
    assert "Self-portrait" in search("SKA3262")  # separators left out
    assert search("RP-P-OB-1066") == ["Melencolia I"]
    # An exact number finds its work alone, not also its one-typo neighbours of the same numbering.
    ArtworkFactory(title="Self-portrait, study", accession_number="SK-A-3263")
    assert search("SK-A-3262") == ["Self-portrait"]
    assert set(search("SK-A-3264")) == {
        "Self-portrait",
        "Self-portrait, study",
    }  # no exact one: both neighbours


def test_the_sha256_finds_its_work(works):
    artwork = works["The Milkmaid"]
    assert search(artwork.sha256) == ["The Milkmaid"]


@pytest.mark.parametrize(
    "text",
    [
        "%",
        "50%",
        "%%",
        "_",
        "'",
        "''",
        "\\",
        "a & b",
        "!(",
        ":*",
        "|",
        "<->",
        "a:*b",
        "é'!",
        "(",
        "50% ale",
        "🎨",
    ],
)
def test_odd_characters_are_harmless(works, text):
    found = search(text)
    assert isinstance(found, list)


def test_odd_characters_search_the_words_around_them(works):
    assert search("50% ale") == ["Still life"]
    assert search("cheese & (bread)") == ["Still life"]
    assert search("'milkmaid'") == ["The Milkmaid"]


def test_an_explicit_ordering_replaces_the_rank(works):
    assert search("lighthouse", ordering="title") == ["Harbour scene", "Lighthouse at dusk"]


def test_a_blank_search_filters_nothing(works):
    assert len(search("   ")) == Artwork.objects.count()


def test_the_search_works_as_a_subquery(works):
    searched = ArtworkFilterSet({"search": "rembrandt"}, queryset=artworks_with_prediction()).qs
    titles = set(Artwork.objects.filter(pk__in=searched.values("pk")).values_list("title", flat=True))
    assert titles == {"The Night Watch", "Self-portrait"}


def test_a_changed_artwork_is_found_by_its_new_words(works):
    Artwork.objects.filter(pk=works["Still life"].pk).update(description="Oysters and lemons.")
    assert search("oyster") == ["Still life"]
    assert search("cheese") == []


def test_a_too_long_search_is_a_form_error(works):
    filters = ArtworkFilterSet({"search": "x" * 201}, queryset=artworks_with_prediction())
    assert not filters.is_valid()
    assert "search" in filters.errors


# --- The same search in the portal, the API and the admin ----------------------------------------------------------


@pytest.mark.parametrize("text", ["rembrandt", "Rembrant", "lighthouse", "durer", "SK-A-3262", "%"])
def test_portal_api_and_admin_give_the_same_results(works, curator, client, text):
    curator.is_staff = True
    curator.save()
    client.force_login(curator)
    expected = [a.pk for a in ArtworkFilterSet({"search": text}, queryset=artworks_with_prediction()).qs]

    portal = client.get(reverse("catalogue:artwork-list"), {"search": text})
    assert portal.status_code == 200
    assert [a.pk for a in portal.context["page"].items] == expected

    api = client.get("/api/v1/artworks/", {"search": text})
    assert api.status_code == 200
    assert [row["id"] for row in api.json()["results"]] == expected

    admin = client.get(reverse("admin:catalogue_artwork_changelist"), {"q": text})
    assert admin.status_code == 200
    assert [a.pk for a in admin.context["cl"].result_list] == expected


def test_odd_input_never_gives_a_server_error(works, curator, client):
    curator.is_staff = True
    curator.save()
    client.force_login(curator)
    for text in ["%", "'; DROP TABLE x; --", "\x00", "a\x00b", "x" * 500, "&|!():*<->"]:
        assert client.get(reverse("catalogue:artwork-list"), {"search": text}).status_code == 200
        assert client.get("/api/v1/artworks/", {"search": text}).status_code in (200, 400)
        assert client.get(reverse("admin:catalogue_artwork_changelist"), {"q": text}).status_code == 200
    too_long = client.get("/api/v1/artworks/", {"search": "x" * 500})
    assert too_long.status_code == 400
    assert "search" in str(too_long.json())


# --- The indexes --------------------------------------------------------------------------------------------------


def _plan(text: str) -> str:
    """The plan of the search's match: the query that reads the matching works (a ranked search then ranks just
    those ids, so the match is the one query that looks through the catalogue)."""
    with CaptureQueriesContext(connection) as queries:
        ArtworkFilterSet({"search": text}, queryset=Artwork.objects.all()).qs  # noqa: B018  # runs the search
    sql = next(q["sql"] for q in queries.captured_queries if "search_document @@" in q["sql"])
    with connection.cursor() as cursor:
        # A handful of rows would be read whole anyway: ask for the plan the indexes make possible.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}")
        return "\n".join(row[0] for row in cursor.fetchall())


def test_the_search_can_use_its_gin_indexes(works):
    plan = _plan("Rembrant")
    assert "artwork_search_document" in plan
    assert "artwork_search_keys" in plan
    assert "Seq Scan on catalogue_artwork" not in plan


def test_the_admin_orders_by_rank_unless_a_column_is_chosen(works, curator, client):
    curator.is_staff = True
    curator.save()
    client.force_login(curator)
    url = reverse("admin:catalogue_artwork_changelist")
    ranked = client.get(url, {"q": "lighthouse"}).context["cl"].result_list
    assert [a.title for a in ranked] == ["Lighthouse at dusk", "Harbour scene"]
    by_title = client.get(url, {"q": "lighthouse", "o": "2"}).context["cl"].result_list  # column 2: the title
    assert [a.title for a in by_title] == ["Harbour scene", "Lighthouse at dusk"]
