"""The artwork's images as people get them, and who may.

* **Display copy** (``/artworks/<id>/display.jpg``): what pages and the API show, made from the original once and
  stored (:func:`catalogue.services.artworks.artwork_display`): no EXIF, so no GPS position. Visible to anyone who
  may see media.
* **Original** (``/artworks/<id>/original/``): the uploaded file as it came, metadata included, as a download for
  curators only (``catalogue.change_artwork``).
* Who may see media at all: everyone, or — with ``ARTSITE_MEDIA_REQUIRES_LOGIN`` (on in production) — people
  logged in. ``artsite/security.py`` applies the same rules to ``/media/`` paths.

Every image answer carries headers that keep anything in a file from running in a browser. Behind nginx
(``ARTSITE_MEDIA_ACCEL_PREFIX``, see ``deploy/nginx.conf``) the answer is an ``X-Accel-Redirect`` and nginx sends the
bytes; otherwise Django streams them from the storage.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
)
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_safe

from catalogue.models import IMAGE_MEDIA_TYPES, Artwork
from catalogue.services.artworks import artwork_display

MEDIA_CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"
ORIGINALS_PREFIX = "artworks/"  # where the originals are stored (catalogue.models.artwork_image_path)


def media_allowed(user: Any) -> bool:
    return not settings.ARTSITE_MEDIA_REQUIRES_LOGIN or bool(user.is_authenticated)


def originals_allowed(user: Any) -> bool:
    return bool(user.is_authenticated and user.has_perm("catalogue.change_artwork"))


def media_response(*, request: HttpRequest, name: str, download_name: str | None = None) -> HttpResponseBase:
    """A stored image file, by its storage name, with inert headers; ``download_name`` makes it an attachment.
    From an object store (``ARTSITE_STORAGE=s3``) the store serves it: a redirect to a presigned URL, made after the
    caller's permission checks (valid ``AWS_QUERYSTRING_EXPIRE`` seconds), so web processes never stream images."""
    if not storage_is_local():
        return _presigned_redirect(name=name, download_name=download_name)
    suffix = PurePosixPath(name).suffix.lower()
    content_type = IMAGE_MEDIA_TYPES.get(suffix, "application/octet-stream")
    prefix = getattr(settings, "ARTSITE_MEDIA_ACCEL_PREFIX", "")
    response: HttpResponseBase
    if prefix:
        response = HttpResponse(content_type=content_type)
        response["X-Accel-Redirect"] = f"{prefix.rstrip('/')}/{name}"
    else:
        response = FileResponse(default_storage.open(name, "rb"), content_type=content_type)
    filename = re.sub(r"[^A-Za-z0-9._-]", "_", download_name or PurePosixPath(name).name)
    response["Content-Disposition"] = f'{"attachment" if download_name else "inline"}; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = MEDIA_CSP
    response["Cache-Control"] = (
        "private, max-age=3600" if settings.ARTSITE_MEDIA_REQUIRES_LOGIN else "max-age=3600"
    )
    return response


def storage_is_local() -> bool:
    return str(settings.STORAGES["default"]["BACKEND"]).endswith("FileSystemStorage")


def _presigned_redirect(*, name: str, download_name: str | None) -> HttpResponseBase:
    if not default_storage.exists(name):
        raise Http404("No such file.")
    parameters = (
        {"ResponseContentDisposition": f'attachment; filename="{download_name}"'} if download_name else {}
    )
    # django-storages' S3Storage.url takes response parameters (a download name); Django's base signature does not.
    url = default_storage.url(name, parameters=parameters)  # type: ignore[call-arg]
    response = HttpResponseRedirect(url)
    response["Cache-Control"] = "private, max-age=60"  # shorter than the signature lives
    return response


@require_safe
def artwork_display_image(request: HttpRequest, pk: int) -> HttpResponseBase:
    if not media_allowed(request.user):
        return redirect_to_login(request.get_full_path())
    artwork = get_object_or_404(Artwork, pk=pk)
    return media_response(request=request, name=artwork_display(artwork=artwork))


@require_safe
def artwork_original(request: HttpRequest, pk: int) -> HttpResponseBase:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if not originals_allowed(request.user):
        raise PermissionDenied("Only curators may download originals.")
    artwork = get_object_or_404(Artwork, pk=pk)
    name = str(artwork.image.name)
    extension = PurePosixPath(name).suffix.lower()
    return media_response(request=request, name=name, download_name=f"artwork-{pk}{extension}")
