"""The collection map: the page (drawn in the browser by ``static/js/map.js``), its points as one binary, the works
under the pointer, and a curator's "compute the layout again".

Thin views (STYLE rule 1): everyone logged in may look; only Curators (``catalogue.change_artwork``) may ask for a
layout to be computed.
"""

from __future__ import annotations

import gzip

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse, HttpResponseNotModified, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_POST

from catalogue.models import MapLayout
from catalogue.selectors import maps as map_selectors
from catalogue.selectors.artworks import artwork_types
from catalogue.services.maps import map_layout_request, map_points_current
from inference.models import ModelVersion
from inference.selectors import model_version_active

# One colour per type, by type position (colour-blind-safe Okabe–Ito hues); grey for works with no type.
TYPE_COLOURS = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442"]
NO_TYPE_COLOUR = "#999999"
#: Colours of the label provenances, in the binary's order (none, imported, set, confirmed).
PROVENANCE_COLOURS = ["#bbbbbb", "#E69F00", "#0072B2", "#009E73"]
PROVENANCE_NAMES = [
    "No label (the model's type)",
    "Given at import",
    "Set by a curator",
    "Confirmed by a curator",
]


def _version(request: HttpRequest) -> ModelVersion | None:
    if request.GET.get("version"):
        return get_object_or_404(ModelVersion, version=request.GET["version"])
    return model_version_active()


@login_required
@require_GET
def collection_map(request: HttpRequest) -> HttpResponse:
    version = _version(request)
    layout = map_selectors.map_layout_of(version=version)
    types = artwork_types()
    config = {
        "points": reverse("catalogue:map-points", args=[version.version]) if version else "",
        "works": reverse("catalogue:map-works"),
        "artwork": reverse("catalogue:artwork-detail", args=[0]),
        # A selection opens the catalogue filtered by the box, which reads the active version's layout.
        "catalogue": reverse("catalogue:artwork-list") if version is not None and version.is_active else "",
        "types": [
            {"id": t.pk, "name": t.name, "colour": TYPE_COLOURS[i % len(TYPE_COLOURS)]}
            for i, t in enumerate(types)
        ],
        "noType": NO_TYPE_COLOUR,
        "provenances": [
            {"name": name, "colour": colour}
            for name, colour in zip(PROVENANCE_NAMES, PROVENANCE_COLOURS, strict=True)
        ],
    }
    return render(
        request,
        "catalogue/collection_map.html",
        {
            "version": version,
            "layout": layout,
            "ready": layout is not None and layout.status == MapLayout.Status.READY,
            "config": config,
            "versions": ModelVersion.objects.all(),
            "can_curate": request.user.has_perm("catalogue.change_artwork"),
        },
    )


@login_required
@require_GET
def map_points(request: HttpRequest, version: str) -> HttpResponse:
    """Every placed work of a version as the compact binary of :mod:`catalogue.selectors.maps` (gzipped when the
    browser accepts it), revalidated with its ETag."""
    model_version = get_object_or_404(ModelVersion, version=version)
    points = map_points_current(version=model_version)
    if request.headers.get("If-None-Match") == points.etag:
        response: HttpResponse = HttpResponseNotModified()
    elif "gzip" in request.headers.get("Accept-Encoding", ""):
        response = HttpResponse(points.gzipped, content_type="application/octet-stream")
        response["Content-Encoding"] = "gzip"
    else:
        response = HttpResponse(gzip.decompress(points.gzipped), content_type="application/octet-stream")
    response["ETag"] = points.etag
    response["X-Map-Points"] = str(points.count)
    response["X-Map-Current"] = (
        "1" if points.current else "0"
    )  # 0: a build from a moment ago, a newer one coming
    response["Server-Timing"] = f"build;dur={points.build_seconds * 1000:.1f}"
    response["Cache-Control"] = (
        "private, no-cache"  # keep it, but ask each time (a 304 while nothing changed)
    )
    response["Vary"] = "Accept-Encoding, Cookie"
    return response


@login_required
@require_GET
def map_works(request: HttpRequest) -> JsonResponse:
    """``?ids=1,2,3``: the works' titles, thumbnails and pages (at most ``MAP_WORKS_LIMIT``)."""
    text = request.GET.get("ids", "").strip()
    try:
        ids = [int(part) for part in text.split(",") if part.strip()] if text else []
    except ValueError:
        return JsonResponse({"error": "ids must be artwork ids separated by commas."}, status=400)
    if any(not 0 < i < 2**63 for i in ids):
        return JsonResponse({"error": "ids must be positive artwork ids."}, status=400)
    if len(ids) > map_selectors.MAP_WORKS_LIMIT:
        return JsonResponse({"error": f"At most {map_selectors.MAP_WORKS_LIMIT} ids at a time."}, status=400)
    return JsonResponse({"works": map_selectors.map_works(ids=ids)})


@login_required
@permission_required("catalogue.change_artwork", raise_exception=True)
@require_POST
def map_layout_start(request: HttpRequest) -> HttpResponse:
    version = get_object_or_404(ModelVersion, version=request.POST.get("version", ""))
    map_layout_request(version=version, force=True)
    messages.success(request, f"The map of {version.version} is being computed; reload the page in a moment.")
    return redirect(reverse("catalogue:map") + "?" + urlencode({"version": version.version}))
