"""Token authentication that accepts both ``Authorization: Token <key>`` and ``Authorization: Bearer <key>``.

The seed project's clients send Bearer tokens; DRF's TokenAuthentication only knows the ``Token`` keyword. Tokens
are DRF's (``rest_framework.authtoken``): made in the admin or with ``python manage.py drf_create_token USER``.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication, get_authorization_header
from rest_framework.request import Request


class BearerOrTokenAuthentication(TokenAuthentication):
    keywords = (b"token", b"bearer")

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        # DRF reads the header through ``request.headers`` (computed once), so rewriting ``META`` to turn "Bearer"
        # into "Token" does not work; parse both keywords here with DRF's own messages.
        auth = get_authorization_header(request).split()
        if not auth or auth[0].lower() not in self.keywords:
            return None
        if len(auth) == 1:
            raise exceptions.AuthenticationFailed(_("Invalid token header. No credentials provided."))
        if len(auth) > 2:
            raise exceptions.AuthenticationFailed(
                _("Invalid token header. Token string should not contain spaces.")
            )
        try:
            key = auth[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed(
                _("Invalid token header. Token string should not contain invalid characters.")
            ) from None
        return self.authenticate_credentials(key)


class BearerOrTokenScheme(OpenApiAuthenticationExtension):
    """In the OpenAPI schema: two alternative schemes, ``Token <key>`` and ``Bearer <key>``."""

    target_class = "catalogue.api.authentication.BearerOrTokenAuthentication"
    name = ["tokenAuth", "bearerAuth"]

    def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list[Any]]]:
        return [{"tokenAuth": []}, {"bearerAuth": []}]  # either one (OR), not both

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, Any]]:
        token = build_bearer_security_scheme_object(header_name="Authorization", token_prefix="Token")
        token["description"] = (
            "`Authorization: Token <key>`; keys from `python manage.py drf_create_token USER`."
        )
        return [token, {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <key>`."}]
