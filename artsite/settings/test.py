"""Tests: the real PostgreSQL (embedded unless DATABASE_URL is set) and the real Redis; media in a temp folder."""

import tempfile
from pathlib import Path

from .base import *  # noqa: F403
from .base import ARTSITE_STORAGE, INSTALLED_APPS, REST_FRAMEWORK, STORAGES, VAR_DIR, caches, env, services

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Test servers of their own, so a running `make run` worker never takes a test's tasks (and vice versa).
DATABASES, CELERY_BROKER_URL = services(Path(env("ARTSITE_TEST_VAR_DIR", default=str(VAR_DIR / "test"))))
CACHES = caches(CELERY_BROKER_URL)
# Worker processes started by tests inherit the parent's media folder through DJANGO_MEDIA_ROOT.
MEDIA_ROOT = Path(env("DJANGO_MEDIA_ROOT", default="") or tempfile.mkdtemp(prefix="artsite-test-media-"))
# Static files are found by the finders in tests; no collectstatic.
STATIC_ROOT = None  # type: ignore[assignment]
WHITENOISE_USE_FINDERS = True
STORAGES = {
    # Worker and web processes that tests start against an S3 server get ARTSITE_STORAGE=s3 (tests/ops/conftest.py).
    "default": STORAGES["default"]
    if ARTSITE_STORAGE == "s3"
    else {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Tests exercise throttling explicitly; the default rates must not trip ordinary tests.
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {"classify": "10000/min", "upload": "10000/min"},
}
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=5),
    "socket_connect_timeout": 1,
    "socket_timeout": 2,
    "max_retries": 0,
    # Look for unacknowledged messages of dead workers every second (default: every ~100 s).
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}
# Benchmarks and drills (`make bench-*`, `make faults`, `make loadtest`): never installed in production.
INSTALLED_APPS = [*INSTALLED_APPS, "bench"]
ARTSITE_DEV_CURATOR_ALLOWED = True
