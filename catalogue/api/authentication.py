"""Token authentication that accepts both ``Authorization: Token <key>`` and ``Authorization: Bearer <key>``.

The seed project's clients send Bearer tokens; DRF's TokenAuthentication only knows the ``Token`` keyword.
"""

from rest_framework.authentication import TokenAuthentication, get_authorization_header
from rest_framework.request import Request


class BearerOrTokenAuthentication(TokenAuthentication):
    def authenticate(self, request: Request):  # type: ignore[no-untyped-def]
        auth = get_authorization_header(request).split()
        if auth and auth[0].lower() == b"bearer":
            auth[0] = self.keyword.encode()
            request.META["HTTP_AUTHORIZATION"] = b" ".join(auth).decode(errors="replace")
        return super().authenticate(request)
