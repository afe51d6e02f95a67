"""The manifest: a CSV (with a header) or JSON-lines file giving each image's title, artist, date, accession number,
type and description, read and checked before the walk. Each bad row is kept with its line number and reason (the
file it names is then not imported); the good rows import."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from catalogue.importing.labels import TypeNames
from catalogue.importing.results import BadRow, ImportFailed
from catalogue.models import (
    ACCESSION_MAX_LENGTH,
    ARTIST_MAX_LENGTH,
    DATE_MAX_LENGTH,
    DESCRIPTION_MAX_LENGTH,
    TITLE_MAX_LENGTH,
    ArtworkType,
)
from catalogue.selectors.artworks import artwork_types
from inference.preprocessing import ALLOWED_EXTENSIONS

MANIFEST_COLUMNS = ("path", "title", "artist", "date", "accession", "type", "description")
# The manifest's columns and the artwork field limits they fill (catalogue/models.py).
FIELD_LIMITS = {
    "title": TITLE_MAX_LENGTH,
    "artist": ARTIST_MAX_LENGTH,
    "date": DATE_MAX_LENGTH,
    "accession": ACCESSION_MAX_LENGTH,
    "description": DESCRIPTION_MAX_LENGTH,
}


@dataclass(frozen=True)
class ManifestRow:
    line: int
    path: str  # relative to the folder, POSIX
    title: str = ""
    artist: str = ""
    date: str = ""
    accession: str = ""
    description: str = ""
    artwork_type: ArtworkType | None = None


@dataclass
class Manifest:
    rows: dict[str, ManifestRow] = field(default_factory=dict)
    bad: dict[str, BadRow] = field(default_factory=dict)  # files named by a bad row: not imported
    bad_rows: list[BadRow] = field(default_factory=list)  # every bad row, in line order


def manifest_read(*, path: Path, folder: Path, types: TypeNames | None = None) -> Manifest:
    """Parse and check a manifest. Each bad row (missing file, unknown type, duplicate path or accession, bad
    encoding, malformed line) is kept with its line number; the good rows import. Raises :class:`ImportFailed`
    only when the file cannot be used at all (missing, no ``path`` column)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImportFailed(f"The manifest {path} cannot be read: {exc.strerror or exc}.") from None
    is_json = path.suffix.lower() in (".jsonl", ".ndjson", ".json") or raw.lstrip()[:1] == b"{"
    records = _jsonl_records(raw) if is_json else _csv_records(raw, path)
    folder = folder.resolve()
    types = types or TypeNames()
    manifest = Manifest()
    accessions: dict[str, int] = {}
    for line, record, problem in records:
        path_value = record.get("path", "")
        rel = _manifest_rel_path(path_value, folder) if path_value and not _has_surrogates(path_value) else ""
        if problem is None:
            problem = _manifest_row_problem(record, rel, folder, manifest, accessions, types)
        if problem is not None:
            bad = BadRow(line=line, path=rel or str(record.get("path", "") if record else ""), reason=problem)
            manifest.bad_rows.append(bad)
            if rel and rel not in manifest.rows and rel not in manifest.bad and _walked_image(folder, rel):
                manifest.bad[rel] = bad  # the walk will meet this file: it is skipped, with this row's reason
            continue
        accession = record.get("accession", "")
        if accession:
            accessions[accession] = line
        manifest.rows[rel] = ManifestRow(
            line=line,
            path=rel,
            title=record.get("title", ""),
            artist=record.get("artist", ""),
            date=record.get("date", ""),
            accession=accession,
            description=record.get("description", ""),
            artwork_type=types(record.get("type", "")),
        )
    return manifest


def _csv_records(raw: bytes, path: Path) -> Iterator[tuple[int, dict[str, str], str | None]]:
    # surrogateescape keeps undecodable bytes as lone surrogates, so a bad line is found and reported by number
    # instead of failing the whole file.
    text = raw.decode("utf-8-sig", errors="surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise ImportFailed(f"The manifest {path} is empty.") from None
    except csv.Error as exc:
        raise ImportFailed(f"The manifest {path} has an unreadable header: {exc}.") from None
    columns = [c.strip().lower() for c in header]
    if "path" not in columns:
        raise ImportFailed(
            f"The manifest {path} has no 'path' column; its header must name the columns "
            f"({', '.join(MANIFEST_COLUMNS)})."
        )
    previous_end = reader.line_num
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield previous_end + 1, {}, f"malformed CSV ({exc})"
            previous_end = reader.line_num
            continue
        line, previous_end = previous_end + 1, reader.line_num
        if not any(v.strip() for v in values):
            continue
        # The record comes along with a problem too, so the file it names is known (and not imported).
        record = {c: v.strip() for c, v in zip(columns, values, strict=False) if c in MANIFEST_COLUMNS}
        if any(_has_surrogates(v) for v in values):
            yield line, record, "bad encoding (not UTF-8)"
        elif len(values) > len(columns):
            yield line, record, f"{len(values)} values but the header names {len(columns)} columns"
        else:
            yield line, record, None


def _jsonl_records(raw: bytes) -> Iterator[tuple[int, dict[str, str], str | None]]:
    for number, chunk in enumerate(raw.splitlines(), start=1):
        if not chunk.strip():
            continue
        if number == 1 and chunk.startswith(b"\xef\xbb\xbf"):
            chunk = chunk[3:]
        problem = None
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError:
            text, problem = chunk.decode("utf-8", errors="surrogateescape"), "bad encoding (not UTF-8)"
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            yield number, {}, problem or f"not valid JSON ({exc.msg})"
            continue
        if not isinstance(record, dict):
            yield number, {}, "not a JSON object"
            continue
        cleaned: dict[str, str] = {}
        for key, value in record.items():
            key = str(key).strip().lower()
            if key not in MANIFEST_COLUMNS or value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                problem = problem or f"'{key}' must be a string"
                continue
            cleaned[key] = str(value).strip()
        yield number, cleaned, problem


def _walked_image(folder: Path, rel: str) -> bool:
    """Whether the walk will meet this path as an image candidate: lexically inside the folder, a file (through a
    link too: the walk refuses a link leading outside, and the row's own reason is the one to report)."""
    inside = not Path(rel).is_absolute() and ".." not in PurePosixPath(rel).parts
    full = folder / rel
    return inside and full.is_file() and full.suffix.lower() in ALLOWED_EXTENSIONS


def _has_surrogates(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def _manifest_rel_path(value: str, folder: Path) -> str:
    value = (value or "").strip().replace("\\", "/")
    if not value:
        return ""
    candidate = Path(value)
    if candidate.is_absolute():
        try:
            return candidate.resolve().relative_to(folder).as_posix()
        except ValueError:
            return value  # reported as outside the folder
    parts = [p for p in PurePosixPath(value).parts if p not in ("", ".")]
    return PurePosixPath(*parts).as_posix() if parts else ""


def _manifest_row_problem(
    record: dict[str, str],
    rel: str,
    folder: Path,
    manifest: Manifest,
    accessions: dict[str, int],
    types: TypeNames,
) -> str | None:
    if not rel:
        return "no path"
    full = (folder / rel).resolve()
    if Path(rel).is_absolute() or ".." in PurePosixPath(rel).parts:
        return f"the path {rel} is outside the folder"
    if not full.is_relative_to(folder):
        return f"the file {rel} is a link to a file outside the folder"
    if rel in manifest.rows:
        return f"the file {rel} is already listed on line {manifest.rows[rel].line}"
    if not full.is_file():
        return f"no file {rel} in the folder"
    if full.suffix.lower() not in ALLOWED_EXTENSIONS:
        return f"{rel} is not an image file (JPEG, PNG, WebP or TIFF)"
    type_name = record.get("type", "")
    if type_name and types(type_name) is None:
        slugs = ", ".join(t.slug for t in artwork_types())
        return f"unknown type {type_name!r} (one of: {slugs})"
    for name, limit in FIELD_LIMITS.items():
        if len(record.get(name, "")) > limit:
            return f"{name} is {len(record.get(name, '')):,} characters long; the limit is {limit:,}"
    accession = record.get("accession", "")
    if accession and accession in accessions:
        return f"accession number {accession} is already used on line {accessions[accession]}"
    return None
