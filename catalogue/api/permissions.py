"""Who may do what, from Django's model permissions (the groups seeded by catalogue/0002 hold them):
Viewers have ``view_*``, Curators also ``add_artwork``, ``change_artwork`` and ``delete_artwork``.

Each view names the permissions of its actions in ``required_permissions`` (keyed by ViewSet action, or by HTTP
method for plain APIViews); an action without an entry is refused, except the read-only ones, which need
``read_permissions``.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request


class ActionPermissions(BasePermission):
    message = "Your account may not do this; ask an administrator to add you to the Curators group."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False  # DRF answers 401 (not 403) because an authenticator could have succeeded
        method = request.method.lower()
        if method not in view.http_method_names or not hasattr(view, method):
            return True  # the view answers 405 Method Not Allowed
        action = getattr(view, "action", None) or method
        perms = getattr(view, "required_permissions", {}).get(action)
        if perms is None:
            perms = getattr(view, "read_permissions", None) if request.method in SAFE_METHODS else None
        if perms is None:
            return False
        return user.has_perms(perms)
