"""Export rows written as CSV or JSON lines, one line at a time (for streamed responses and files alike).

CSV has one flat column per value: ``probabilities`` becomes ``probability_<slug>`` for each type of the catalogue;
empty cells stand for "none". JSON lines keep each row as one object (``probabilities`` a ``{slug: p}`` object,
``null`` for none). Both are UTF-8; CSV has a header line and ``\\r\\n`` line ends (RFC 4180).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

FORMATS = ("csv", "jsonl")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}
EXTENSIONS = {"csv": "csv", "jsonl": "jsonl"}


def csv_columns(columns: Sequence[str], type_slugs: Sequence[str]) -> list[str]:
    """The CSV header: ``probabilities`` spread over one column per type."""
    out: list[str] = []
    for column in columns:
        if column == "probabilities":
            out.extend(f"probability_{slug}" for slug in type_slugs)
        else:
            out.append(column)
    return out


def csv_lines(
    rows: Iterable[dict[str, Any]], *, columns: Sequence[str], type_slugs: Sequence[str] = ()
) -> Iterator[str]:
    header = csv_columns(columns, type_slugs)
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(values: Sequence[Any]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(values)
        return buffer.getvalue()

    yield line(header)
    for row in rows:
        values: list[Any] = []
        for column in columns:
            if column == "probabilities":
                probabilities = row.get(column) or {}
                values.extend(_cell(probabilities.get(slug)) for slug in type_slugs)
            else:
                values.append(_cell(row.get(column)))
        yield line(values)


def jsonl_lines(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    for row in rows:
        yield json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n"


def export_lines(
    rows: Iterable[dict[str, Any]], *, format: str, columns: Sequence[str], type_slugs: Sequence[str] = ()
) -> Iterator[str]:
    """The rows as lines of ``format`` (``csv`` or ``jsonl``)."""
    if format == "csv":
        return csv_lines(rows, columns=columns, type_slugs=type_slugs)
    if format == "jsonl":
        return jsonl_lines(rows)
    raise ValueError(f"Unknown export format {format!r} (one of: {', '.join(FORMATS)}).")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # every digit: a round trip gives the same float
    return value
