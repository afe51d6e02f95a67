"""Production: every secret and service comes from the environment; nothing embedded, nothing insecure."""

from .base import *  # noqa: F403
from .base import STORAGES, VAR_DIR, caches, env, services

DEBUG = False
SECRET_KEY = env("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
# Healthchecks and scrapes come over plain HTTP from inside the network, not through the TLS proxy.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 30)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

DATABASES, CELERY_BROKER_URL = services(VAR_DIR, allow_embedded=False)
CACHES = caches(CELERY_BROKER_URL)

# --- Hardened edges (README "Security") -------------------------------------------------------------------------
# Prometheus scrapes must authenticate: an open /metrics tells anyone the traffic, queues and collection size.
ARTSITE_METRICS_TOKEN = env("ARTSITE_METRICS_TOKEN")
# Uploaded images are not public: thumbnails and display copies need a log-in (originals always need a curator).
ARTSITE_MEDIA_REQUIRES_LOGIN = env.bool("ARTSITE_MEDIA_REQUIRES_LOGIN", default=True)
# Hashed static file names (cacheable for ever; a new release never serves an old script).
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}}
