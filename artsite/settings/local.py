"""Local development: `make run`. Debug on, embedded services unless the environment names real ones."""

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
