"""The portal's export: the catalogue as it is filtered on the catalogue page, streamed as CSV or JSON lines."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_safe

from catalogue.export_formats import EXTENSIONS, FORMATS, MEDIA_TYPES, export_lines
from catalogue.selectors.exports import ARTWORK_COLUMNS, ExportFiltersInvalid, artworks_export


@login_required
@permission_required("catalogue.view_artwork", raise_exception=True)
@require_safe
def artwork_export(request: HttpRequest) -> HttpResponseBase:
    """``?format=csv|jsonl`` plus the catalogue page's filters (the Export button passes them on)."""
    query = request.GET.copy()
    export_format = query.pop("format", ["csv"])[-1] or "csv"
    query.pop("page", None)
    back = reverse("catalogue:artwork-list") + (f"?{query.urlencode()}" if query else "")
    if export_format not in FORMATS:
        messages.error(
            request, f"Unknown export format “{export_format}”; choose one of: {', '.join(FORMATS)}."
        )
        return redirect(back)
    try:
        export = artworks_export(filters=query)
    except ExportFiltersInvalid as exc:
        messages.error(request, f"The filters are not valid, nothing was exported: {exc}")
        return redirect(back)
    lines = export_lines(
        export.rows(),
        format=export_format,
        columns=ARTWORK_COLUMNS,
        type_slugs=[t.slug for t in export.types],
    )
    response = StreamingHttpResponse(lines, content_type=MEDIA_TYPES[export_format])
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="artworks-{stamp}.{EXTENSIONS[export_format]}"'
    return response
