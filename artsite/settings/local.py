"""Local development: `make run`. Debug on, embedded services under var/ unless the environment names real ones."""

from .base import *  # noqa: F403
from .base import INSTALLED_APPS, STORAGES, VAR_DIR, caches, env, services

DEBUG = env.bool("DJANGO_DEBUG", default=True)
DATABASES, CELERY_BROKER_URL = services(VAR_DIR)
CACHES = caches(CELERY_BROKER_URL)
# Benchmarks and drills (`make bench-*`, `make faults`, `make loadtest`): never installed in production.
INSTALLED_APPS = [*INSTALLED_APPS, "bench"]
# `make run` may create the curator / curator account (setup_site --dev-curator); no other environment may.
ARTSITE_DEV_CURATOR_ALLOWED = True
# Hashed static file names, as in production (`make run` collects the static files first).
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}}
