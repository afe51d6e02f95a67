"""Accounts the site needs to start: the curator account of ``make run``."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group


def curator_ensure(*, username: str, password: str) -> tuple[Any, bool]:
    """Make sure a curator account exists (staff, in the Curators group). Returns (user, created)."""

    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(username=username, defaults={"is_staff": True})
    if created:
        user.set_password(password)
        user.save()
    user.groups.add(Group.objects.get(name="Curators"))
    return user, created
