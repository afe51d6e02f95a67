"""Streamed exports in the API: the catalogue (``artworks/export/``, filtered as ``GET artworks/`` is) and the label
audit trail (``label-corrections/export/``), as CSV or JSON lines (``?format=``).

``format`` names the export's format here, not one of DRF's renderers (DRF reads ``?format=`` to choose a renderer),
so content negotiation is fixed to JSON, which only errors use: the export itself is a ``StreamingHttpResponse``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from catalogue.api import serializers
from catalogue.api.permissions import ActionPermissions
from catalogue.api.views import errors
from catalogue.export_formats import EXTENSIONS, MEDIA_TYPES, export_lines
from catalogue.filters import ArtworkFilterSet
from catalogue.selectors.exports import (
    ARTWORK_COLUMNS,
    LABEL_CORRECTION_COLUMNS,
    ExportFiltersInvalid,
    artworks_export,
    label_corrections_export,
)

#: The catalogue's filters as query parameters, read from the one filter definition.
FILTER_PARAMETERS = [
    OpenApiParameter(name, OpenApiTypes.STR, description=str(f.extra.get("help_text") or f.label or name))
    for name, f in ArtworkFilterSet.base_filters.items()
]


def _export_responses(what: str) -> dict[Any, Any]:
    return {
        (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description=f"{what} as CSV (`?format=csv`)."),
        (200, "application/x-ndjson"): OpenApiResponse(
            OpenApiTypes.STR, description=f"{what} as JSON lines (`?format=jsonl`)."
        ),
        **errors(400, 401, 403),
    }


class _ExportView(APIView):
    renderer_classes = [JSONRenderer]
    permission_classes = [ActionPermissions]

    def perform_content_negotiation(self, request: Request, force: bool = False) -> tuple[BaseRenderer, str]:
        return JSONRenderer(), JSONRenderer.media_type  # see the module docstring

    def _format(self, request: Request) -> str:
        query = serializers.ExportQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return str(query.validated_data["format"])

    def _stream(
        self,
        rows: Iterable[dict[str, Any]],
        *,
        name: str,
        format: str,
        columns: Sequence[str],
        slugs: Sequence[str],
    ) -> StreamingHttpResponse:
        response = StreamingHttpResponse(
            export_lines(rows, format=format, columns=columns, type_slugs=slugs),
            content_type=MEDIA_TYPES[format],
        )
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="{name}-{stamp}.{EXTENSIONS[format]}"'
        return response


class ArtworkExportView(_ExportView):
    required_permissions = {"get": ["catalogue.view_artwork"]}

    @extend_schema(
        summary="Export the catalogue",
        description="Every work the filters of `GET artworks/` keep (the same parameters), streamed as CSV or JSON "
        "lines: title, artist, date, accession number, description, the label (`type`) and where it came from, the "
        "effective type and its source (label or prediction), the active model's prediction (type, confidence, every "
        "type's probability, version), sha256, size and image URL. The first columns (`path, title, artist, date, "
        "accession, type, description`) make it an import manifest (`import_artworks FOLDER --manifest FILE`).",
        parameters=[serializers.ExportQuerySerializer, *FILTER_PARAMETERS],
        responses=_export_responses("The works"),
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        export_format = self._format(request)
        filters = request.query_params.copy()
        filters.pop("format", None)
        try:
            export = artworks_export(filters=filters)
        except ExportFiltersInvalid as exc:
            raise ValidationError(exc.errors) from None
        rows = _absolute_urls(export.rows(), request)
        slugs = [t.slug for t in export.types]
        return self._stream(rows, name="artworks", format=export_format, columns=ARTWORK_COLUMNS, slugs=slugs)


class LabelCorrectionExportView(_ExportView):
    required_permissions = {"get": ["catalogue.view_labelcorrection"]}

    @extend_schema(
        summary="Export the label audit trail",
        description="Every change of a label, oldest first: the work (id, sha256, accession number, title), from "
        "and to which type, where it was made (`source`: portal, review, mislabels, admin, api, import, file), who "
        "made it (full name, else account name; empty for an import), the note and when. Streamed.",
        parameters=[serializers.ExportQuerySerializer],
        responses=_export_responses("The audit trail"),
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        export_format = self._format(request)
        rows = label_corrections_export()
        return self._stream(
            rows, name="label-corrections", format=export_format, columns=LABEL_CORRECTION_COLUMNS, slugs=()
        )


def _absolute_urls(rows: Iterable[dict[str, Any]], request: Request) -> Iterable[dict[str, Any]]:
    for row in rows:
        row["image_url"] = request.build_absolute_uri(row["image_url"])
        yield row
