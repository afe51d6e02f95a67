"""API views of the history, bulk edits and near-duplicates. Each parses input with a serializer, calls one service
or selector, and shapes output; errors leave in the API's one shape (``exceptions.py``)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalogue.api import collection_serializers as cs
from catalogue.api.exceptions import ApiError
from catalogue.api.permissions import ActionPermissions
from catalogue.api.views import MAX_ID, ApiPagination, errors
from catalogue.models import Artwork, BulkEdit, LabelCorrection, NearDuplicatePair
from catalogue.selectors.history import (
    SelectionInvalid,
    artwork_history,
    artworks_selected,
    bulk_edits_recent,
)
from catalogue.selectors.near_duplicates import near_duplicate_queue
from catalogue.services.bulk_edits import BulkEditRefused, BulkValues, bulk_edit_apply, bulk_edit_undo
from catalogue.services.near_duplicates import (
    DecisionRefused,
    near_duplicate_decide,
    near_duplicates_scan_enqueue,
)


class ArtworkHistoryView(GenericAPIView):
    """A generic view for its pagination: the schema then documents the page (``count``, ``next``, ``results``)
    and its ``page`` parameters, as the list endpoints'."""

    permission_classes = [ActionPermissions]
    read_permissions = ["catalogue.view_artwork"]
    pagination_class = ApiPagination
    serializer_class = cs.ArtworkChangeSerializer

    @extend_schema(
        summary="An artwork's history",
        description="Every change of its metadata and type, newest first: field, old and new value, who, when, "
        "where (`source`), and the bulk edit it belongs to. Kept after the artwork is deleted.",
        responses={
            200: cs.ArtworkChangeSerializer(many=True),
            **errors(401, 403, 404, e404="No such artwork, or an invalid page."),
        },
    )
    def get(self, request: Request, pk: int) -> Response:
        if pk > MAX_ID or not (
            Artwork.objects.filter(pk=pk).exists() or artwork_history(artwork_id=pk).exists()
        ):
            raise NotFound(f"There is no artwork {pk}.")
        page = self.paginate_queryset(artwork_history(artwork_id=pk))
        return self.get_paginated_response(cs.ArtworkChangeSerializer(page, many=True).data)


class BulkEditCreateView(APIView):
    permission_classes = [ActionPermissions]
    required_permissions = {"post": ["catalogue.change_artwork"]}

    @extend_schema(
        summary="Edit many artworks at once",
        description="Set the artist, the date, a type or a note (appended to the notes) on the artworks given by "
        "`ids` or by `filter` (the artworks list's query parameters: type, status, search, ...). One transaction; "
        "every change is in each artwork's history. Undo with `bulk-edits/{id}/undo/`. Curators only.",
        request=cs.BulkEditInputSerializer,
        responses={201: cs.BulkEditSerializer, **errors(400, 401, 403)},
    )
    def post(self, request: Request) -> Response:
        form = cs.BulkEditInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data, values = form.validated_data, form.validated_data["set"]
        try:
            artworks, selection = artworks_selected(ids=data.get("ids"), filters=data.get("filter"))
            bulk_edit = bulk_edit_apply(
                artworks=artworks,
                values=BulkValues(
                    artist=values.get("artist"),
                    date=values.get("date"),
                    artwork_type=values.get("type"),
                    note=values.get("note"),
                ),
                selection=selection,
                user=request.user,
                source=LabelCorrection.Source.API,
            )
        except SelectionInvalid as exc:
            raise ApiError(str(exc), code="invalid_filter", fields=exc.errors) from None
        except BulkEditRefused as exc:
            raise ApiError(
                str(exc), code=exc.code, fields={exc.field: [str(exc)]} if exc.field else None
            ) from None
        return Response(cs.BulkEditSerializer(bulk_edit).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    list=extend_schema(
        summary="Recent bulk edits",
        responses={200: cs.BulkEditSerializer(many=True), **errors(401, 403, 404, e404="Invalid page.")},
    ),
    retrieve=extend_schema(
        summary="A bulk edit", responses={200: cs.BulkEditSerializer, **errors(401, 403, 404)}
    ),
)
class BulkEditViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    permission_classes = [ActionPermissions]
    serializer_class = cs.BulkEditSerializer
    pagination_class = ApiPagination
    lookup_value_regex = r"[0-9]+"
    read_permissions = ["catalogue.view_artwork"]
    required_permissions = {
        "list": ["catalogue.view_artwork"],
        "retrieve": ["catalogue.view_artwork"],
        "undo": ["catalogue.change_artwork"],
    }

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):
            return BulkEdit.objects.none()
        return bulk_edits_recent(limit=None)

    def get_object(self) -> BulkEdit:
        pk = int(self.kwargs["pk"])
        bulk_edit = self.get_queryset().filter(pk=pk).first() if pk <= MAX_ID else None
        if bulk_edit is None:
            raise NotFound(f"There is no bulk edit {self.kwargs['pk']}.")
        return bulk_edit

    @extend_schema(
        summary="Undo a bulk edit",
        description="Puts back each artwork's old values, except fields changed since (left as they are and "
        "listed in `undo_result.skipped`). Recorded in the history (source `undo`). 409 when undone already.",
        request={"application/json": OpenApiTypes.OBJECT},  # no fields: an empty object, or no body
        responses={200: cs.BulkEditSerializer, **errors(401, 403, 404, 409, e409="Undone already.")},
    )
    @action(detail=True, methods=["post"])
    def undo(self, request: Request, pk: str | None = None, format: str | None = None) -> Response:
        try:
            undone = bulk_edit_undo(bulk_edit=self.get_object(), user=request.user)
        except BulkEditRefused as exc:
            raise ApiError(str(exc), status_code=status.HTTP_409_CONFLICT, code=exc.code) from None
        return Response(cs.BulkEditSerializer(undone).data)


@extend_schema_view(
    list=extend_schema(
        summary="Possible other photos of the same work",
        description="Pairs still to decide, most alike first (the portal's triage page).",
        responses={
            200: cs.NearDuplicatePairSerializer(many=True),
            **errors(401, 403, 404, e404="Invalid page."),
        },
    ),
)
class NearDuplicateViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    permission_classes = [ActionPermissions]
    serializer_class = cs.NearDuplicatePairSerializer
    pagination_class = ApiPagination
    lookup_value_regex = r"[0-9]+"
    read_permissions = ["catalogue.view_artwork"]
    required_permissions = {
        "list": ["catalogue.view_artwork"],
        "decide": ["catalogue.change_artwork"],
        "scan": ["catalogue.change_artwork"],
    }

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):
            return NearDuplicatePair.objects.none()
        return near_duplicate_queue()

    @extend_schema(
        summary="Decide a pair",
        description="same: the two artworks are photos of one work (linked; their pages show each other and "
        "similar-works lists show the work once); different: remembered, never proposed again. Curators only.",
        request=cs.NearDuplicateDecisionSerializer,
        responses={
            200: cs.NearDuplicatePairSerializer,
            **errors(400, 401, 403, 404, 409, e409="Decided already."),
        },
    )
    @action(detail=True, methods=["post"])
    def decide(self, request: Request, pk: str | None = None, format: str | None = None) -> Response:
        number = int(pk or 0)
        pair = NearDuplicatePair.objects.filter(pk=number).first() if number <= MAX_ID else None
        if pair is None:
            raise NotFound(f"There is no pair {pk}.")
        form = cs.NearDuplicateDecisionSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            decided = near_duplicate_decide(
                pair=pair,
                decision=form.validated_data["decision"],
                user=request.user,
                source=LabelCorrection.Source.API,
            )
        except DecisionRefused as exc:
            raise ApiError(str(exc), status_code=status.HTTP_409_CONFLICT, code="decided") from None
        return Response(cs.NearDuplicatePairSerializer(decided).data)

    @extend_schema(
        summary="Search the whole catalogue",
        description="Starts the search for other photos of the same work over the whole catalogue in the "
        "background (the long-jobs worker). 503 when the workers cannot be reached. Curators only.",
        request={"application/json": OpenApiTypes.OBJECT},  # no fields: an empty object, or no body
        responses={
            202: cs.ScanQueuedSerializer,
            **errors(401, 403, 503, e503="The background workers cannot be reached."),
        },
    )
    @action(detail=False, methods=["post"])
    def scan(self, request: Request, format: str | None = None) -> Response:
        if not near_duplicates_scan_enqueue():
            raise ApiError(
                "The background workers cannot be reached; try again later.",
                status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
                code="broker_unavailable",
            )
        return Response({"status": "queued"}, status=status.HTTP_202_ACCEPTED)
