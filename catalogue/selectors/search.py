"""Text search over the catalogue: what "search" means in the portal, the API and the admin (through the ``search``
filter of :class:`catalogue.filters.ArtworkFilterSet`).

A work matches when

* every word of the search is in its title, artist, accession number or description, as a word or the start of one
  (full-text search, accents ignored: "durer" finds "Dürer", "engrav" finds "Engravings");
* or every word of four letters or more is within one typo of a word of its artist ("Rembrant" finds "Rembrandt"),
  or the whole search is within one typo of its accession number ("SK-A-3263" finds "SK-A-3262") — unless the
  search is exactly some work's accession number;
* or the search is exactly its accession number or its file's sha256.

Results are ranked: a word in the title or the accession number counts more than in the artist, which counts more
than in the description; a typo match ranks below an exact artist match; an exact accession number first. A search
that matches more than :data:`RANK_AT_MOST` works (a common word in a large catalogue) is listed newest first
instead, and says so (:class:`SearchResult`): ranking every match of a common word would not fit a page's time.

Both sides are stored generated columns with GIN indexes (migration ``catalogue/0010_search``): ``search_document``
(the full-text document) and ``search_keys`` (typo keys). They are not model fields (Django would load them with
every work), so the SQL here names them, qualified with the alias the query gives the artworks table.
docs/search.md has the design, why only core PostgreSQL, and the timings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import BooleanField, Expression, FloatField, QuerySet

from catalogue.models import Artwork
from catalogue.selectors.artworks import Tally

#: Longest search text (characters); longer is a form error.
MAX_SEARCH_LENGTH = 200
#: Words used from a search; the rest are ignored (each adds a term to the query).
MAX_WORDS = 12
#: A search ranks its matches when at most this many works match it; beyond, they are listed newest first (and
#: the page says so). Ranking this many costs tens of milliseconds; ranking a common word's 200,000 would not fit
#: a page.
RANK_AT_MOST = 2_000
#: Rank added by a typo match (between an artist's exact word and a description's word) and by an exact accession
#: number (above everything else).
TYPO_RANK = 0.3
ACCESSION_RANK = 1.0

_WORD = re.compile(r"\w+")


class _SearchSQL(Expression):
    """A piece of SQL over the artworks table's columns and the search's parameters. ``{alias}`` is the alias the
    query gives the table, so the SQL stays right when the queryset becomes a subquery (``pk__in=...``)."""

    template = ""

    def __init__(self, *, params: list[Any], output_field: Any) -> None:
        super().__init__(output_field=output_field)
        self.params = params

    def as_sql(self, compiler: Any, connection: Any) -> Any:
        alias = compiler.quote_name_unless_alias(compiler.query.get_initial_alias())
        return self.template.format(alias=alias), tuple(self.params)


class SearchMatch(_SearchSQL):
    # Each branch is served by an index: the two GIN indexes, accession_number's and sha256's unique btrees.
    # PostgreSQL combines them with a BitmapOr. The tsqueries are built from constants (client-side parameters),
    # so the planner computes them once.
    template = (
        "({alias}.search_document @@ to_tsquery(%s::regconfig, artsite_unaccent(%s))"
        " OR {alias}.search_keys @@ artsite_typo_query(%s)"
        " OR {alias}.accession_number = %s OR {alias}.sha256 = %s)"
    )


class SearchRank(_SearchSQL):
    # ts_rank's default weights: A 1.0, B 0.4, C 0.2, D 0.1.
    template = (
        "(ts_rank({alias}.search_document, to_tsquery(%s::regconfig, artsite_unaccent(%s)))"
        " + CASE WHEN {alias}.search_keys @@ artsite_typo_query(%s) THEN %s ELSE 0 END"
        " + CASE WHEN {alias}.accession_number = %s THEN %s ELSE 0 END)"
    )


def search_words(text: str) -> list[str]:
    """The words of a search, as the full-text query uses them (letters and digits; punctuation and operators
    dropped, so ``%``, quotes or ``&`` mean nothing special)."""
    return _WORD.findall(text.replace("_", " "))[:MAX_WORDS]


def search_tsquery(text: str) -> str:
    """The ``to_tsquery`` text for a search: every word, and words of two letters or more also as a prefix.

    A one-letter prefix would match most of the catalogue, so a single letter must be a whole word.
    """
    return " & ".join(f"'{word}':*" if len(word) > 1 else f"'{word}'" for word in search_words(text))


class _ArtworkIdIn(_SearchSQL):
    # One array parameter rather than Django's ``IN (%s, %s, ...)``: 2,000 ids cost one placeholder, not 2,000.
    template = "{alias}.id = ANY(%s)"


@dataclass(frozen=True)
class SearchResult:
    """A search's works (:attr:`queryset`), whether they are in rank order (``ranked``: false for a search that
    matches more than :data:`RANK_AT_MOST` works, listed newest first, or when not asked to rank), and how many
    works match the search's text alone when that was established (exact up to :data:`RANK_AT_MOST`, else "more
    than"; ``None`` when not asked to rank)."""

    queryset: QuerySet[Any]
    ranked: bool
    matches: Tally | None


def artworks_search(*, queryset: QuerySet[Any], text: str, rank: bool = True) -> SearchResult:
    """The works of ``queryset`` that match ``text``; ranked (annotated with ``search_rank`` and ordered by it, best
    first, newest first among equals) when ``rank`` and at most :data:`RANK_AT_MOST` works match, else in the
    queryset's own order (the catalogue's: newest first). A blank text filters nothing.

    Ranking needs every match's rank before the first page, so its cost grows with the matches: a word in a fifth of
    a million works would mean ranking 200,000 rows for 24. So the matches' ids are read first, at most
    ``RANK_AT_MOST + 1`` of them (:func:`_matching_ids`, through the GIN indexes); when
    there are few, the ranked list is those ids (the text is not matched twice), and when there are more the list is
    the plain filter, which PostgreSQL serves by walking the catalogue's order until a page is full.
    """
    text = text.replace("\x00", "").strip()[:MAX_SEARCH_LENGTH]
    if not text:
        return SearchResult(queryset=queryset, ranked=False, matches=None)
    config = settings.ARTSITE_SEARCH_CONFIG
    # An empty tsquery (no words, or only stop words) matches nothing; PostgreSQL says so in a NOTICE, harmlessly.
    tsquery = search_tsquery(text)
    # An exact accession number is what the curator meant: its one-typo neighbours (in a numbering, the works
    # before and after it) would only bury it. NULL turns the typo branch off (artsite_typo_query is STRICT).
    typos = None if Artwork.objects.filter(accession_number=text).exists() else text
    match = SearchMatch(params=[config, tsquery, typos, text, text.lower()], output_field=BooleanField())
    if not rank:
        return SearchResult(queryset=queryset.filter(match), ranked=False, matches=None)
    found = _matching_ids(match)
    if len(found) > RANK_AT_MOST:
        return SearchResult(
            queryset=queryset.filter(match), ranked=False, matches=Tally(RANK_AT_MOST, "at_least")
        )
    score = SearchRank(
        params=[config, tsquery, typos, TYPO_RANK, text, ACCESSION_RANK], output_field=FloatField()
    )
    ranked = (
        queryset.filter(_ArtworkIdIn(params=[found], output_field=BooleanField()))
        if found
        else queryset.none()
    )
    return SearchResult(
        queryset=ranked.annotate(search_rank=score).order_by("-search_rank", "-id"),
        ranked=True,
        matches=Tally(len(found)),
    )


def _matching_ids(match: Expression) -> list[int]:
    """At most ``RANK_AT_MOST + 1`` ids of the works that match, always through the search's indexes (a BitmapOr of
    the two GIN indexes and the two btrees), never by a scan of the catalogue that hopes to stop early.

    The planner's estimate of a text match is a guess (below 100 distinct words it cannot know a word's share, and
    it takes ``&`` of words as independent), and with a LIMIT a guess of many matches makes a sequential scan look
    cheap: "Bench work 0001234", estimated at 73,000 matches of a million, had one, and the scan read every work for
    it (2.3 s). Through the indexes the cost is the postings read (milliseconds per 100,000), whatever the matches.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        try:
            return list(
                Artwork.objects.filter(match).order_by().values_list("pk", flat=True)[: RANK_AT_MOST + 1]
            )
        finally:  # inside an outer transaction SET LOCAL would outlive this block
            cursor.execute("SET LOCAL enable_seqscan TO DEFAULT")
