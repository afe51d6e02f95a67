"""Every API error is JSON of one shape, whatever raised it:

    {"status": 400, "code": "not_image", "message": "The file is not an image we can read ...", "fields": {...}}

``status`` repeats the HTTP status, ``code`` is a short machine-readable reason, ``message`` a sentence for people,
``fields`` maps request fields to their problems (empty when the error is not about one field). A duplicate upload
(409) also carries ``existing`` — the artwork already holding that file.

:func:`api_exception_handler` is DRF's ``EXCEPTION_HANDLER``: it turns the services' exceptions (rejected uploads,
duplicates, an unavailable model) and Django's (404, 403, oversized or malformed requests) into that shape.
:func:`api_not_found` / :func:`handler404` / :func:`handler500` give the same shape to ``/api/`` paths that no DRF
view handles, so an integrator never gets an HTML page.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import (
    ObjectDoesNotExist,
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
)
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve, reverse
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from catalogue.services.artworks import ArtworkRejected, DuplicateArtwork
from inference.registry import ModelUnavailable

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"

# HTTP status of each reason a service gives for refusing an image.
REJECTION_STATUS = {
    "too_large": status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    "too_many_pixels": status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,  # a decompression bomb is too large, decoded
    "not_image": status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
    "unsupported_format": status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
    "duplicate": status.HTTP_409_CONFLICT,
    "duplicate_accession": status.HTTP_409_CONFLICT,
}


class ApiError(exceptions.APIException):
    """An error with an explicit status, code, message and optional field errors / extra keys."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int = status.HTTP_400_BAD_REQUEST,
        code: str = "invalid",
        fields: dict[str, list[str]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.message = message
        self.code = code
        self.fields = fields or {}
        self.extra = extra or {}


class ModelNotServing(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "model_unavailable"
    default_detail = "No model version is active; ask an administrator to activate one."


def error_body(status_code: int, code: str, message: str, fields: dict[str, list[str]] | None = None) -> dict:
    return {"status": status_code, "code": code, "message": message, "fields": fields or {}}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    exc = _translate(exc, context)
    if isinstance(exc, ApiError):
        body = error_body(exc.status_code, exc.code, exc.message, exc.fields)
        body.update(exc.extra)
        return Response(body, status=exc.status_code, headers=_auth_headers(exc))
    response = exception_handler(exc, context)
    if response is None:
        return None  # a bug: Django's handler500 (below) answers with JSON and the error is logged
    if isinstance(exc, exceptions.ValidationError):
        code, message, fields = _validation_summary(exc.detail)
    else:
        detail = getattr(exc, "detail", None)
        message = str(detail) if detail is not None else str(exc)
        codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
        code = codes if isinstance(codes, str) else "error"
        fields = {}
    response.data = error_body(response.status_code, code, message, fields)
    return response


def _translate(exc: Exception, context: dict[str, Any]) -> Exception:
    """Domain and Django exceptions to API exceptions."""
    if isinstance(exc, DuplicateArtwork):
        request = context.get("request")
        url = reverse("api-artwork-detail", args=[exc.existing.pk])
        return ApiError(
            str(exc),
            status_code=status.HTTP_409_CONFLICT,
            code="duplicate",
            fields={exc.field: [str(exc)]},
            extra={
                "existing": {
                    "id": exc.existing.pk,
                    "url": request.build_absolute_uri(url) if request else url,
                }
            },
        )
    if isinstance(exc, ArtworkRejected):
        return ApiError(
            str(exc),
            status_code=REJECTION_STATUS.get(exc.reason, status.HTTP_400_BAD_REQUEST),
            code=exc.reason,
            fields={exc.field: [str(exc)]},
        )
    if isinstance(exc, ModelUnavailable):
        logger.error("classification refused: %s", exc)
        return ModelNotServing(f"The model cannot classify right now ({exc.reason}); try again later.")
    if isinstance(exc, Http404 | ObjectDoesNotExist):  # the latter: a row deleted while the request ran
        return exceptions.NotFound(str(exc) or "Not found.")
    if isinstance(exc, PermissionDenied):
        return exceptions.PermissionDenied(str(exc) or None)
    if isinstance(exc, RequestDataTooBig):
        return ApiError(
            "The request body is larger than the server accepts.",
            status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            code="too_large",
        )
    if isinstance(exc, SuspiciousOperation):
        return ApiError(f"The request could not be read: {exc}", code="bad_request")
    return exc


def _auth_headers(exc: Exception) -> dict[str, str] | None:
    auth_header = getattr(exc, "auth_header", None)
    return {"WWW-Authenticate": auth_header} if auth_header else None


def _validation_summary(detail: Any) -> tuple[str, str, dict[str, list[str]]]:
    """(code, message, fields) of a DRF ValidationError's detail (a dict of lists, a list, or a string)."""
    fields: dict[str, list[str]] = {}
    codes: list[str] = []
    if isinstance(detail, dict):
        for name, errors in detail.items():
            items = errors if isinstance(errors, list) else [errors]
            fields[name] = [_flatten(e) for e in items]
            codes.extend(getattr(e, "code", "invalid") or "invalid" for e in items)
    else:
        items = detail if isinstance(detail, list) else [detail]
        fields["non_field_errors"] = [_flatten(e) for e in items]
        codes.extend(getattr(e, "code", "invalid") or "invalid" for e in items)
    parts = [
        msgs[0] if name == "non_field_errors" else f"{name}: {msgs[0]}"
        for name, msgs in fields.items()
        if msgs
    ]
    message = "Invalid request — " + "; ".join(parts) if parts else "Invalid request."
    code = codes[0] if len(set(codes)) == 1 else "invalid"
    return code, message, fields


def _flatten(error: Any) -> str:
    if isinstance(error, dict):
        return "; ".join(f"{k}: {_flatten(v)}" for k, v in error.items())
    if isinstance(error, list):
        return "; ".join(_flatten(e) for e in error)
    return str(error)


# --- Outside DRF views ----------------------------------------------------------------------------------------


def _json_error(status_code: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(error_body(status_code, code, message), status=status_code)


@csrf_exempt  # a PATCH or DELETE to a wrong path gets this 404, not Django's HTML CSRF page
def api_not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    """The last pattern under /api/v1/: a JSON 404 for any path no endpoint matches (also when DEBUG is on)."""
    message = f"No API endpoint at {request.path}."
    if not request.path.endswith("/"):
        try:
            match = resolve(request.path + "/")
        except Resolver404:
            match = None
        if match is not None and match.func is not api_not_found:
            message += f" Did you mean {request.path}/ (with the trailing slash)?"
    return _json_error(404, "not_found", message)


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith(API_PREFIX):
        return _json_error(404, "not_found", f"No API endpoint at {request.path}.")
    return defaults.page_not_found(request, exception)


def handler500(request: HttpRequest) -> HttpResponse:
    if request.path.startswith(API_PREFIX):
        return _json_error(500, "server_error", "Something went wrong on our side; it has been logged.")
    return defaults.server_error(request)
