"""Text search (catalogue/selectors/search.py, docs/search.md): two stored generated columns with GIN indexes.

* ``search_document``: the full-text document, unaccented, in the text-search configuration
  ``ARTSITE_SEARCH_CONFIG`` (read here, at migrate time): title and accession number (weight A), artist (B),
  description (D).
* ``search_keys``: typo keys of the artist's words and of the accession number: each word (4 to 40 letters) and its
  one-letter deletions (a "deletion neighbourhood"), so that two words one edit apart share a key.

Only core PostgreSQL: the embedded server (pgserver, PostgreSQL 16.2) ships no contrib modules, so neither
``unaccent`` nor ``pg_trgm`` can be created there (compose's pgvector/pgvector image has both). ``artsite_unaccent``
is a plain ``translate`` and therefore truly immutable, which an index expression needs.

The columns are not model fields: Django would select them with every artwork. Adding them rewrites the table once
(about a minute per million rows).
"""

from __future__ import annotations

import re

from django.conf import settings
from django.db import migrations

#: Latin letters with diacritics (Latin-1 Supplement, Latin Extended-A and B) and their base letters, then the
#: combining marks (U+0300–U+036F), which ``translate`` deletes (they have no counterpart in ``UNACCENTED``).
ACCENTED = (
    "ÀÁÂÃÄÅÇÈÉÊËÌÍÎÏÑÒÓÔÕÖÙÚÛÜÝàáâãäåçèéêëìíîïñòóôõöùúûüýÿĀāĂăĄąĆćĈĉĊċČčĎďĒēĔĕĖėĘęĚěĜĝĞğĠġĢģĤĥĨĩĪīĬĭĮįİĴĵĶķĹĺĻļĽľ"
    "ŃńŅņŇňŌōŎŏŐőŔŕŖŗŘřŚśŜŝŞşŠšŢţŤťŨũŪūŬŭŮůŰűŲųŴŵŶŷŸŹźŻżŽžſƠơƯưǍǎǏǐǑǒǓǔǕǖǗǘǙǚǛǜǞǟǠǡǦǧǨǩǪǫǬǭǰǴǵǸǹǺǻȀȁȂȃȄȅȆȇȈȉȊȋȌȍȎȏ"
    "ȐȑȒȓȔȕȖȗȘșȚțȞȟȦȧȨȩȪȫȬȭȮȯȰȱȲȳÐØðøĐđĦħıĿŀŁłŦŧǾǿ" + "".join(chr(c) for c in range(0x300, 0x370))
)
UNACCENTED = (
    "AAAAAACEEEEIIIINOOOOOUUUUYaaaaaaceeeeiiiinooooouuuuyyAaAaAaCcCcCcCcDdEeEeEeEeEeGgGgGgGgHhIiIiIiIiIJjKkLlLlLl"
    "NnNnNnOoOoOoRrRrRrSsSsSsSsTtTtUuUuUuUuUuUuWwYyYZzZzZzsOoUuAaIiOoUuUuUuUuUuAaAaGgKkOoOojGgNnAaAaAaEeEeIiIiOo"
    "OoRrRrUuUuSsTtHhAaEeOoOoOoOoYyDOdoDdHhiLlLlTtOo"
)
#: Letters that become two.
LIGATURES = {
    "Æ": "AE",
    "æ": "ae",
    "Œ": "OE",
    "œ": "oe",
    "ß": "ss",
    "Þ": "TH",
    "þ": "th",
    "Ĳ": "IJ",
    "ĳ": "ij",
}


def _config() -> str:
    config = getattr(settings, "ARTSITE_SEARCH_CONFIG", "simple")
    if not re.fullmatch(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?", config):
        raise ValueError(f"ARTSITE_SEARCH_CONFIG must name a text-search configuration, not {config!r}")
    return config


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _unaccent_body() -> str:
    body = "$1"
    for letter, replacement in LIGATURES.items():
        body = f"replace({body}, {_literal(letter)}, {_literal(replacement)})"
    return f"translate({body}, {_literal(ACCENTED)}, {_literal(UNACCENTED)})"


FUNCTIONS = f"""
CREATE FUNCTION artsite_unaccent(text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT {_unaccent_body()} $$;

-- The typo keys of a text: each word of 4 to 40 letters or digits (lower case, unaccented) and the word with one
-- character deleted, for each position. Words one edit apart (a letter changed, added, left out, or two swapped)
-- share a key.
CREATE FUNCTION artsite_typo_keys(text) RETURNS text[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path FROM CURRENT
    AS $$
    SELECT coalesce(array_agg(DISTINCT key), '{{}}')
    FROM regexp_split_to_table(lower(artsite_unaccent($1)), '[^a-z0-9]+') AS word,
         LATERAL (SELECT word UNION ALL
                  SELECT overlay(word PLACING '' FROM i FOR 1) FROM generate_series(1, length(word)) AS i) AS k(key)
    WHERE length(word) BETWEEN 4 AND 40
    $$;

-- What ``search_keys`` holds for an artwork: the artist's words, and the accession number as one word (its
-- letters and digits run together: "SK-A-3262" is "ska3262").
CREATE FUNCTION artsite_artwork_keys(artist text, accession_number text) RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path FROM CURRENT
    AS $$
    SELECT array_to_tsvector(
        artsite_typo_keys(coalesce(artist, ''))
        || artsite_typo_keys(regexp_replace(lower(artsite_unaccent(coalesce(accession_number, ''))), '[^a-z0-9]+', '', 'g'))
    )
    $$;

-- The query over ``search_keys`` for a search text: every word of 4 letters or more matches one of its keys
-- (AND), or the whole text, run together, matches like an accession number (OR; left out when it is the only
-- word). NULL when no word is long enough.
CREATE FUNCTION artsite_typo_query(text) RETURNS tsquery
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path FROM CURRENT
    AS $$
    WITH words AS (
        SELECT word FROM regexp_split_to_table(lower(artsite_unaccent($1)), '[^a-z0-9]+') AS word
        WHERE length(word) BETWEEN 4 AND 40
    ), whole AS (
        SELECT regexp_replace(lower(artsite_unaccent($1)), '[^a-z0-9]+', '', 'g') AS word
    )
    SELECT nullif(concat_ws(' | ',
        '(' || (SELECT string_agg('(' || array_to_string(artsite_typo_keys(word), ' | ') || ')', ' & ') FROM words)
            || ')',
        (SELECT '(' || array_to_string(artsite_typo_keys(word), ' | ') || ')' FROM whole
         WHERE length(word) BETWEEN 4 AND 40 AND word NOT IN (SELECT word FROM words))
    ), '')::tsquery
    $$;
"""

COLUMNS = f"""
ALTER TABLE catalogue_artwork
    ADD COLUMN search_document tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('{_config()}'::regconfig, artsite_unaccent(coalesce(title, ''))), 'A')
        || setweight(to_tsvector('{_config()}'::regconfig, artsite_unaccent(coalesce(accession_number, ''))), 'A')
        || setweight(to_tsvector('{_config()}'::regconfig, artsite_unaccent(coalesce(artist, ''))), 'B')
        || setweight(to_tsvector('{_config()}'::regconfig, artsite_unaccent(coalesce(description, ''))), 'D')
    ) STORED,
    ADD COLUMN search_keys tsvector GENERATED ALWAYS AS (
        artsite_artwork_keys(artist, accession_number)
    ) STORED;
CREATE INDEX artwork_search_document ON catalogue_artwork USING gin (search_document);
CREATE INDEX artwork_search_keys ON catalogue_artwork USING gin (search_keys);
"""

REVERSE = """
DROP INDEX IF EXISTS artwork_search_keys;
DROP INDEX IF EXISTS artwork_search_document;
ALTER TABLE catalogue_artwork DROP COLUMN IF EXISTS search_keys, DROP COLUMN IF EXISTS search_document;
DROP FUNCTION IF EXISTS artsite_typo_query(text);
DROP FUNCTION IF EXISTS artsite_artwork_keys(text, text);
DROP FUNCTION IF EXISTS artsite_typo_keys(text);
DROP FUNCTION IF EXISTS artsite_unaccent(text);
"""


class Migration(migrations.Migration):
    dependencies = [("catalogue", "0009_scale")]

    operations = [
        migrations.RunSQL(FUNCTIONS + COLUMNS, REVERSE),
    ]
