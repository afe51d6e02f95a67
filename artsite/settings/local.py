"""Local development: `make run`. Debug on, embedded services under var/ unless the environment names real ones."""

from .base import *  # noqa: F403
from .base import INSTALLED_APPS, VAR_DIR, env, services

DEBUG = env.bool("DJANGO_DEBUG", default=True)
DATABASES, CELERY_BROKER_URL = services(VAR_DIR)
# Benchmarks and drills (`make bench-*`, `make faults`, `make loadtest`): never installed in production.
INSTALLED_APPS = [*INSTALLED_APPS, "bench"]
