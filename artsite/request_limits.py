"""Request bodies stop at the upload limit, before gunicorn's worker spends time and disk on them.

Two layers, both in every environment (``make run`` included; in docker-compose nginx refuses larger bodies first):

* :class:`RequestBodyLimitMiddleware` answers **413** to a request whose declared ``Content-Length`` is larger than
  the upload limit plus :data:`FORM_OVERHEAD_BYTES` (the other form fields and the multipart framing), without
  reading a byte of the body. It runs before the CSRF check, so an anonymous POST with a made-up CSRF cookie is
  refused just as early. Django never reads past the declared length (``LimitedStream``), so this bounds the body.
* :class:`UploadLimitHandler`, first in ``FILE_UPLOAD_HANDLERS``, counts the bytes of each uploaded file as they are
  streamed and stops reading the body the moment one passes ``ARTSITE_MAX_UPLOAD_BYTES``, whatever the header said.
  The view then sees no file (so stores nothing), and the middleware replaces its answer with the 413.

Both answer the same refusal: JSON in the API's error shape under ``/api/``, the outcome JSON the multi-file
upload's script reads on its route, a short page elsewhere.

Also here: Django's multipart parser refuses a part whose headers exceed 1 KiB, which a long file name reaches (a
1,000-character name, or 350 non-ASCII characters), and DRF then reports a ``parse_error``. The limit is raised to
:data:`MULTIPART_HEADER_BYTES` once at start-up (``artsite/apps.py``); the stored name never uses the file name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest, HttpResponse, JsonResponse, multipartparser
from django.template.loader import render_to_string
from django.urls import Resolver404, resolve

FORM_OVERHEAD_BYTES = 1024 * 1024
MULTIPART_HEADER_BYTES = 16 * 1024
API_PREFIX = "/api/"
# Portal routes read by scripts (the multi-file upload): they get the refusal in their own JSON shape, not a page.
PORTAL_JSON_VIEWS = frozenset({"catalogue:artwork-upload-file"})
# Set in request.META by UploadLimitHandler when it stopped an upload.
STOPPED_KEY = "artsite.upload_too_large"


def request_body_limit() -> int:
    """The most bytes a request body may declare: the upload limit and room for the form around it."""
    return int(settings.ARTSITE_MAX_UPLOAD_BYTES) + FORM_OVERHEAD_BYTES


def multipart_header_limit_raise() -> None:
    """Let a multipart part's headers be as long as a long file name needs (Django's own limit is 1 KiB)."""
    current = getattr(multipartparser, "MAX_TOTAL_HEADER_SIZE", 1024)  # not in django-stubs
    setattr(multipartparser, "MAX_TOTAL_HEADER_SIZE", max(current, MULTIPART_HEADER_BYTES))  # noqa: B010


def too_large_response(request: HttpRequest) -> HttpResponse:
    limit_mb = settings.ARTSITE_MAX_UPLOAD_BYTES / 1e6
    message = f"The upload is larger than the {limit_mb:.0f} MB limit; nothing was stored."
    response: HttpResponse
    if request.path.startswith(API_PREFIX):
        body = {"status": 413, "code": "too_large", "message": message, "fields": {}}
        response = JsonResponse(body, status=413)
    elif _view_name(request) in PORTAL_JSON_VIEWS:
        refused = {"outcome": "refused", "reason": "too_large", "field": "image", "message": message}
        response = JsonResponse(refused, status=413)
    else:
        page = render_to_string("413.html", {"message": message}, request=None)
        response = HttpResponse(page, status=413)
    # No "Connection: close" (a hop-by-hop header, which WSGI forbids an application to set): the server closes a
    # connection whose body it did not read.
    return response


def _view_name(request: HttpRequest) -> str:
    try:
        return resolve(request.path_info).view_name
    except Resolver404:
        return ""


def _declared_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0  # Django reads nothing of a body whose length it cannot parse


class RequestBodyLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if _declared_length(request) > request_body_limit():
            return too_large_response(request)
        response = self.get_response(request)
        if request.META.get(STOPPED_KEY):
            return too_large_response(request)
        return response


class UploadLimitHandler(FileUploadHandler):
    """Counts each uploaded file's bytes while they stream in and stops past ``ARTSITE_MAX_UPLOAD_BYTES``."""

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > settings.ARTSITE_MAX_UPLOAD_BYTES:
            if self.request is not None:
                self.request.META[STOPPED_KEY] = True
            # connection_reset: the parser stops reading the body here instead of draining the rest.
            raise StopUpload(connection_reset=True)
        return raw_data  # passed on to the next handler, which keeps it

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler makes the file
