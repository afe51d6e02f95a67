"""Portal pages for editing works (one, or many at once: bulk edits with undo) and for the photos of one work (the
near-duplicate triage). Each view parses input, calls one service or selector, and renders or redirects."""

from __future__ import annotations

from urllib.parse import parse_qs

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from catalogue.forms import ArtworkEditForm, BulkEditForm
from catalogue.models import Artwork, BulkEdit, LabelCorrection, NearDuplicatePair
from catalogue.selectors.history import SelectionInvalid, artworks_selected, bulk_edits_recent
from catalogue.selectors.near_duplicates import near_duplicate_queue
from catalogue.services.artworks import METADATA_FIELDS, ArtworkRejected, artwork_update
from catalogue.services.bulk_edits import BulkEditRefused, BulkValues, bulk_edit_apply, bulk_edit_undo
from catalogue.services.near_duplicates import (
    DecisionRefused,
    near_duplicate_decide,
    near_duplicates_scan_enqueue,
)


@login_required
@permission_required("catalogue.change_artwork", raise_exception=True)
def artwork_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Edit one artwork's metadata (recorded in its history, source portal)."""
    artwork = get_object_or_404(Artwork, pk=pk)
    initial = {name: getattr(artwork, name) or "" for name in METADATA_FIELDS}
    form = ArtworkEditForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        changed = {name: form.cleaned_data[name] for name in form.changed_data}
        try:
            artwork_update(
                artwork=artwork, user=request.user, source=LabelCorrection.Source.PORTAL, **changed
            )
        except ArtworkRejected as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            messages.success(request, f"Saved: {', '.join(changed) or 'nothing changed'}.")
            return redirect("catalogue:artwork-detail", pk=pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "catalogue/artwork_edit.html", {"artwork": artwork, "form": form}, status=status)


@require_POST
@login_required
@permission_required("catalogue.change_artwork", raise_exception=True)
def bulk_edit_create(request: HttpRequest) -> HttpResponse:
    """From the catalogue: the works ticked (``ids``) or, with ``scope=filter``, every work the current filter
    (``filter``, the catalogue's query string) shows."""
    form = BulkEditForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(str(e) for errors in form.errors.values() for e in errors))
        return redirect("catalogue:artwork-list")
    data = form.cleaned_data
    try:
        if data["scope"] == "filter":
            filters = {key: values[-1] for key, values in parse_qs(data["filter"]).items()}
            artworks, selection = artworks_selected(filters=filters)
        else:
            artworks, selection = artworks_selected(ids=data["ids"])
        bulk_edit = bulk_edit_apply(
            artworks=artworks,
            values=BulkValues(
                artist=data["artist"] or None,
                date=data["date"] or None,
                artwork_type=data["type"],
                note=data["note"] or None,
            ),
            selection=selection,
            user=request.user,
            source=LabelCorrection.Source.PORTAL,
        )
    except (BulkEditRefused, SelectionInvalid) as exc:
        messages.error(request, str(exc))
        return redirect("catalogue:artwork-list")
    messages.success(
        request,
        f"Bulk edit #{bulk_edit.pk}: {bulk_edit.changed} of {bulk_edit.count} selected works changed. "
        "It can be undone here.",
    )
    return redirect("catalogue:bulk-edits")


@login_required
def bulk_edit_list(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "catalogue/bulk_edits.html",
        {"bulk_edits": bulk_edits_recent(), "can_curate": request.user.has_perm("catalogue.change_artwork")},
    )


@require_POST
@login_required
@permission_required("catalogue.change_artwork", raise_exception=True)
def bulk_edit_undo_view(request: HttpRequest, pk: int) -> HttpResponse:
    bulk_edit = get_object_or_404(BulkEdit, pk=pk)
    try:
        undone = bulk_edit_undo(bulk_edit=bulk_edit, user=request.user)
    except BulkEditRefused as exc:
        messages.error(request, str(exc))
        return redirect("catalogue:bulk-edits")
    skipped = undone.undo_result["skipped"]
    text = f"Bulk edit #{pk} undone: {undone.undo_result['restored']} work(s) restored."
    if skipped:
        text += f" {len(skipped)} change(s) left as they are (changed or deleted since): see below."
    messages.success(request, text)
    return redirect("catalogue:bulk-edits")


@login_required
def near_duplicate_triage(request: HttpRequest) -> HttpResponse:
    page = Paginator(near_duplicate_queue(), 20).get_page(request.GET.get("page"))
    return render(
        request,
        "catalogue/near_duplicates.html",
        {"page": page, "can_curate": request.user.has_perm("catalogue.change_artwork")},
    )


@require_POST
@login_required
@permission_required("catalogue.change_artwork", raise_exception=True)
def near_duplicate_decide_view(request: HttpRequest, pk: int) -> HttpResponse:
    pair = get_object_or_404(NearDuplicatePair, pk=pk)
    try:
        near_duplicate_decide(
            pair=pair,
            decision=request.POST.get("decision", ""),
            user=request.user,
            source=LabelCorrection.Source.PORTAL,
        )
    except DecisionRefused as exc:
        messages.error(request, str(exc))
    return redirect("catalogue:near-duplicates")


@require_POST
@login_required
@permission_required("catalogue.change_artwork", raise_exception=True)
def near_duplicate_scan(request: HttpRequest) -> HttpResponse:
    if near_duplicates_scan_enqueue():
        messages.info(
            request, "The whole catalogue is being searched in the background; new pairs appear here."
        )
    else:
        messages.error(request, "The background workers cannot be reached; try again later.")
    return redirect("catalogue:near-duplicates")
