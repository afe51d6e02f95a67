"""Server-rendered pages. Each view parses input, calls one service or selector, and renders."""

from __future__ import annotations

import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from catalogue.api.exceptions import REJECTION_STATUS
from catalogue.filters import ArtworkFilterSet
from catalogue.forms import ArtworkFileForm, ArtworkUploadForm, ImageSearchForm, LabelForm
from catalogue.models import Artwork, ArtworkType, LabelCorrection
from catalogue.selectors import search as search_selectors
from catalogue.selectors.artworks import (
    InvalidCursor,
    artwork_prediction,
    artwork_types,
    artworks_tally,
    artworks_with_prediction,
    keyset_page,
)
from catalogue.selectors.explanations import artwork_explanation_types
from catalogue.selectors.history import artwork_timeline
from catalogue.selectors.near_duplicates import artwork_open_pairs, artwork_photos
from catalogue.selectors.similarity import MAX_SIMILAR, artwork_similar
from catalogue.services import classification as classification_services
from catalogue.services.artworks import (
    ArtworkRejected,
    DuplicateArtwork,
    artwork_create,
    image_check,
    read_upload,
)
from catalogue.services.classification import image_classify
from catalogue.services.explanations import ExplanationUnavailable, artwork_explain
from catalogue.services.labels import NothingToConfirm, label_confirm, label_correct
from inference.registry import ModelUnavailable

PAGE_SIZE = 24


@login_required
def artwork_list(request: HttpRequest) -> HttpResponse:
    filters = ArtworkFilterSet(request.GET or None, queryset=artworks_with_prediction())
    # An invalid filter (an unknown type typed into the URL) shows its error in the form and filters nothing.
    filtered = filters.is_bound and filters.is_valid()
    artworks = filters.qs if filtered else filters.queryset
    # Keyset pages (a cursor, not a page number): page 2,000 of a million works costs what page 1 does.
    try:
        page = keyset_page(artworks, cursor=request.GET.get("cursor"), size=PAGE_SIZE)
    except InvalidCursor as exc:
        messages.info(request, f"{exc} Showing the first page.")
        page = keyset_page(artworks, cursor=None, size=PAGE_SIZE)
    query = request.GET.copy()
    for name in ("cursor", "page"):
        query.pop(name, None)
    has_filter = filtered and any(
        v not in (None, "", []) for k, v in filters.form.cleaned_data.items() if k != "ordering"
    )
    return render(
        request,
        "catalogue/artwork_list.html",
        {
            "form": filters.form,
            "page": page,
            "query": query.urlencode(),
            "types": {t.pk: t for t in artwork_types()},
            "shown": artworks_tally(
                artworks, filtered=has_filter, page=page, known=filters.count_known if filtered else None
            ),
            "total": artworks_tally(filters.queryset, filtered=False) if has_filter else None,
            "search_ranked": filters.search_ranked if filtered else None,
            "rank_at_most": search_selectors.RANK_AT_MOST,
        },
    )


@login_required
@permission_required("catalogue.add_artwork", raise_exception=True)
def artwork_upload(request: HttpRequest) -> HttpResponse:
    form = ArtworkUploadForm(request.POST or None, request.FILES or None)
    duplicate = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            artwork = artwork_create(
                data=read_upload(data["image"]),
                title=data["title"],
                artist=data["artist"],
                date=data["date"],
                accession_number=data["accession_number"],
                description=data["description"],
                uploaded_by=request.user,
            )
        except DuplicateArtwork as exc:
            duplicate = exc.existing
            form.add_error("image", str(exc))
        except ArtworkRejected as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            messages.success(request, f"“{artwork.title}” is stored; its type is being worked out.")
            return redirect("catalogue:artwork-detail", pk=artwork.pk)
    status = 400 if request.method == "POST" else 200
    context = {"form": form, "duplicate": duplicate, "batch_form": ArtworkFileForm(auto_id="batch_%s")}
    return render(request, "catalogue/artwork_upload.html", context, status=status)


@login_required
def artwork_detail(request: HttpRequest, pk: int) -> HttpResponse:
    artwork = get_object_or_404(artworks_with_prediction().select_related("uploaded_by"), pk=pk)
    prediction = artwork_prediction(artwork=artwork)
    types = artwork_types()
    types_by_id = {t.pk: t for t in types}
    probabilities = []
    if prediction is not None:
        probabilities = sorted(
            ((t, float(prediction.probabilities.get(t.slug, 0.0))) for t in types), key=lambda item: -item[1]
        )
    return render(
        request,
        "catalogue/artwork_detail.html",
        {
            "artwork": artwork,
            "prediction": prediction,
            "probabilities": probabilities,
            "effective_type": types_by_id.get(artwork.effective_type_id),
            "similar": artwork_similar(artwork=artwork) if prediction else [],
            "types_by_id": types_by_id,
            "history": artwork_timeline(artwork_id=artwork.pk),
            "photos": artwork_photos(artwork=artwork),
            "open_pairs": list(artwork_open_pairs(artwork=artwork)),
            "explain_types": artwork_explanation_types(artwork=artwork),
            "label_form": LabelForm(
                initial={"type": artwork.curator_type.slug if artwork.curator_type else None}
            ),
            "can_curate": request.user.has_perm("catalogue.change_artwork"),
        },
    )


@login_required
def artwork_status(request: HttpRequest, pk: int) -> JsonResponse:
    """Polled by the artwork page while the work is pending or processing."""
    artwork = get_object_or_404(Artwork, pk=pk)
    return JsonResponse({"id": artwork.pk, "status": artwork.status, "error": artwork.error})


@require_POST
@login_required
@permission_required("catalogue.change_artwork", raise_exception=True)
def artwork_retry(request: HttpRequest, pk: int) -> HttpResponse:
    artwork = get_object_or_404(Artwork, pk=pk)
    classification_services.artwork_retry(artwork=artwork)
    messages.info(request, "Classification queued again.")
    return redirect("catalogue:artwork-detail", pk=pk)


@require_POST
@login_required
@permission_required("catalogue.change_artwork", raise_exception=True)
def artwork_label(request: HttpRequest, pk: int) -> HttpResponse:
    artwork = get_object_or_404(Artwork, pk=pk)
    form = LabelForm(request.POST)
    if form.is_valid():
        label_correct(
            artwork=artwork,
            to_type=form.cleaned_data["type"],
            user=request.user,
            source=LabelCorrection.Source.REVIEW
            if request.POST.get("source") == "review"
            else LabelCorrection.Source.PORTAL,
            note=form.cleaned_data["note"],
        )
        messages.success(request, f"Type set to {form.cleaned_data['type'].name}.")
    else:
        messages.error(request, "Choose one of the types.")
    return _redirect_back(request, pk)


@require_POST
@login_required
@permission_required("catalogue.change_artwork", raise_exception=True)
def artwork_confirm(request: HttpRequest, pk: int) -> HttpResponse:
    """A curator looked and keeps the type as it is: it becomes a confirmed (verified) label."""
    artwork = get_object_or_404(Artwork, pk=pk)
    note = (request.POST.get("note") or "").strip()[:1000]
    try:
        correction = label_confirm(
            artwork=artwork, user=request.user, source=LabelCorrection.Source.PORTAL, note=note
        )
    except NothingToConfirm:
        messages.error(request, "This work has no type yet (no label and no prediction): nothing to confirm.")
    else:
        messages.success(request, f"{correction.to_type.name} confirmed: the label is verified.")
    return _redirect_back(request, pk)


def _redirect_back(request: HttpRequest, pk: int) -> HttpResponse:
    """To the page named in ``next`` when it is on this site, else to the artwork's page."""
    next_url = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = reverse("catalogue:artwork-detail", args=[pk])
    return redirect(next_url)


@login_required
def artwork_explanation(request: HttpRequest, pk: int, slug: str) -> HttpResponse:
    """The explanation map of one type over the artwork's image (PNG), by the active model version. 404 while the
    artwork has no prediction from it; the time it took is in ``Server-Timing`` (ms)."""
    started = time.perf_counter()
    artwork = get_object_or_404(Artwork, pk=pk)
    artwork_type = get_object_or_404(ArtworkType, slug=slug)
    prediction = artwork_prediction(artwork=artwork)
    if prediction is None:
        raise Http404("The artwork has no prediction from the active model yet.")
    try:
        explanation = artwork_explain(
            artwork=artwork, artwork_type=artwork_type, version=prediction.model_version
        )
    except ExplanationUnavailable as exc:
        raise Http404(str(exc)) from None
    except ModelUnavailable as exc:
        return HttpResponse(f"{exc}", status=503, content_type="text/plain; charset=utf-8")
    response = HttpResponse(explanation.png, content_type="image/png")
    timings = {**explanation.timings, "app": time.perf_counter() - started}
    response["Server-Timing"] = ", ".join(f"{stage};dur={sec * 1000:.1f}" for stage, sec in timings.items())
    # The URL names no version: a model switch changes the map behind it, so browsers keep it only briefly.
    response["Cache-Control"] = "private, max-age=300"
    return response


# --- Many files at once: one request per file, from the upload page's JavaScript (static/js/upload.js) ------------


@require_POST
@login_required
@permission_required("catalogue.add_artwork", raise_exception=True)
def artwork_upload_file(request: HttpRequest) -> JsonResponse:
    """Store one file of a multi-file upload, with the same checks as the upload form, and answer its outcome as
    JSON: ``stored`` (201, with the work's URL and status), ``duplicate`` (409, with the work already holding the
    file) or ``refused`` (400, 413 or 415, with the reason)."""
    form = ArtworkFileForm(request.POST, request.FILES)
    if not form.is_valid():
        field, errors = next(iter(form.errors.items()))
        return JsonResponse(
            {
                "outcome": "refused",
                "reason": "invalid",
                "field": field,
                "message": " ".join(map(str, errors)),
            },
            status=400,
        )
    data = form.cleaned_data
    try:
        artwork = artwork_create(
            data=read_upload(data["image"]),
            title=data["title"],
            artist=data["artist"],
            date=data["date"],
            uploaded_by=request.user,
            curator_type=data["type"],
            label_source=LabelCorrection.Source.PORTAL,
        )
    except DuplicateArtwork as exc:
        existing = {
            "id": exc.existing.pk,
            "title": exc.existing.title,
            "url": reverse("catalogue:artwork-detail", args=[exc.existing.pk]),
        }
        return JsonResponse({"outcome": "duplicate", "message": str(exc), "existing": existing}, status=409)
    except ArtworkRejected as exc:
        refused = {"outcome": "refused", "reason": exc.reason, "field": exc.field, "message": str(exc)}
        return JsonResponse(refused, status=REJECTION_STATUS.get(exc.reason, 400))
    body: dict[str, object] = {
        "outcome": "stored",
        "id": artwork.pk,
        "title": artwork.title,
        "status": artwork.status,
        "url": reverse("catalogue:artwork-detail", args=[artwork.pk]),
        "status_url": reverse("catalogue:artwork-status", args=[artwork.pk]),
    }
    return JsonResponse(body, status=201)


# --- Search by image: classify an image that is not stored, and find the works like it ---------------------------


@login_required
def image_search(request: HttpRequest) -> HttpResponse:
    """The type of an image with every probability and the most similar works, stored nowhere. The page's script
    (static/js/search_image.js) keeps the file in the browser, asks again for more works or another type (``k``,
    ``type``) and gets only the results part (``X-Requested-With: fetch``); without it, the form posts the page."""
    form = ImageSearchForm(request.POST or None, request.FILES or None)
    result, problem, status, k = None, "", 200, settings.ARTSITE_SIMILAR_COUNT
    if request.method == "POST":
        status = 400
        if form.is_valid():
            k = form.cleaned_data["k"] or k
            chosen = form.cleaned_data["type"]
            try:
                checked = image_check(data=read_upload(form.cleaned_data["image"]))
                result = image_classify(
                    image=checked.decoded.image, k=k, type_slug=chosen.slug if chosen else None
                )
                status = 200
            except ArtworkRejected as exc:
                form.add_error("image", str(exc))
                status = REJECTION_STATUS.get(exc.reason, 400)
            except ModelUnavailable as exc:
                problem, status = f"No model can classify images now: {exc}", 503
    types = artwork_types()
    probabilities = []
    if result is not None:
        probabilities = sorted(
            ((t, result.probabilities.get(t.slug, 0.0)) for t in types), key=lambda i: -i[1]
        )
    context = {
        "form": form,
        "result": result,
        "problem": problem,
        "types_by_id": {t.pk: t for t in types},
        "probabilities": probabilities,
        # A full page may hide more: offer twice as many, up to the most a search gives.
        "more_k": min(2 * k, MAX_SIMILAR) if result and len(result.similar) == k < MAX_SIMILAR else 0,
        "can_upload": request.user.has_perm("catalogue.add_artwork"),
    }
    partial = request.headers.get("X-Requested-With") == "fetch"
    template = "catalogue/_image_search_results.html" if partial else "catalogue/image_search.html"
    return render(request, template, context, status=status)
