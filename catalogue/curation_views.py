"""Curation pages: the review queue, the possible-mislabels queue and the quality page (the collection map:
``catalogue/map_views.py``).

Thin views (STYLE rule 1): they parse the request, call one selector or service, and shape the output. Everyone
logged in may look; only users with ``catalogue.change_artwork`` (Curators) may label or retry, and the templates
show the controls only to them.
"""

from __future__ import annotations

from typing import Any, cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from catalogue.forms import LabelForm, MislabelDecisionForm
from catalogue.models import Artwork, ArtworkType, LabelCorrection
from catalogue.selectors import curation as curation_selectors
from catalogue.selectors import label_issues as label_issue_selectors
from catalogue.selectors.artworks import (
    InvalidCursor,
    artwork_prediction,
    artwork_types,
    artworks_unfinished,
    artworks_unfinished_counts,
    keyset_page,
)
from catalogue.selectors.curation import (
    REVIEW_ORDERS,
    ModelAgreement,
    model_agreement,
    model_agreements,
    review_progress,
)
from catalogue.selectors.explanations import artwork_explanation_types
from catalogue.selectors.similarity import artwork_similar
from catalogue.services import mislabels as mislabel_services
from catalogue.services.classification import artwork_retry
from catalogue.services.label_checks import LabelCheckBusy, label_check_request
from catalogue.services.labels import label_correct
from inference.selectors import model_version_active

SKIPPED_SESSION_KEY = "review_skipped"
MISLABELS_SKIPPED_SESSION_KEY = "mislabels_skipped"
MAX_SKIPPED = 500
#: Unfinished works per page of the quality page's list (a keyset page: as cheap far down the list as at its top).
UNFINISHED_PAGE_SIZE = 50
#: Works shown under "Next up" on the review queue.
UPCOMING = 6


def _review_order(request: HttpRequest) -> str:
    order = request.GET.get("order") or request.POST.get("order") or "confidence"
    return order if order in REVIEW_ORDERS else "confidence"


def _review_url(order: str) -> str:
    url = reverse("catalogue:review")
    return f"{url}?{urlencode({'order': order})}" if order != "confidence" else url


def _skipped(request: HttpRequest, key: str = SKIPPED_SESSION_KEY) -> list[int]:
    return [int(pk) for pk in request.session.get(key, []) if str(pk).isdigit()]


def _skip(request: HttpRequest, pk: int, key: str) -> None:
    """Put a work aside for this session (it stays in the queue for everyone else)."""
    skipped = [p for p in _skipped(request, key) if p != pk] + [pk]
    request.session[key] = skipped[-MAX_SKIPPED:]


# --- Review queue -------------------------------------------------------------------------------------------------


@login_required
def review_queue(request: HttpRequest) -> HttpResponse:
    order = _review_order(request)
    skipped = _skipped(request)
    # The active version and the types are read once and handed to each selector: the page's queries stay a fixed
    # handful, however many works are labelled or waiting (the agreement comes from the shared cache).
    version = model_version_active()
    types = artwork_types()
    queue = curation_selectors.review_queue(order=order, exclude_ids=skipped, version=version)
    head = list(queue[: 1 + UPCOMING])  # the work to review and the next ones, in one query
    artwork = head[0] if head else None
    context: dict[str, Any] = {
        "artwork": artwork,
        "order": order,
        "orders": REVIEW_ORDERS.items(),
        "progress": review_progress(version=version, types=types),
        "skipped": len(skipped),
        "types": types,
        "can_curate": request.user.has_perm("catalogue.change_artwork"),
    }
    if artwork is not None:
        annotated = cast(Any, artwork)  # pred_* come from artworks_with_prediction's .annotate()
        probs = annotated.pred_probabilities or {}
        by_id = {t.pk: t for t in types}
        prediction = artwork_prediction(artwork=artwork, version=version)  # its embedding, for similar works
        context.update(
            predicted=by_id.get(annotated.pred_type_id),
            probabilities=sorted(
                ((t, float(probs.get(t.slug, 0.0))) for t in types), key=lambda item: -item[1]
            ),
            similar=artwork_similar(artwork=artwork, prediction=prediction),
            explain_types=artwork_explanation_types(
                artwork=artwork, version=version, prediction=prediction, types=types
            ),
            types_by_id=by_id,
            upcoming=head[1:],
        )
    progress = context["progress"]
    context["reviewed_share"] = round(100 * progress.reviewed / progress.total, 1) if progress.total else 0
    return render(request, "catalogue/review.html", context)


@require_POST
@login_required
@permission_required("catalogue.change_artwork", raise_exception=True)
def review_label(request: HttpRequest, pk: int) -> HttpResponse:
    """Confirm the model's type (``confirm``) or set one (``type``), then show the next work in the queue."""
    artwork = get_object_or_404(Artwork, pk=pk)
    order = _review_order(request)
    note = (request.POST.get("note") or "").strip()[:1000]
    if request.POST.get("confirm"):
        prediction = artwork_prediction(artwork=artwork)
        if prediction is None:
            messages.error(request, f"“{artwork.title}” has no prediction from the active model to confirm.")
            return redirect(_review_url(order))
        to_type: ArtworkType = prediction.predicted_type
        note = note or "Confirmed the model's type in the review queue."
    else:
        form = LabelForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Choose one of the types.")
            return redirect(_review_url(order))
        to_type = form.cleaned_data["type"]
    label_correct(
        artwork=artwork, to_type=to_type, user=request.user, source=LabelCorrection.Source.REVIEW, note=note
    )
    messages.success(request, f"“{artwork.title}”: {to_type.name}.")
    return redirect(_review_url(order))


@require_POST
@login_required
@permission_required("catalogue.change_artwork", raise_exception=True)
def review_skip(request: HttpRequest, pk: int) -> HttpResponse:
    """Put a work aside for this session (it stays in the queue for everyone else)."""
    _skip(request, pk, SKIPPED_SESSION_KEY)
    return redirect(_review_url(_review_order(request)))


@require_POST
@login_required
def review_reset(request: HttpRequest) -> HttpResponse:
    request.session.pop(SKIPPED_SESSION_KEY, None)
    return redirect(_review_url(_review_order(request)))


# --- Possible mislabels -------------------------------------------------------------------------------------------


@login_required
def mislabel_queue(request: HttpRequest) -> HttpResponse:
    """The labels the newest label check doubts, most doubtful first, one at a time (curators settle them)."""
    skipped = _skipped(request, MISLABELS_SKIPPED_SESSION_KEY)
    progress = label_issue_selectors.mislabel_progress()
    queue = label_issue_selectors.mislabel_queue(exclude_ids=skipped, check=progress.check)
    issue = queue.first() if progress.check is not None else None
    types = artwork_types()
    context: dict[str, Any] = {
        "issue": issue,
        "progress": progress,
        "skipped": len(skipped),
        "types": types,
        "types_by_id": {t.pk: t for t in types},
        "can_curate": request.user.has_perm("catalogue.change_artwork"),
    }
    if issue is not None:
        context.update(
            artwork=issue.artwork,
            probabilities=sorted(
                ((t, float(issue.probabilities.get(t.slug, 0.0))) for t in types), key=lambda item: -item[1]
            ),
            similar=artwork_similar(artwork=issue.artwork),
            upcoming=list(queue[1:7]),
            # What the served model looks at for the label's type and for the suggested one.
            explain_types=[issue.label_type, issue.suggested_type],
        )
    return render(request, "catalogue/mislabels.html", context)


@require_POST
@login_required
@permission_required("catalogue.change_artwork", raise_exception=True)
def mislabel_decide(request: HttpRequest, pk: int) -> HttpResponse:
    """Keep the label (``decision=keep``), take the suggestion (``suggestion``) or set a type (``type``), then
    show the next doubtful label."""
    artwork = get_object_or_404(Artwork, pk=pk)
    form = MislabelDecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(str(e) for errors in form.errors.values() for e in errors))
        return redirect("catalogue:mislabels")
    try:
        correction = mislabel_services.mislabel_decide(
            artwork_id=artwork.pk,
            decision=form.cleaned_data["decision"],
            to_type=form.cleaned_data["type"],
            user=request.user,
            note=form.cleaned_data["note"].strip(),
        )
    except mislabel_services.NotInQueue:
        messages.info(request, f"“{artwork.title}” is no longer in the queue: someone settled it already.")
        return redirect("catalogue:mislabels")
    verb = "kept" if correction.from_type_id == correction.to_type_id else "set to"
    messages.success(request, f"“{artwork.title}”: {verb} {correction.to_type.name}.")
    return redirect("catalogue:mislabels")


@require_POST
@login_required
@permission_required("catalogue.change_artwork", raise_exception=True)
def mislabel_skip(request: HttpRequest, pk: int) -> HttpResponse:
    _skip(request, pk, MISLABELS_SKIPPED_SESSION_KEY)
    return redirect("catalogue:mislabels")


@require_POST
@login_required
@permission_required("catalogue.change_artwork", raise_exception=True)
def label_check_start(request: HttpRequest) -> HttpResponse:
    """Start a label check now (it runs on the long-jobs worker; the queue fills when it has finished)."""
    try:
        check = label_check_request(user=request.user)
    except LabelCheckBusy as exc:
        messages.info(request, str(exc))
    else:
        messages.success(
            request, f"Label check {check.pk} queued: the doubtful labels appear here when it is done."
        )
    return redirect("catalogue:mislabels")


@require_POST
@login_required
def mislabel_reset(request: HttpRequest) -> HttpResponse:
    request.session.pop(MISLABELS_SKIPPED_SESSION_KEY, None)
    return redirect("catalogue:mislabels")


# --- Quality ------------------------------------------------------------------------------------------------------


def _heatmap_rows(agreement: ModelAgreement) -> list[dict[str, Any]]:
    """The confusion matrix as table rows whose cells carry a colour strength (share of the row)."""
    rows = []
    for i, (artwork_type, counts) in enumerate(zip(agreement.types, agreement.matrix, strict=True)):
        total = sum(counts)
        cells = [
            {
                "count": n,
                "share": n / total if total else 0.0,
                "alpha": round(0.08 + 0.85 * n / total, 3) if total and n else 0,
                "diagonal": i == j,
            }
            for j, n in enumerate(counts)
        ]
        rows.append({"type": artwork_type, "cells": cells, "total": total})
    return rows


@login_required
def quality(request: HttpRequest) -> HttpResponse:
    agreements = model_agreements()
    chosen = request.GET.get("version")
    selected = next((a for a in agreements if a.version and a.version.version == chosen), None)
    if selected is None:
        selected = agreements[0] if agreements else model_agreement()
    try:
        unfinished = keyset_page(
            artworks_unfinished(), cursor=request.GET.get("jobs"), size=UNFINISHED_PAGE_SIZE
        )
    except InvalidCursor as exc:
        messages.info(request, f"{exc} Showing the first unfinished works.")
        unfinished = keyset_page(artworks_unfinished(), cursor=None, size=UNFINISHED_PAGE_SIZE)
    query = request.GET.copy()
    query.pop("jobs", None)
    return render(
        request,
        "catalogue/quality.html",
        {
            "versions": [
                {"agreement": a, "card_accuracy": a.version.metrics.get("accuracy") if a.version else None}
                for a in agreements
            ],
            "selected": selected,
            "heatmap": _heatmap_rows(selected),
            "unfinished": unfinished,
            "query": query.urlencode(),
            "counts": artworks_unfinished_counts(),
            "can_curate": request.user.has_perm("catalogue.change_artwork"),
        },
    )


@require_POST
@login_required
@permission_required("catalogue.change_artwork", raise_exception=True)
def quality_retry(request: HttpRequest) -> HttpResponse:
    """Queue classification again for the chosen unfinished works (``artwork`` ids), or all failed ones."""
    unfinished = Artwork.objects.filter(
        status__in=[Artwork.Status.FAILED, Artwork.Status.PENDING, Artwork.Status.PROCESSING]
    )
    if request.POST.get("all_failed"):
        chosen = unfinished.filter(status=Artwork.Status.FAILED)
    else:
        ids = [int(v) for v in request.POST.getlist("artwork") if v.isdigit()]
        chosen = unfinished.filter(pk__in=ids)
    count = 0
    for artwork in chosen:
        artwork_retry(artwork=artwork)
        count += 1
    if count:
        messages.success(request, f"{count} artwork(s) queued for classification again.")
    else:
        messages.info(request, "Nothing to retry.")
    return redirect("catalogue:quality")
