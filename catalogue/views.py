"""Server-rendered pages. Each view parses input, calls one service or selector, and renders."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from catalogue.filters import ArtworkFilterSet
from catalogue.forms import ArtworkUploadForm, LabelForm
from catalogue.models import Artwork, LabelCorrection
from catalogue.selectors.artworks import (
    artwork_label_history,
    artwork_prediction,
    artwork_types,
    artworks_with_prediction,
    catalogue_counts,
)
from catalogue.selectors.similarity import artwork_similar
from catalogue.services import classification as classification_services
from catalogue.services.artworks import ArtworkRejected, DuplicateArtwork, artwork_create, read_upload
from catalogue.services.labels import label_correct


@login_required
def artwork_list(request: HttpRequest) -> HttpResponse:
    filters = ArtworkFilterSet(request.GET or None, queryset=artworks_with_prediction())
    # An invalid filter (an unknown type typed into the URL) shows its error in the form and filters nothing.
    artworks = filters.qs if filters.is_bound and filters.is_valid() else filters.queryset
    page = Paginator(artworks, 24).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "catalogue/artwork_list.html",
        {
            "form": filters.form,
            "page": page,
            "query": query.urlencode(),
            "types": {t.pk: t for t in artwork_types()},
            "counts": catalogue_counts(),
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
    return render(
        request, "catalogue/artwork_upload.html", {"form": form, "duplicate": duplicate}, status=status
    )


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
            "history": artwork_label_history(artwork=artwork),
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
    next_url = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = reverse("catalogue:artwork-detail", args=[pk])
    return redirect(next_url)
