"""The IIIF routes (``/iiif/``): manifests, their annotation pages, their images, collections, Artsite's context.

Every answer carries ``Access-Control-Allow-Origin: *`` (errors too, so a viewer on another site can read why) and
preflight requests are answered without credentials, so viewers on other sites can load the documents and the
images. With ``ARTSITE_IIIF_PUBLIC`` on, anyone may read them; off (the default), only accounts that may view
artworks, through a portal session or an API token (``Authorization: Bearer <key>``); others get the API's 401.
Artsite's JSON-LD context is always public: it only defines words.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.http import FileResponse, HttpResponse, HttpResponsePermanentRedirect
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import AllowAny, BasePermission
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from catalogue.iiif import builder
from catalogue.iiif.selectors import (
    iiif_artwork,
    iiif_ranges_nonempty,
    iiif_works_in_range,
    iiif_works_last_id,
)
from catalogue.models import IMAGE_MEDIA_TYPES
from catalogue.selectors.exports import ExportFiltersInvalid

MAX_ID = 2**63 - 1
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Accept",
    "Access-Control-Max-Age": "86400",
}


class IiifAccess(BasePermission):
    """``ARTSITE_IIIF_PUBLIC``: anyone; otherwise an account that may view artworks. Preflights always pass (a
    browser sends them without credentials)."""

    message = "IIIF resources need an account that may view artworks (a portal session or an API token)."

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method == "OPTIONS" or settings.ARTSITE_IIIF_PUBLIC:
            return True
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm("catalogue.view_artwork"))


class IiifView(APIView):
    permission_classes = [IiifAccess]
    renderer_classes = [JSONRenderer]

    def perform_content_negotiation(self, request: Request, force: bool = False) -> tuple[BaseRenderer, str]:
        # Viewers ask for application/ld+json (which DRF's negotiation would refuse with a 406); errors are JSON.
        return JSONRenderer(), JSONRenderer.media_type

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        for name, value in CORS_HEADERS.items():
            response[name] = value
        return response

    def options(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        return HttpResponse(status=204)

    def urls(self, request: Request) -> builder.IiifUrls:
        return builder.IiifUrls(absolute=request.build_absolute_uri)


def _json_ld(document: dict[str, Any]) -> HttpResponse:
    return HttpResponse(json.dumps(document, ensure_ascii=False), content_type=builder.MEDIA_TYPE)


def _artwork(pk: int) -> Any:
    item = iiif_artwork(pk=pk) if pk <= MAX_ID else None
    if item is None:
        raise NotFound(f"There is no artwork {pk}.")
    return item


class ManifestView(IiifView):
    @extend_schema(exclude=True)
    def get(self, request: Request, pk: int) -> HttpResponse:
        return _json_ld(builder.manifest(_artwork(pk), self.urls(request)))


class AnnotationPageView(IiifView):
    @extend_schema(exclude=True)
    def get(self, request: Request, pk: int) -> HttpResponse:
        return _json_ld(builder.annotation_page_document(_artwork(pk), self.urls(request)))


class _FileView(IiifView):
    field = "image"

    @extend_schema(exclude=True)
    def get(self, request: Request, pk: int) -> FileResponse:
        stored = getattr(_artwork(pk).artwork, self.field)
        if not stored:
            raise NotFound(f"Artwork {pk} has no {self.field}.")
        try:
            handle = default_storage.open(stored.name, "rb")
        except OSError:
            raise NotFound(f"The {self.field} of artwork {pk} cannot be read.") from None
        suffix = PurePosixPath(stored.name).suffix.lower()
        response = FileResponse(
            handle, content_type=IMAGE_MEDIA_TYPES.get(suffix, "application/octet-stream")
        )
        # As every uploaded file is served (artsite/security.py): never sniffed, never run as a page.
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "default-src 'none'; sandbox"
        response["Cross-Origin-Resource-Policy"] = "cross-origin"
        return response


class ImageView(_FileView):
    field = "image"


class ThumbnailView(_FileView):
    field = "thumbnail"


def _filters(request: Request) -> dict[str, str]:
    return {key: value for key, value in request.query_params.items() if key != "format"}


def _tree_shape() -> tuple[int, int]:
    """(page size, fan-out) of the collections' id tree, from the settings (a fan-out below 2 would not nest)."""
    return max(1, settings.ARTSITE_IIIF_PAGE_SIZE), max(2, settings.ARTSITE_IIIF_FANOUT)


class CollectionView(IiifView):
    """The top of the filtered catalogue's tree. Its size comes from the highest id the filters keep (one backward
    index scan), never from a count; which ranges hold works, from one probe per range."""

    @extend_schema(exclude=True)
    def get(self, request: Request) -> HttpResponse:
        filters = _filters(request)
        page_size, fanout = _tree_shape()
        try:
            last_id = iiif_works_last_id(filters=filters)
            top = builder.id_ranges_top(last_id=last_id, page_size=page_size, fanout=fanout)
            children = [
                builder.IdRange(first, last)
                for first, last in iiif_ranges_nonempty(
                    filters=filters, ranges=[(node.first, node.last) for node in top]
                )
            ]
        except ExportFiltersInvalid as exc:
            raise ValidationError(exc.errors) from None
        query = builder.query_string(filters)
        return _json_ld(
            builder.collection(children=children, page_size=page_size, query=query, urls=self.urls(request))
        )


class CollectionRangeView(IiifView):
    """One node of the tree, ``/iiif/collection/<first>-<last>.json``: a page (``page_size`` ids) lists its works'
    manifests, a larger range its non-empty child ranges. A range that is not a node of the tree, or holds no
    work the filters keep, is a 404."""

    @extend_schema(exclude=True)
    def get(self, request: Request, first: int, last: int) -> HttpResponse:
        page_size, fanout = _tree_shape()
        node = builder.IdRange(first, last)
        if first > MAX_ID or not builder.id_range_valid(node, page_size=page_size, fanout=fanout):
            raise NotFound(f"The ids {first}–{last} are not a range of this collection.")
        filters = _filters(request)
        query = builder.query_string(filters)
        try:
            if builder.id_range_is_page(node, page_size=page_size):
                works = iiif_works_in_range(filters=filters, first=first, last=min(last, MAX_ID))
                children: list[builder.IdRange] = []
            else:
                works = []
                children = [
                    builder.IdRange(lo, hi)
                    for lo, hi in iiif_ranges_nonempty(
                        filters=filters,
                        ranges=[
                            (child.first, min(child.last, MAX_ID))
                            for child in builder.id_range_children(node, fanout=fanout)
                            if child.first <= MAX_ID
                        ],
                    )
                ]
        except ExportFiltersInvalid as exc:
            raise ValidationError(exc.errors) from None
        if not works and not children:
            raise NotFound(f"No work of this collection has an id in {first}–{last}.")
        urls = self.urls(request)
        if works:
            document = builder.collection_page(
                node=node, works=works, page_size=page_size, query=query, urls=urls
            )
        else:
            document = builder.collection_range(
                node=node, children=children, page_size=page_size, query=query, urls=urls
            )
        return _json_ld(document)


class CollectionPageView(IiifView):
    """The former numbered pages, ``/iiif/collection/<n>.json``: a permanent redirect to the page of ids
    (n−1)·page_size+1 .. n·page_size, which is what page *n* held when no work had been deleted or filtered out
    (pages were offsets into the filtered works; they are id ranges now)."""

    @extend_schema(exclude=True)
    def get(self, request: Request, number: int) -> HttpResponse:
        page_size, _ = _tree_shape()
        first = (number - 1) * page_size + 1
        if number < 1 or first > MAX_ID:
            raise NotFound(f"There is no page {number} of this collection.")
        query = builder.query_string(_filters(request))
        location = self.urls(request).path("iiif-collection-range", first, first + page_size - 1, query=query)
        return HttpResponsePermanentRedirect(location)


class ContextView(IiifView):
    permission_classes = [AllowAny]

    @extend_schema(exclude=True)
    def get(self, request: Request) -> HttpResponse:
        return HttpResponse(
            json.dumps(builder.context_document(self.urls(request))), content_type="application/ld+json"
        )
