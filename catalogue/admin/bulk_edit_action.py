"""The admin's bulk edit: an action on the artwork list with an intermediate form that sets artist, date, a type or
a note on the selected works through :func:`catalogue.services.bulk_edits.bulk_edit_apply` (one undoable edit)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from catalogue.models import Artwork, ArtworkType, LabelCorrection
from catalogue.services.bulk_edits import BULK_FIELDS, BulkEditRefused, BulkValues, bulk_edit_apply


class BulkEditAdminForm(forms.Form):
    artist = forms.CharField(max_length=BULK_FIELDS["artist"], required=False)
    date = forms.CharField(max_length=BULK_FIELDS["date"], required=False)
    type = forms.ModelChoiceField(ArtworkType.objects.all(), required=False, empty_label="(keep)")
    note = forms.CharField(
        max_length=BULK_FIELDS["note"], required=False, help_text="Appended to each work's notes."
    )


@admin.action(
    description="Edit the selected works at once (artist, date, type, note)…", permissions=["change"]
)
def bulk_edit(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Artwork]
) -> HttpResponse | None:
    """First the form (an intermediate page), then, once it is sent with ``apply``, one bulk edit of the works."""
    form = BulkEditAdminForm(request.POST if "apply" in request.POST else None)
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        ids = sorted(queryset.values_list("pk", flat=True))
        try:
            done = bulk_edit_apply(
                artworks=Artwork.objects.filter(pk__in=ids),
                values=BulkValues(
                    artist=data["artist"] or None,
                    date=data["date"] or None,
                    artwork_type=data["type"],
                    note=data["note"] or None,
                ),
                selection={"ids": ids},
                user=request.user,
                source=LabelCorrection.Source.ADMIN,
            )
        except BulkEditRefused as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            modeladmin.message_user(
                request,
                f"Bulk edit #{done.pk}: {done.changed} of {done.count} works changed (undo it on the Bulk edits page).",
                messages.SUCCESS,
            )
            return None
    return TemplateResponse(
        request,
        "admin/catalogue/bulk_edit.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": "Edit the selected works at once",
            "form": form,
            "queryset": queryset,
            "count": queryset.count(),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "opts": modeladmin.model._meta,
        },
    )
