"""The REST API's views: each parses input with a serializer, calls one service or selector, and shapes output.

Authentication and the base permission are global (settings ``REST_FRAMEWORK``); each view names the Django model
permissions its actions need (see ``permissions.py``). Errors of every kind leave as JSON of one shape
(``exceptions.py``).
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django_filters import utils
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param
from rest_framework.views import APIView

from catalogue.api import serializers
from catalogue.api.exceptions import ApiError
from catalogue.api.permissions import ActionPermissions
from catalogue.api.throttles import ScopedThrottle
from catalogue.filters import ArtworkFilterSet
from catalogue.models import Artwork, ArtworkType, LabelCorrection, LabelIssue
from catalogue.selectors.artworks import (
    InvalidCursor,
    KeysetPage,
    artwork_types,
    artworks_tally,
    artworks_with_prediction,
    keyset_page,
)
from catalogue.selectors.label_issues import mislabel_issue, mislabel_queue
from catalogue.selectors.search import RANK_AT_MOST
from catalogue.selectors.similarity import artwork_similar
from catalogue.services.artworks import (
    artwork_create,
    artwork_delete,
    artwork_update,
    image_check,
    read_upload,
)
from catalogue.services.classification import image_classify
from catalogue.services.labels import label_correct
from catalogue.services.mislabels import NotInQueue, mislabel_decide
from inference.models import ModelVersion
from inference.selectors import model_version_active

MAX_ID = 2**63 - 1  # larger ids cannot exist (bigint); asking for one is a 404, not a database error

ERROR_DESCRIPTIONS = {
    400: "Invalid input (see `fields`).",
    401: "No credentials, or an unknown or inactive token.",
    403: "The account lacks the permission (Viewers read; Curators write).",
    404: "No such resource.",
    409: "Conflict.",
    413: "The file (or its pixel count) is over the limit.",
    415: "Not an image in an accepted format (JPEG, PNG, WebP, TIFF).",
    429: "Rate limit reached; see the Retry-After header.",
    503: "No model can classify right now.",
}


def errors(*codes: int, **descriptions: str) -> dict[int, OpenApiResponse]:
    """Schema entries for error responses (all with :class:`ErrorSerializer`)."""
    return {
        code: OpenApiResponse(
            serializers.ErrorSerializer, description=descriptions.get(f"e{code}", ERROR_DESCRIPTIONS[code])
        )
        for code in codes
    }


def _types() -> dict[int, str]:
    return {t.pk: t.slug for t in artwork_types()}


class ApiPagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 100


class ArtworkFilterBackend(DjangoFilterBackend):
    """:class:`ArtworkFilterSet` as the backend applies it, the filterset kept on the view: the pagination reads what
    the filters found on the way (a search's order and its count)."""

    def filter_queryset(self, request: Request, queryset: Any, view: Any) -> Any:
        filterset = self.get_filterset(request, queryset, view)
        if filterset is None:
            return queryset
        if not filterset.is_valid() and self.raise_exception:
            raise utils.translate_validation(filterset.errors)
        view.filterset = filterset
        return filterset.qs


class ArtworkPagination(ApiPagination):
    """Keyset pages: ``next`` and ``previous`` carry a ``cursor`` (the position of the page's last or first work),
    so the 5,000th page of a million works costs what the first does. ``page=N`` still works (an offset: slower the
    deeper it goes). ``count`` is exact for a small catalogue or a narrow filter; ``count_kind`` says when it is
    not: ``about`` (the planner's estimate of a large catalogue) or ``at_least`` (a broad filter, counted up to a
    cap)."""

    cursor_query_param = "cursor"
    #: Query parameters that do not filter (a list with only these is the whole catalogue).
    NOT_FILTERS = {"cursor", "page", "page_size", "ordering", "format"}

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> list[Any] | None:
        self.request = request
        self.keyset: KeysetPage | None = None
        filterset = getattr(view, "filterset", None)
        self.search_ranked: bool | None = filterset.search_ranked if filterset is not None else None
        if self.page_query_param in request.query_params:
            return super().paginate_queryset(queryset, request, view)
        try:
            self.keyset = keyset_page(
                queryset,
                cursor=request.query_params.get(self.cursor_query_param),
                size=self.get_page_size(request),
            )
        except InvalidCursor as exc:
            raise NotFound(str(exc)) from None
        filtered = any(value and key not in self.NOT_FILTERS for key, value in request.query_params.items())
        known = filterset.count_known if filterset is not None else None
        self.tally = artworks_tally(queryset, filtered=filtered, page=self.keyset, known=known)
        return self.keyset.items

    def get_paginated_response(self, data: Any) -> Response:
        if self.keyset is None:
            response = super().get_paginated_response(data)
            response.data = {
                "count": response.data["count"],
                "count_kind": "exact",
                "search_ranked": self.search_ranked,
                **response.data,
            }
            return response
        return Response(
            {
                "count": int(self.tally),
                "count_kind": self.tally.kind,
                "search_ranked": self.search_ranked,
                "next": self._cursor_link(self.keyset.next_cursor),
                "previous": self._cursor_link(self.keyset.previous_cursor),
                "results": data,
            }
        )

    def _cursor_link(self, cursor: str | None) -> str | None:
        if cursor is None:
            return None
        url = remove_query_param(self.request.build_absolute_uri(), self.page_query_param)
        return replace_query_param(url, self.cursor_query_param, cursor)

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        response = super().get_paginated_response_schema(schema)
        response["properties"]["count_kind"] = {
            "type": "string",
            "enum": ["exact", "about", "at_least"],
            "description": "How `count` was obtained: counted, estimated (large catalogue), or counted up to a cap.",
        }
        response["properties"]["search_ranked"] = {
            "type": "boolean",
            "nullable": True,
            "description": f"With `search`: true when the results are ranked (best first), false when more than "
            f"{RANK_AT_MOST:,} works match (too many to rank: newest first). Null without a search, or with an "
            "explicit `ordering`.",
        }
        return response

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        cursor = {
            "name": self.cursor_query_param,
            "required": False,
            "in": "query",
            "description": "The page after (or before) another: the cursor in a `next` or `previous` link.",
            "schema": {"type": "string"},
        }
        return [*super().get_schema_operation_parameters(view), cursor]


# --- Artworks -----------------------------------------------------------------------------------------------------

IMAGE_ERRORS = {
    "e400": "Invalid input: a missing field, an empty, truncated or damaged file (see `code` and `fields`).",
    "e413": "The file is larger than the upload limit, or its pixel count is (a decompression bomb).",
}


@extend_schema_view(
    list=extend_schema(
        summary="List artworks",
        description="The catalogue, newest first, with the active model's predictions; filter, search, order, page.",
        responses={
            200: serializers.ArtworkSerializer(many=True),
            **errors(400, 401, 403, 404, e404="Invalid page."),
        },
    ),
    create=extend_schema(
        summary="Upload an artwork",
        description="Stores the image and its metadata; the classification runs in the worker. Answers 202 with the "
        "artwork (status `pending`) and its URL, to poll until `status` is `ready` or `failed`. The same file "
        "uploaded twice answers 409 with the existing artwork. Throttled (scope `upload`).",
        request={"multipart/form-data": serializers.ArtworkCreateSerializer},
        responses={
            202: serializers.ArtworkAcceptedSerializer,
            **errors(
                400,
                401,
                403,
                409,
                413,
                415,
                429,
                **IMAGE_ERRORS,
                e409="The file (or the accession number) is "
                "already in the catalogue; `existing` names the artwork.",
            ),
        },
    ),
    retrieve=extend_schema(
        summary="An artwork",
        description="Metadata, status and error, the active model's prediction with its probabilities, and the "
        "effective and curator types.",
        responses={200: serializers.ArtworkSerializer, **errors(401, 403, 404)},
    ),
    partial_update=extend_schema(
        summary="Change an artwork's metadata",
        description="Title, artist, date, accession number, description, notes. Each changed field is recorded in "
        "the artwork's history (`history/`). Curators only.",
        request=serializers.ArtworkUpdateSerializer,
        responses={
            200: serializers.ArtworkSerializer,
            **errors(400, 401, 403, 404, 409, e409="Accession number taken."),
        },
    ),
    destroy=extend_schema(
        summary="Delete an artwork",
        description="Deletes the artwork, its predictions and audit trail, and its files. Curators only.",
        responses={204: None, **errors(401, 403, 404)},
    ),
)
class ArtworkViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    parser_classes = [JSONParser, MultiPartParser, FormParser]
    permission_classes = [ActionPermissions]
    throttle_classes = [ScopedThrottle]
    pagination_class = ArtworkPagination
    serializer_class = serializers.ArtworkSerializer
    filter_backends = [ArtworkFilterBackend]
    filterset_class = ArtworkFilterSet
    lookup_value_regex = r"[0-9]+"
    read_permissions = ["catalogue.view_artwork"]
    required_permissions = {
        "list": ["catalogue.view_artwork"],
        "retrieve": ["catalogue.view_artwork"],
        "similar": ["catalogue.view_artwork"],
        "create": ["catalogue.add_artwork"],
        "partial_update": ["catalogue.change_artwork"],
        "label": ["catalogue.change_artwork"],
        "destroy": ["catalogue.delete_artwork"],
    }

    @property
    def throttle_scope(self) -> str | None:
        return "upload" if getattr(self, "action", None) == "create" else None

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):
            return (
                Artwork.objects.none()
            )  # schema generation: the filters' model, without asking the database
        return artworks_with_prediction(self._version())

    def _version(self) -> Any:
        """The active version, read once per request: the rows and the version named beside them must agree while
        an activation switches versions (one version's results in every answer)."""
        if not hasattr(self, "_active_version"):
            self._active_version = model_version_active()
        return self._active_version

    def get_serializer_context(self) -> dict[str, Any]:
        version = self._version()
        return {
            **super().get_serializer_context(),
            "types": _types(),
            "model_version": version and version.version,
        }

    def get_object(self) -> Artwork:
        pk = int(self.kwargs["pk"])
        artwork = self.get_queryset().filter(pk=pk).first() if pk <= MAX_ID else None
        if artwork is None:
            raise NotFound(f"There is no artwork {self.kwargs['pk']}.")
        return artwork

    def _detail(self, pk: int) -> dict[str, Any]:
        return serializers.ArtworkSerializer(
            self.get_queryset().get(pk=pk), context=self.get_serializer_context()
        ).data

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        artworks = self.filter_queryset(self.get_queryset())  # ArtworkFilterSet; 400 with each field's error
        page = self.paginate_queryset(artworks)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        form = serializers.ArtworkCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        artwork = artwork_create(
            data=read_upload(data["image"]),
            title=data["title"],
            artist=data["artist"],
            date=data["date"],
            accession_number=data.get("accession_number"),
            description=data["description"],
            uploaded_by=request.user,
        )
        body = self._detail(artwork.pk)
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        artwork = self.get_object()
        form = serializers.ArtworkUpdateSerializer(data=request.data, partial=True)
        form.is_valid(raise_exception=True)
        artwork_update(
            artwork=artwork, user=request.user, source=LabelCorrection.Source.API, **form.validated_data
        )
        return Response(self._detail(artwork.pk))

    def perform_destroy(self, instance: Artwork) -> None:
        artwork_delete(artwork=instance, deleted_by=self.request.user)

    @extend_schema(
        summary="Works similar to an artwork",
        description="The k works whose embeddings (active model version) are nearest by cosine similarity, most "
        "similar first, optionally only of one effective type. 409 while the artwork is not classified yet.",
        parameters=[serializers.SimilarQuerySerializer],
        responses={
            200: serializers.SimilarResponseSerializer,
            **errors(
                400,
                401,
                403,
                404,
                409,
                e400="Bad `k` (1 to 50) or unknown `type`.",
                e409="The artwork has no prediction of the active model yet.",
            ),
        },
    )
    @action(detail=True, methods=["get"])
    def similar(self, request: Request, pk: str | None = None, format: str | None = None) -> Response:
        artwork = self.get_object()
        query = serializers.SimilarQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        k, artwork_type = query.validated_data["k"], query.validated_data.get("type")
        if artwork.pred_type_id is None:  # type: ignore[attr-defined]
            raise ApiError(
                f"Artwork {artwork.pk} has no prediction of the active model yet (status: {artwork.status}).",
                status_code=status.HTTP_409_CONFLICT,
                code="not_classified",
            )
        works = artwork_similar(artwork=artwork, k=k, type_slug=artwork_type.slug if artwork_type else None)
        context = self.get_serializer_context()
        return Response(
            {
                "artwork_id": artwork.pk,
                "model_version": context["model_version"],
                "k": k,
                "type": artwork_type.slug if artwork_type else None,
                "results": [
                    serializers.SimilarWorkSerializer.shape(w, request=request, types=context["types"])
                    for w in works
                ],
            }
        )

    @extend_schema(
        summary="Correct an artwork's type",
        description="Sets the curator's type (it becomes the effective type) and records the change, who made it "
        "and the note in the audit trail. Curators only.",
        request=serializers.LabelInputSerializer,
        responses={
            201: serializers.LabelResponseSerializer,
            **errors(400, 401, 403, 404, e400="Missing or unknown `type`."),
        },
    )
    @action(detail=True, methods=["post"])
    def label(self, request: Request, pk: str | None = None, format: str | None = None) -> Response:
        artwork = self.get_object()
        form = serializers.LabelInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        correction = label_correct(
            artwork=artwork,
            to_type=form.validated_data["type"],
            user=request.user,
            source=LabelCorrection.Source.API,
            note=form.validated_data["note"],
        )
        return Response(
            {
                "correction": serializers.LabelCorrectionSerializer(correction).data,
                "artwork": self._detail(artwork.pk),
            },
            status=status.HTTP_201_CREATED,
        )


# --- Possible mislabels -------------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="Possible mislabels",
        description="The labels the newest finished label check doubts that are still open (the label is unchanged "
        "and not verified), most doubtful first: the same queue as the portal's Possible mislabels page. Empty "
        "until a label check has finished.",
        responses={
            200: serializers.MislabelSerializer(many=True),
            **errors(401, 403, 404, e404="Invalid page."),
        },
    ),
)
class MislabelViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    permission_classes = [ActionPermissions]
    pagination_class = ApiPagination
    serializer_class = serializers.MislabelSerializer
    lookup_field = "artwork_id"
    lookup_value_regex = r"[0-9]+"
    read_permissions = ["catalogue.view_artwork"]
    required_permissions = {
        "list": ["catalogue.view_artwork"],
        "decide": ["catalogue.change_artwork"],
    }

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):
            return LabelIssue.objects.none()  # schema generation, without asking the database
        return mislabel_queue()

    @extend_schema(
        summary="Settle a possible mislabel",
        description="keep: the label is right (it becomes confirmed, verified, and is never flagged again); "
        "suggestion: set the suggested type; type: set the type given in `type`. Recorded in the audit trail "
        "(source mislabels) with the note. Answers with the artwork as it is now. Curators only.",
        parameters=[
            OpenApiParameter("artwork_id", int, OpenApiParameter.PATH, description="The artwork's id.")
        ],
        request=serializers.MislabelDecisionInputSerializer,
        responses={
            200: serializers.ArtworkSerializer,
            **errors(
                400,
                401,
                403,
                404,
                e400="Missing or unknown `decision`; missing, unknown or unexpected `type`.",
                e404="The artwork is not in the queue (never flagged, or settled already).",
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def decide(self, request: Request, artwork_id: str | None = None, format: str | None = None) -> Response:
        pk = int(artwork_id or 0)
        if pk > MAX_ID or mislabel_issue(artwork_id=pk) is None:
            raise NotFound(f"Artwork {artwork_id} is not in the possible-mislabels queue.")
        form = serializers.MislabelDecisionInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            mislabel_decide(
                artwork_id=pk,
                decision=form.validated_data["decision"],
                to_type=form.validated_data.get("type"),
                user=request.user,
                note=form.validated_data["note"],
            )
        except NotInQueue as exc:  # settled by someone else a moment ago
            raise NotFound(str(exc)) from None
        version = model_version_active()
        context = {"request": request, "types": _types(), "model_version": version and version.version}
        return Response(
            serializers.ArtworkSerializer(artworks_with_prediction(version).get(pk=pk), context=context).data
        )


# --- Types and model versions -------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="The artwork types",
        responses={200: serializers.ArtworkTypeSerializer(many=True), **errors(401, 403)},
    ),
    retrieve=extend_schema(
        summary="One artwork type",
        responses={200: serializers.ArtworkTypeSerializer, **errors(401, 403, 404)},
    ),
)
class ArtworkTypeViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = ArtworkType.objects.all()
    serializer_class = serializers.ArtworkTypeSerializer
    permission_classes = [ActionPermissions]
    read_permissions = ["catalogue.view_artworktype"]
    pagination_class = None
    lookup_field = "slug"


@extend_schema_view(
    list=extend_schema(
        summary="The model versions",
        description="Every registered version, the active one first, with its model card's metrics.",
        responses={200: serializers.ModelVersionSerializer(many=True), **errors(401, 403)},
    ),
    retrieve=extend_schema(
        summary="One model version",
        responses={200: serializers.ModelVersionSerializer, **errors(401, 403, 404)},
    ),
)
class ModelVersionViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = ModelVersion.objects.active_first()
    serializer_class = serializers.ModelVersionSerializer
    permission_classes = [ActionPermissions]
    read_permissions = ["inference.view_modelversion"]
    pagination_class = None
    lookup_field = "version"
    lookup_value_regex = r"[^/]+"


# --- Classify -----------------------------------------------------------------------------------------------------


class ClassifyView(APIView):
    """Classify an image without storing it. Reports where the time went in a ``Server-Timing`` header, in
    milliseconds: auth (authentication, permissions, throttling), parse, decode, model, search, serialise, render;
    app = the whole view (wall clock); cpu = the process's CPU time during the view, all threads (with one request
    per worker process, as with gunicorn's sync workers, that is this request's CPU; on a busy machine it shows the
    cost without the waiting)."""

    parser_classes = [MultiPartParser, FormParser]
    permission_classes = [ActionPermissions]
    required_permissions = {"post": ["catalogue.view_artwork"]}
    throttle_classes = [ScopedThrottle]
    throttle_scope = "classify"

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        self.timings: dict[str, float] = {}
        self._started, self._started_cpu = time.perf_counter(), time.process_time()
        return super().dispatch(request, *args, **kwargs)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        started = time.perf_counter()
        super().initial(request, *args, **kwargs)  # authentication, permissions, throttling
        self.timings["auth"] = time.perf_counter() - started

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        if hasattr(response, "render") and not getattr(response, "is_rendered", True):
            started = time.perf_counter()
            response.render()  # here rather than in Django's handler, so that the timing covers it
            self.timings["render"] = time.perf_counter() - started
        self.timings["app"] = time.perf_counter() - self._started
        self.timings["cpu"] = time.process_time() - self._started_cpu
        response["Server-Timing"] = ", ".join(
            f"{name};dur={sec * 1000:.2f}" for name, sec in self.timings.items()
        )
        return response

    @extend_schema(
        summary="Classify an image (not stored)",
        description="Runs the active model on the image and finds the five most similar works in the catalogue. "
        "`?inline=1` adds each similar work's thumbnail as base64. The image is checked exactly as an upload is "
        "(format, size, pixel count, truncation). Throttled (scope `classify`).",
        parameters=[serializers.ClassifyQuerySerializer],
        request={"multipart/form-data": serializers.ClassifyInputSerializer},
        responses={
            200: serializers.ClassifyResultSerializer,
            **errors(400, 401, 403, 413, 415, 429, 503, **IMAGE_ERRORS),
        },
    )
    def post(self, request: Request) -> Response:
        timings, clock = self.timings, time.perf_counter()
        query = serializers.ClassifyQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        form = serializers.ClassifyInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        timings["parse"] = time.perf_counter() - clock

        clock = time.perf_counter()
        checked = image_check(data=read_upload(form.validated_data["image"]))
        timings["decode"] = time.perf_counter() - clock

        result = image_classify(image=checked.decoded.image, k=settings.ARTSITE_SIMILAR_COUNT)
        timings.update(result.timings)

        clock = time.perf_counter()
        types = result.type_slugs
        inline = query.validated_data["inline"]
        body = {
            "type": result.predicted_type.slug,
            "type_name": result.predicted_type.name,
            "confidence": round(result.confidence, 6),
            "probabilities": {slug: round(p, 6) for slug, p in result.probabilities.items()},
            "model_version": result.version.version,
            "similar": [
                serializers.SimilarWorkSerializer.shape(w, request=request, types=types, inline=inline)
                for w in result.similar
            ],
        }
        timings["serialise"] = time.perf_counter() - clock
        return Response(body)
