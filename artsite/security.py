"""Two defences the framework leaves to the project: log-in attempts are rate-limited, and uploaded files are served
so that nothing in them can run in a browser.

**Log-in rate limit.** After ``ARTSITE_LOGIN_FAILURES`` failed attempts (default 5) for one username from one IP
address, or ``ARTSITE_LOGIN_IP_FAILURES`` (default 50) for any usernames from one IP address, further attempts are
refused for the rest of a ``ARTSITE_LOGIN_WINDOW_SECONDS`` window (default 900 s, counted from the first failure)
without the password being looked at. A successful log-in clears that username's count. Enforced in three layers:

* :class:`LoginRateLimitBackend`, first in ``AUTHENTICATION_BACKENDS``, refuses every ``authenticate()`` call for a
  blocked (IP, username), wherever it comes from (the portal's log-in page, the admin's, anything added later);
* Django's ``user_login_failed`` / ``user_logged_in`` signals count failures and clear counts;
* :func:`login_rate_limited` wraps the log-in views so that a blocked person sees why, with HTTP 429.

Counts live in the broker's Redis, so all web processes (gunicorn workers, containers) share one count. If Redis
cannot be reached, counting falls back to this process's memory: the limit then holds per process, never off.

**Uploaded files.** :func:`media_serve` serves only image files (by extension; every upload was decoded and stored
under the extension of its real format by ``inference.preprocessing``) with an explicit image content type,
``X-Content-Type-Options: nosniff``, ``Content-Disposition`` and a ``Content-Security-Policy`` sandbox, so even a
file that somehow held HTML or SVG would never run as a page; originals (which keep their EXIF, GPS included) only
to curators, everything else to whom ``ARTSITE_MEDIA_REQUIRES_LOGIN`` allows (``catalogue/media_views.py``). With an
object store (``ARTSITE_STORAGE=s3``) the store serves the images through presigned URLs and ``/media/<name>``
redirects to one, after the same checks.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, SuspiciousFileOperation
from django.http import Http404, HttpRequest, HttpResponseBase
from django.utils._os import safe_join

from artsite.broker import broker_redis
from catalogue.media_views import (
    ORIGINALS_PREFIX,
    media_allowed,
    media_response,
    originals_allowed,
    storage_is_local,
)
from catalogue.models import IMAGE_MEDIA_TYPES

logger = logging.getLogger(__name__)

KEY_PREFIX = "artsite:login"


# --- Log-in rate limit ------------------------------------------------------------------------------------------


def _setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


def client_ip(request: HttpRequest) -> str:
    """The client's address: ``REMOTE_ADDR``, or with ``ARTSITE_TRUSTED_PROXIES = n`` (n proxies in front that
    append to ``X-Forwarded-For``), the address the outermost trusted proxy saw."""
    proxies = _setting("ARTSITE_TRUSTED_PROXIES", 0)
    if proxies > 0:
        forwarded = [p.strip() for p in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if p.strip()]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return str(request.META.get("REMOTE_ADDR") or "unknown")


def _keys(ip: str, username: str) -> tuple[str, str]:
    # Hashed: no user names or addresses in Redis key listings.
    pair = hashlib.sha256(f"{ip}\0{username.strip().lower()}".encode()).hexdigest()[:32]
    address = hashlib.sha256(ip.encode()).hexdigest()[:32]
    return f"{KEY_PREFIX}:pair:{pair}", f"{KEY_PREFIX}:ip:{address}"


class _MemoryCounts:
    """The fallback store while Redis is unreachable: {key: (count, expires at)} for this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[int, float]] = {}

    def incr(self, key: str, window: int) -> None:
        now = time.monotonic()
        with self._lock:
            count, expires = self._counts.get(key, (0, now + window))
            if expires <= now:
                count, expires = 0, now + window
            self._counts[key] = (count + 1, expires)

    def get(self, key: str) -> tuple[int, float]:
        """(count, seconds left)."""
        now = time.monotonic()
        with self._lock:
            count, expires = self._counts.get(key, (0, now))
            return (count, expires - now) if expires > now else (0, 0.0)

    def delete(self, key: str) -> None:
        with self._lock:
            self._counts.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()


_memory = _MemoryCounts()


def _redis() -> Any:
    return broker_redis(timeout=0.5)


def login_blocked_for(*, ip: str, username: str) -> int:
    """Seconds until this (IP, username) may try again; 0 when it may now."""
    limits = list(
        zip(
            _keys(ip, username),
            (_setting("ARTSITE_LOGIN_FAILURES", 5), _setting("ARTSITE_LOGIN_IP_FAILURES", 50)),
            strict=True,
        )
    )
    # Counts made in this process while Redis was down still count.
    counts = [(*_memory.get(key), limit) for key, limit in limits]
    try:
        pipe = _redis().pipeline(transaction=False)
        for key, _ in limits:
            pipe.get(key)
            pipe.ttl(key)
        replies = pipe.execute()
        counts += [
            (int(replies[2 * i] or 0), max(1, int(replies[2 * i + 1] or 0)), limit)
            for i, (_, limit) in enumerate(limits)
        ]
    except Exception:
        pass  # Redis unreachable: the memory counts decide
    wait = max((left for count, left, limit in counts if count >= limit), default=0.0)
    return int(wait + 0.999) if wait > 0 else 0


def login_failure_record(*, ip: str, username: str) -> None:
    window = _setting("ARTSITE_LOGIN_WINDOW_SECONDS", 900)
    keys = _keys(ip, username)
    try:
        pipe = _redis().pipeline(transaction=True)
        for key in keys:
            # The window starts at the first failure: SET NX creates the key with its expiry only when it is
            # absent, and INCR keeps the expiry (EXPIRE ... NX would need Redis 7; the embedded one is 6.2).
            pipe.set(key, 0, ex=window, nx=True)
            pipe.incr(key)
        pipe.execute()
    except Exception:
        logger.warning("login rate limit: Redis unreachable, counting in this process only")
        for key in keys:
            _memory.incr(key, window)


def login_success_record(*, ip: str, username: str) -> None:
    """A right password clears the count of that username from that address (not the address's total)."""
    key = _keys(ip, username)[0]
    _memory.delete(key)
    try:
        _redis().delete(key)
    except Exception:
        pass


def login_limits_reset() -> None:
    """Forget every count (tests; or an administrator unblocking people)."""
    _memory.clear()
    try:
        client = _redis()
        keys = list(client.scan_iter(f"{KEY_PREFIX}:*", count=500))
        if keys:
            client.delete(*keys)
    except Exception:
        logger.warning("login rate limit: Redis unreachable, only this process's counts were cleared")


def _on_login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **_: Any
) -> None:
    if request is not None:
        login_failure_record(ip=client_ip(request), username=str(credentials.get("username") or ""))


def _on_logged_in(sender: Any, request: HttpRequest | None, user: Any, **_: Any) -> None:
    if request is not None and user is not None:
        login_success_record(ip=client_ip(request), username=user.get_username())


user_login_failed.connect(_on_login_failed, dispatch_uid="artsite-login-failed")
user_logged_in.connect(_on_logged_in, dispatch_uid="artsite-logged-in")


class LoginRateLimitBackend:
    """First of ``AUTHENTICATION_BACKENDS``: refuses, without looking at the password, while the (IP, username)
    is blocked. Authenticates nobody itself (returns ``None`` so the next backend decides)."""

    def authenticate(self, request: HttpRequest | None, username: str | None = None, **_: Any) -> None:
        if request is not None and login_blocked_for(ip=client_ip(request), username=str(username or "")):
            raise PermissionDenied("too many failed log-in attempts")
        return None

    # No get_user(): sessions never name this backend, and Client.force_login() picks the first backend that has
    # one, which must stay ModelBackend.


def login_rate_limited(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Wrap a log-in view: while the poster is blocked, answer 429 with the empty form and a message saying for how
    long, instead of the usual "wrong password" (which would be a lie when the password was right)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method == "POST":
            wait = login_blocked_for(ip=client_ip(request), username=str(request.POST.get("username", "")))
            if wait:
                minutes = max(1, round(wait / 60))
                messages.error(
                    request,
                    f"Too many failed log-in attempts. Try again in {minutes} minute{'s' if minutes != 1 else ''}.",
                )
                request.method = "GET"  # render the empty form; the password is never checked
                response = view(request, *args, **kwargs)
                response.status_code = 429
                response["Retry-After"] = str(wait)
                return response
        return view(request, *args, **kwargs)

    return wrapped


# --- Uploaded files ---------------------------------------------------------------------------------------------


def media_serve(request: HttpRequest, path: str, document_root: str | None = None) -> HttpResponseBase:
    """``/media/<path>``: only image files, with headers that forbid running anything (an image opened on its own
    becomes a sandboxed, script-less document), and only to whom may see them (catalogue/media_views.py):
    originals to curators, the rest to everyone or — ``ARTSITE_MEDIA_REQUIRES_LOGIN`` — to people logged in."""
    if PurePosixPath(path).suffix.lower() not in IMAGE_MEDIA_TYPES:
        raise Http404("Only images are served from here.")
    if not media_allowed(request.user):
        return redirect_to_login(request.get_full_path())
    if path.startswith(ORIGINALS_PREFIX) and not originals_allowed(request.user):
        raise PermissionDenied("Originals are for curators; pages show the display copy.")
    if not storage_is_local():
        return media_response(request=request, name=PurePosixPath(path).as_posix())
    if document_root is None or not safe_join_exists(document_root, path):
        raise Http404("No such file.")
    return media_response(request=request, name=PurePosixPath(path).as_posix())


def safe_join_exists(root: str, path: str) -> bool:
    """Whether ``path`` names a file inside ``root`` (a path that leads out of it never does)."""
    try:
        full = Path(safe_join(root, path))
    except SuspiciousFileOperation:
        return False
    return full.is_file()
