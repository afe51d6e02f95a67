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
#: A search whose words the statistics put in at least ``(RANK_AT_MOST + 1) / COMMON_SAMPLE`` of the works (a tenth)
#: is first looked for among the newest this many works: when more than :data:`RANK_AT_MOST` of them match, the
#: search is common and no index is read (:func:`_newest_matching_ids`).
COMMON_SAMPLE = 20_000
#: A word the statistics put in at least this share of the works is left out of the full-text index's lookup when
#: another word of the search is in under :data:`RARE_WORD_SHARE`: the works the rare words find are checked for
#: it instead (:func:`_index_words`).
COMMON_WORD_SHARE = 0.2
RARE_WORD_SHARE = 0.01

_WORD = re.compile(r"\w+")


class _SearchSQL(Expression):
    """A piece of SQL over the artworks table's columns and the search's parameters. ``{alias}`` is the alias the
    query gives the table, so the SQL stays right when the queryset becomes a subquery (``pk__in=...``)."""

    template = ""

    def __init__(self, *, params: list[Any], output_field: Any) -> None:
        super().__init__(output_field=output_field)
        self.params = params

    def as_sql(self, compiler: Any, connection: Any) -> Any:
        return self.sql(alias=compiler.quote_name_unless_alias(compiler.query.get_initial_alias()))

    def sql(self, *, alias: str) -> tuple[str, tuple[Any, ...]]:
        """The SQL and its parameters, the table named ``alias``."""
        return self.template.format(alias=alias), tuple(self.params)


#: The branches of a match beside the full-text one: a typo of the artist or the accession number, the exact accession
#: number, the file's sha256, closing the match's parenthesis. Parameters: the typo text (NULL: none), the text, the text
#: in lower case.
_OTHER_BRANCHES = (
    " OR {alias}.search_keys @@ artsite_typo_query(%s)"
    " OR {alias}.accession_number = %s OR {alias}.sha256 = %s)"
)
_FULL_TEXT = "{alias}.search_document @@ to_tsquery(%s::regconfig, artsite_unaccent(%s))"


class SearchMatch(_SearchSQL):
    # Each branch is served by an index: the two GIN indexes, accession_number's and sha256's unique btrees.
    # PostgreSQL combines them with a BitmapOr. The tsqueries are built from constants (client-side parameters),
    # so the planner computes them once.
    template = "(" + _FULL_TEXT + _OTHER_BRANCHES


class SearchMatchChecked(_SearchSQL):
    """A :class:`SearchMatch` whose full-text branch asks the index for some of the words only (``index_tsquery``)
    and checks the works it finds for all of them, through ``ts_match_vq`` (the function behind ``@@``, which no
    index serves, so PostgreSQL evaluates it on the rows)."""

    template = (
        "(("
        + _FULL_TEXT
        + " AND ts_match_vq({alias}.search_document, to_tsquery(%s::regconfig, artsite_unaccent(%s))))"
        + _OTHER_BRANCHES
    )

    def __init__(self, *, match: SearchMatch, index_tsquery: str) -> None:
        config = match.params[0]
        super().__init__(params=[config, index_tsquery, *match.params], output_field=BooleanField())


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


def _words_tsquery(words: list[str]) -> str:
    """The ``to_tsquery`` text for a search's words (:func:`search_words`): every word, and words of two letters or
    more also as a prefix. A one-letter prefix would match most of the catalogue, so a single letter must be a whole
    word."""
    return " & ".join(f"'{word}':*" if len(word) > 1 else f"'{word}'" for word in words)


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
    ``RANK_AT_MOST + 1`` of them (:func:`_matching_ids`: among the newest works or through the indexes); when
    there are few, the ranked list is those ids (the text is not matched twice), and when there are more the list is
    the plain filter, which PostgreSQL serves by walking the catalogue's order until a page is full.
    """
    text = text.replace("\x00", "").strip()[:MAX_SEARCH_LENGTH]
    if not text:
        return SearchResult(queryset=queryset, ranked=False, matches=None)
    config = settings.ARTSITE_SEARCH_CONFIG
    # An empty tsquery (no words, or only stop words) matches nothing; PostgreSQL says so in a NOTICE, harmlessly.
    words = search_words(text)
    tsquery = _words_tsquery(words)
    # An exact accession number is what the curator meant: its one-typo neighbours (in a numbering, the works
    # before and after it) would only bury it. NULL turns the typo branch off (artsite_typo_query is STRICT).
    typos = None if Artwork.objects.filter(accession_number=text).exists() else text
    match = SearchMatch(params=[config, tsquery, typos, text, text.lower()], output_field=BooleanField())
    if not rank:
        return SearchResult(queryset=queryset.filter(match), ranked=False, matches=None)
    found = _matching_ids(words=words, typos=typos, match=match)
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


def _matching_ids(*, words: list[str], typos: str | None, match: SearchMatch) -> list[int]:
    """At most ``RANK_AT_MOST + 1`` ids of the works that match (``match``, the search's filter), read the cheapest
    way the table's statistics suggest; each way finds the same works.

    1. A search the statistics call common (its words each in a tenth of the works or more, or its typos: see
       :class:`_Shares`) is first looked for among the newest :data:`COMMON_SAMPLE` works
       (:func:`_newest_matching_ids`); when more than ``RANK_AT_MOST`` of them match, that settles it, and no index
       is read. A GIN index lookup builds a bitmap of *every* match
       before the first row (a word in a seventh of a million works: ~85 ms), where the newest 14,000 works hold
       2,001 of its matches (~18 ms).
    2. Otherwise the ids are read through the search's indexes (:func:`_indexed_matching_ids`), asking the
       full-text index only for the rarer words when others are common (:func:`_index_words`).
    """
    shares = _shares(words, typos=typos is not None)
    if shares.search() >= (RANK_AT_MOST + 1) / COMMON_SAMPLE:
        newest = _newest_matching_ids(match)
        if len(newest) > RANK_AT_MOST:
            return newest
    index_words, checked = _index_words(words, shares.words)
    indexed: _SearchSQL = match
    if checked:
        indexed = SearchMatchChecked(match=match, index_tsquery=_words_tsquery(index_words))
    return _indexed_matching_ids(indexed)


_WORD_SHARES_SQL = """
WITH statistics AS MATERIALIZED (
    SELECT stats.attname AS column_name, element.lexeme, element.share
    FROM pg_stats AS stats,
         unnest(stats.most_common_elems::text::text[], stats.most_common_elem_freqs) AS element(lexeme, share)
    WHERE stats.schemaname = current_schema() AND stats.tablename = %(table)s
      AND stats.attname IN ('search_document', 'search_keys')
)
SELECT
    (SELECT min((
        SELECT coalesce(sum(element.share), 0) FROM statistics AS element
        WHERE element.column_name = 'search_document'
          AND (element.lexeme = lexemes.lexeme
               OR (length(words.word) > 1 AND starts_with(element.lexeme, lexemes.lexeme)))
     ))
     FROM unnest(word.lexemes) AS lexemes(lexeme)),
    CASE WHEN cardinality(word.keys) > 0 THEN (
        SELECT coalesce(max(element.share), 0) FROM statistics AS element
        WHERE element.column_name = 'search_keys' AND element.lexeme = ANY(word.keys)
    ) END
FROM unnest(%(words)s::text[]) WITH ORDINALITY AS words(word, position),
     -- OFFSET 0 keeps each word's lexemes and typo keys computed once, not once per element they are compared with.
     LATERAL (
        SELECT tsvector_to_array(to_tsvector(%(config)s::regconfig, artsite_unaccent(words.word))) AS lexemes,
               artsite_typo_keys(words.word) AS keys
        OFFSET 0
     ) AS word
ORDER BY words.position
"""


@dataclass(frozen=True)
class _Shares:
    """A search's words' shares of the works by the table's statistics (``pg_stats.most_common_elems``, which
    ``ANALYZE`` keeps for ``search_document`` and ``search_keys``: the elements in more than a few hundredths of a
    percent of a sample of rows, with their frequencies). An estimate that chooses a road, never a result.

    ``words``: per word, the share of works with it in their full-text document, counting every listed lexeme it is
    the start of (0 for a word the statistics do not list: rare, or not analysed yet; ``None`` for one that is no
    lexeme: the configuration's stop words). ``typos``: the share of works the typo branch finds, at least (each
    word's most common typo key; the least of the words).
    """

    words: list[float | None]
    typos: float

    def search(self) -> float:
        """The share of works the whole search matches, as far as the statistics tell: every word's (the least),
        or the typo branch's when that is more."""
        known = [share for share in self.words if share is not None]
        return max(min(known, default=0.0), self.typos)


def _shares(words: list[str], *, typos: bool) -> _Shares:
    """The statistics' shares for ``words``; ``typos`` false when the search's typo branch is off."""
    if not words:
        return _Shares(words=[], typos=0.0)
    with connection.cursor() as cursor:
        cursor.execute(
            _WORD_SHARES_SQL,
            {"table": Artwork._meta.db_table, "config": settings.ARTSITE_SEARCH_CONFIG, "words": words},
        )
        rows = cursor.fetchall()
    typo_shares = [float(typo) for _, typo in rows if typo is not None]
    return _Shares(
        words=[None if share is None else float(share) for share, _ in rows],
        typos=min(typo_shares) if typos and typo_shares else 0.0,
    )


def _index_words(words: list[str], shares: list[float | None]) -> tuple[list[str], list[str]]:
    """The words the full-text index is asked for, and the words left to be checked on the works it finds.

    A prefix lookup in a GIN index reads every posting of every lexeme with that prefix (about 2.7 ms per 100,000),
    however few works have all the words: "Bench work 0001234" in a catalogue whose every title has "bench" and
    "work" read two million postings for one work (73 ms). When a word is in under :data:`RARE_WORD_SHARE` of the
    works, the words in :data:`COMMON_WORD_SHARE` or more are left out of the lookup and checked on the few works
    the others found (0.05 ms there). Without a rare word, or without a common one, the index gets every word.
    """
    rare = any(share is not None and share < RARE_WORD_SHARE for share in shares)
    common = [
        word
        for word, share in zip(words, shares, strict=True)
        if share is not None and share >= COMMON_WORD_SHARE
    ]
    if not rare or not common:
        return words, []
    return [word for word in words if word not in common], common


def _newest_matching_ids(match: SearchMatch) -> list[int]:
    """At most ``RANK_AT_MOST + 1`` ids of the works that match among the newest :data:`COMMON_SAMPLE`, read in the
    catalogue's order through ``artwork_created_id`` (a bounded walk: it reads the sample at most, whatever the
    matches)."""
    columns = ", ".join(["id", "search_document", "search_keys", "accession_number", "sha256"])
    condition, params = match.sql(alias="newest")
    sql = (
        f"SELECT newest.id FROM (SELECT {columns} FROM {Artwork._meta.db_table}"
        " ORDER BY created_at DESC, id DESC LIMIT %s) AS newest"
        f" WHERE {condition} LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [COMMON_SAMPLE, *params, RANK_AT_MOST + 1])
        return [row[0] for row in cursor.fetchall()]


def _indexed_matching_ids(match: Expression) -> list[int]:
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
