from typing import Any

from django import forms

from catalogue.models import (
    ACCESSION_MAX_LENGTH,
    ARTIST_MAX_LENGTH,
    DATE_MAX_LENGTH,
    DESCRIPTION_MAX_LENGTH,
    TITLE_MAX_LENGTH,
    ArtworkType,
)
from catalogue.services.mislabels import MislabelDecision
from inference.preprocessing import ALLOWED_EXTENSIONS


class ArtworkUploadForm(forms.Form):
    image = forms.FileField(
        help_text="JPEG, PNG, WebP or TIFF, up to 20 MB.",
        widget=forms.ClearableFileInput(attrs={"accept": ",".join(sorted(ALLOWED_EXTENSIONS))}),
    )
    title = forms.CharField(max_length=TITLE_MAX_LENGTH)
    artist = forms.CharField(max_length=ARTIST_MAX_LENGTH, required=False)
    date = forms.CharField(
        max_length=DATE_MAX_LENGTH, required=False, help_text="As catalogues write it: “c. 1650”."
    )
    accession_number = forms.CharField(max_length=ACCESSION_MAX_LENGTH, required=False)
    description = forms.CharField(
        max_length=DESCRIPTION_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 3}), required=False
    )


class LabelForm(forms.Form):
    type = forms.ModelChoiceField(
        ArtworkType.objects.all(), to_field_name="slug", empty_label="Choose a type"
    )
    note = forms.CharField(
        max_length=1000,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "Note (optional): why?"}),
    )


class MislabelDecisionForm(forms.Form):
    """A decision in the possible-mislabels queue. The type buttons send only ``type`` (a button sends one name),
    which means the decision ``type``."""

    decision = forms.ChoiceField(choices=MislabelDecision.choices, required=False)
    type = forms.ModelChoiceField(ArtworkType.objects.all(), to_field_name="slug", required=False)
    note = forms.CharField(max_length=1000, required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not data.get("decision") and data.get("type") is not None:
            data["decision"] = MislabelDecision.TYPE
        if not data.get("decision"):
            raise forms.ValidationError(
                "Keep the label, take the suggestion or choose a type.", code="required"
            )
        if data["decision"] == MislabelDecision.TYPE and data.get("type") is None:
            self.add_error("type", forms.ValidationError("Choose a type.", code="required"))
        return data


class BulkEditForm(forms.Form):
    """The catalogue's bulk edit: what to set, and on which works (ticked ones, or all the filter shows)."""

    scope = forms.ChoiceField(
        choices=[("ids", "The works ticked"), ("filter", "Every work the filter shows")]
    )
    ids = forms.TypedMultipleChoiceField(coerce=int, required=False, choices=[])
    filter = forms.CharField(required=False, max_length=2000)
    artist = forms.CharField(max_length=300, required=False)
    date = forms.CharField(max_length=100, required=False)
    type = forms.ModelChoiceField(ArtworkType.objects.all(), to_field_name="slug", required=False)
    note = forms.CharField(max_length=2000, required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Any id a bigint can hold is a choice: the service reads only the ones that exist.
        self.fields["ids"].valid_value = lambda value: str(value).isdigit() and int(value) < 2**63  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("scope") == "ids" and not data.get("ids"):
            raise forms.ValidationError("Tick the works to edit, or choose “every work the filter shows”.")
        return data


class ArtworkEditForm(forms.Form):
    """An artwork's metadata in the portal; every changed field goes to its history."""

    title = forms.CharField(max_length=300)
    artist = forms.CharField(max_length=300, required=False)
    date = forms.CharField(max_length=100, required=False)
    accession_number = forms.CharField(max_length=100, required=False)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)


class ArtworkFileForm(forms.Form):
    """One file of a multi-file upload (the upload page's JavaScript sends one request per file): its title, and the
    metadata shared by the batch."""

    image = forms.FileField()
    title = forms.CharField(max_length=300)
    artist = forms.CharField(max_length=300, required=False)
    date = forms.CharField(max_length=100, required=False)
    type = forms.ModelChoiceField(
        ArtworkType.objects.all(), to_field_name="slug", required=False, empty_label="Let the model decide"
    )


class ImageSearchForm(forms.Form):
    """The search-by-image page: an image (not stored), and which similar works to show."""

    image = forms.FileField(
        help_text="JPEG, PNG, WebP or TIFF, up to 20 MB. Not stored unless you add it to the catalogue.",
        widget=forms.ClearableFileInput(attrs={"accept": ",".join(sorted(ALLOWED_EXTENSIONS))}),
    )
    type = forms.ModelChoiceField(
        ArtworkType.objects.all(),
        to_field_name="slug",
        required=False,
        empty_label="Similar works of any type",
    )
    k = forms.IntegerField(min_value=1, max_value=50, required=False, widget=forms.HiddenInput)
