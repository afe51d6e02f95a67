"""The catalogue's types in the admin: curators add a type (a label at once; learned by the next trained version once
it has enough verified works) and rename one, through :mod:`catalogue.services.artwork_types`. A type in use is
never deleted; the slug of a type a model version knows never changes.

Who may: users with the type permissions, and curators (``catalogue.change_artwork``, the permission every
curator's page checks), so that the Curators group needs no new permission rows.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from catalogue.models import ArtworkType
from catalogue.selectors.training import MIN_VERIFIED_TO_LEARN, artwork_types_with_verified
from catalogue.services.artwork_types import (
    artwork_type_create,
    artwork_type_delete,
    artwork_type_update,
    artwork_type_uses,
    artwork_type_validate,
)
from inference.classes import CLASSES


class ArtworkTypeForm(forms.ModelForm):
    class Meta:
        model = ArtworkType
        fields = ("name", "slug")
        help_texts = {
            "slug": "Lower case, digits and underscores (made from the name when empty). It is the name models use "
            "for the type: it cannot change once a model version knows the type.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["slug"].required = False

    def validate_unique(self) -> None:
        """The service checks names and slugs (case-insensitively, and against singular and plural forms)."""

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        # self.instance still holds the stored values here (the form copies its data onto it after clean()).
        existing = self.instance if self.instance.pk else None
        data["name"], data["slug"] = artwork_type_validate(
            name=data.get("name") or "", slug=data.get("slug") or "", artwork_type=existing
        )
        return data


@admin.register(ArtworkType)
class ArtworkTypeAdmin(admin.ModelAdmin):
    form = ArtworkTypeForm
    list_display = ("name", "slug", "position", "verified_works", "learning")
    actions = None  # no bulk delete: a type is deleted one at a time, and only when nothing uses it

    def get_queryset(self, request: HttpRequest) -> Any:
        return artwork_types_with_verified(super().get_queryset(request))

    @staticmethod
    def _curator(request: HttpRequest) -> bool:
        return bool(request.user.has_perm("catalogue.change_artwork"))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._curator(request) or super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._curator(request) or super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._curator(request) or super().has_delete_permission(request, obj)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple[Any, Any, Any, list[Any]]:
        """A type in use is "protected": the delete page says what uses it and deletes nothing."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        uses = [f"{obj.name}: used by {use}" for obj in objs for use in artwork_type_uses(artwork_type=obj)]
        if uses:
            # What uses it, rather than which related rows the user may not delete: it is never deleted anyway.
            return deleted, counts, set(), [*protected, *uses]
        return deleted, counts, perms_needed, list(protected)

    def save_model(self, request: HttpRequest, obj: ArtworkType, form: Any, change: bool) -> None:
        if change:
            original = ArtworkType.objects.get(pk=obj.pk)
            artwork_type_update(artwork_type=original, name=obj.name, slug=obj.slug)
        else:
            obj.pk = artwork_type_create(name=obj.name, slug=obj.slug).pk
        obj.refresh_from_db()

    def delete_model(self, request: HttpRequest, obj: ArtworkType) -> None:
        artwork_type_delete(artwork_type=obj)

    @admin.display(description="verified works", ordering="n_verified")
    def verified_works(self, obj: ArtworkType) -> int:
        return int(getattr(obj, "n_verified", 0))

    @admin.display(description="next trained version")
    def learning(self, obj: ArtworkType) -> str:
        if obj.slug in CLASSES:
            return "learns it (a default type)"
        needed = MIN_VERIFIED_TO_LEARN - self.verified_works(obj)
        return "learns it" if needed <= 0 else f"needs {needed} more verified works"
