"""Reads for the exports: the catalogue as rows (filtered exactly as the list is) and the label audit trail as rows.

Rows are produced one at a time from a server-side cursor that streams (:func:`_streamed`), so an export of a million works
holds one chunk of rows in memory, never the whole catalogue. The row's keys are the export's columns; the first
seven are the import manifest's (``catalogue.importing.manifest.MANIFEST_COLUMNS``), so an export is a manifest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import QuerySet

from catalogue.filters import ArtworkFilterSet
from catalogue.models import ArtworkType, LabelCorrection
from catalogue.selectors.artworks import artwork_types, artworks_with_prediction
from inference.models import ModelVersion
from inference.selectors import model_version_active

#: Rows fetched from the server-side cursor at a time.
CHUNK_SIZE = 2000

#: The manifest's columns first (what ``import_artworks --manifest`` reads), then what Artsite knows of the work.
ARTWORK_COLUMNS = (
    "path",
    "title",
    "artist",
    "date",
    "accession",
    "type",
    "description",
    "id",
    "label_provenance",
    "effective_type",
    "effective_type_source",
    "status",
    "predicted_type",
    "confidence",
    "probabilities",
    "model_version",
    "sha256",
    "width",
    "height",
    "file_size",
    "image_url",
)

LABEL_CORRECTION_COLUMNS = (
    "id",
    "artwork_id",
    "sha256",
    "accession",
    "title",
    "from_type",
    "to_type",
    "source",
    "user",
    "note",
    "created_at",
)

_FIELDS = (
    "pk",
    "image",
    "title",
    "artist",
    "date",
    "accession_number",
    "description",
    "curator_type_id",
    "label_provenance",
    "effective_type_id",
    "status",
    "pred_type_id",
    "pred_confidence",
    "pred_probabilities",
    "sha256",
    "width",
    "height",
    "file_size",
)


class ExportFiltersInvalid(ValueError):
    """The filters do not validate; ``errors`` is the filter form's errors ({field: [messages]})."""

    def __init__(self, errors: Mapping[str, list[str]]) -> None:
        super().__init__("; ".join(f"{field}: {' '.join(messages)}" for field, messages in errors.items()))
        self.errors = dict(errors)


@dataclass
class ArtworkExport:
    """What an export holds: the types (one probability column each), the active model version, how many rows
    (for a progress bar) and the rows themselves, produced lazily."""

    types: list[ArtworkType]
    model_version: str | None
    queryset: QuerySet[Any]

    def count(self) -> int:
        return self.queryset.count()

    def rows(self, *, on_image: Callable[[str, str], None] | None = None) -> Iterator[dict[str, Any]]:
        """The rows, from a server-side cursor. ``on_image(storage name, path)`` is called for each row's image
        (the export command copies the images beside the file with it)."""
        slugs = {t.pk: t.slug for t in self.types}
        for values in _streamed(self.queryset.values_list(*_FIELDS)):
            row = _artwork_row(dict(zip(_FIELDS, values, strict=True)), slugs, self.model_version)
            if on_image is not None:
                on_image(values[1], row["path"])
            yield row


def _streamed(rows: QuerySet[Any]) -> Iterator[Any]:
    """The rows of a query from a server-side cursor, a chunk at a time, inside a transaction: outside one, Django
    declares the cursor WITH HOLD, which PostgreSQL materialises whole before handing out the first row (49 s for a
    million works before an export's first byte). In one the cursor streams, from one snapshot of the catalogue."""
    with transaction.atomic():
        yield from rows.iterator(chunk_size=CHUNK_SIZE)


def artworks_export(
    *, filters: Mapping[str, Any] | None = None, version: ModelVersion | None = None
) -> ArtworkExport:
    """The catalogue as export rows, filtered by :class:`catalogue.filters.ArtworkFilterSet` with ``filters`` (query
    parameters: ``type``, ``status``, ``provenance``, ``search``, ``ordering``...). Raises
    :class:`ExportFiltersInvalid` when they do not validate, before any row is read."""
    version = version if version is not None else model_version_active()
    return ArtworkExport(
        types=artwork_types(),
        model_version=version.version if version is not None else None,
        queryset=artworks_filtered(filters=filters, version=version),
    )


def artworks_filtered(
    *, filters: Mapping[str, Any] | None, version: ModelVersion | None = None
) -> QuerySet[Any]:
    """The works :class:`catalogue.filters.ArtworkFilterSet` keeps for ``filters`` (annotated with ``version``'s
    prediction, the active one by default). Raises :class:`ExportFiltersInvalid` when the filters do not validate."""
    filterset = ArtworkFilterSet(filters or None, queryset=artworks_with_prediction(version))
    if filterset.is_bound and not filterset.is_valid():
        raise ExportFiltersInvalid({field: list(errors) for field, errors in filterset.errors.items()})
    return filterset.qs if filterset.is_bound else filterset.queryset


def export_image_path(image_name: str) -> str:
    """The file name an exported image has in the folder the export's ``path`` column is relative to: the stored
    name's last part (``<sha256>.<ext>``, unique because content-addressed)."""
    return PurePosixPath(image_name).name


def _artwork_row(values: dict[str, Any], slugs: dict[int, str], model_version: str | None) -> dict[str, Any]:
    curator_type_id, pred_type_id = values["curator_type_id"], values["pred_type_id"]
    source = "label" if curator_type_id is not None else "prediction" if pred_type_id is not None else ""
    probabilities = values["pred_probabilities"]
    return {
        "path": export_image_path(values["image"]),
        "title": values["title"],
        "artist": values["artist"],
        "date": values["date"],
        "accession": values["accession_number"] or "",
        "type": slugs.get(curator_type_id, "") if curator_type_id is not None else "",
        "description": values["description"],
        "id": values["pk"],
        "label_provenance": values["label_provenance"] if curator_type_id is not None else "",
        "effective_type": slugs.get(values["effective_type_id"], "") if values["effective_type_id"] else "",
        "effective_type_source": source,
        "status": values["status"],
        "predicted_type": slugs.get(pred_type_id, "") if pred_type_id is not None else "",
        "confidence": values["pred_confidence"],
        "probabilities": dict(probabilities) if probabilities else None,
        "model_version": model_version if pred_type_id is not None else None,
        "sha256": values["sha256"],
        "width": values["width"],
        "height": values["height"],
        "file_size": values["file_size"],
        "image_url": default_storage.url(values["image"]),
    }


def label_corrections_export() -> Iterator[dict[str, Any]]:
    """The label audit trail, oldest first, one row per change: which work (id, sha256, accession number, title),
    from and to which type (slugs; from is empty when the work had no type), where (``source``), who (the
    account's full name, else its user name; empty for an import), the note and when."""
    slugs = {t.pk: t.slug for t in artwork_types()}
    fields = (
        "pk",
        "artwork_id",
        "artwork__sha256",
        "artwork__accession_number",
        "artwork__title",
        "from_type_id",
        "to_type_id",
        "source",
        "user__username",
        "user__first_name",
        "user__last_name",
        "note",
        "created_at",
    )
    rows = LabelCorrection.objects.order_by("created_at", "id").values_list(*fields)
    for values in _streamed(rows):
        row = dict(zip(fields, values, strict=True))
        full_name = f"{row['user__first_name'] or ''} {row['user__last_name'] or ''}".strip()
        yield {
            "id": row["pk"],
            "artwork_id": row["artwork_id"],
            "sha256": row["artwork__sha256"],
            "accession": row["artwork__accession_number"] or "",
            "title": row["artwork__title"],
            "from_type": slugs.get(row["from_type_id"], "") if row["from_type_id"] else "",
            "to_type": slugs.get(row["to_type_id"], ""),
            "source": row["source"],
            "user": full_name or row["user__username"] or "",
            "note": row["note"],
            "created_at": row["created_at"].isoformat(),
        }


def label_corrections_count() -> int:
    return LabelCorrection.objects.count()
