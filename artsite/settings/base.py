"""Settings shared by every environment. Everything that differs between machines comes from the environment.

Without ``DATABASE_URL`` / ``CELERY_BROKER_URL`` the project starts embedded PostgreSQL and Redis under ``var/``
(see ``artsite/embedded.py``); production requires both variables.
"""

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import environ
from django.core.exceptions import ImproperlyConfigured
from redis.backoff import NoBackoff
from redis.retry import Retry

from artsite import embedded

BASE_DIR = Path(__file__).resolve().parents[2]
env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

VAR_DIR = Path(env("ARTSITE_VAR_DIR", default=str(BASE_DIR / "var")))

SECRET_KEY = env("DJANGO_SECRET_KEY", default="django-insecure-local-development-key-change-me")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from our own static files: the docs work offline
    "csp",
    "catalogue",
    "inference",
    "artsite.apps.ArtsiteConfig",
]

MIDDLEWARE = [
    # First, so its timing covers every other middleware (artsite/metrics.py).
    "artsite.metrics.RequestMetricsMiddleware",
    # Before anything reads the body (the CSRF check does): oversized requests are refused unread (413).
    "artsite.request_limits.RequestBodyLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "artsite.urls"
WSGI_APPLICATION = "artsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database: PostgreSQL with pgvector, never SQLite -------------------------------------------------------
# `services()` below fills DATABASES and the broker: from the environment when given, else embedded servers.
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# The first backend refuses log-ins from an (IP, username) with too many recent failures (artsite/security.py).
AUTHENTICATION_BACKENDS = [
    "artsite.security.LoginRateLimitBackend",
    "django.contrib.auth.backends.ModelBackend",
]
ARTSITE_LOGIN_FAILURES = env.int("ARTSITE_LOGIN_FAILURES", default=5)
ARTSITE_LOGIN_IP_FAILURES = env.int("ARTSITE_LOGIN_IP_FAILURES", default=50)
ARTSITE_LOGIN_WINDOW_SECONDS = env.int("ARTSITE_LOGIN_WINDOW_SECONDS", default=900)
# Proxies in front of the app that append to X-Forwarded-For (0: use the connection's address).
ARTSITE_TRUSTED_PROXIES = env.int("ARTSITE_TRUSTED_PROXIES", default=0)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "catalogue:artwork-list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env("DJANGO_TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Static and media files ---------------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = env("DJANGO_MEDIA_URL", default="/media/")
MEDIA_ROOT = Path(env("DJANGO_MEDIA_ROOT", default=str(VAR_DIR / "media")))

# Images, thumbnails and explanation maps go through the storage API only (default_storage, the fields' storage),
# so web processes and workers on different hosts share them through an object store: ARTSITE_STORAGE=s3 with any
# S3 API (AWS, MinIO, ...). Credentials come from boto3's usual sources (AWS_ACCESS_KEY_ID and
# AWS_SECRET_ACCESS_KEY, an instance role). Images are served by the store through presigned URLs (the web
# process never streams them); AWS_S3_CUSTOM_DOMAIN puts a CDN in front instead (then unsigned).
ARTSITE_STORAGE = env("ARTSITE_STORAGE", default="filesystem")
if ARTSITE_STORAGE == "s3":
    _default_storage: dict[str, Any] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env("AWS_STORAGE_BUCKET_NAME"),
            "endpoint_url": env("AWS_S3_ENDPOINT_URL", default=None),
            "region_name": env("AWS_S3_REGION_NAME", default=None),
            # "path" for MinIO and other stores without one DNS name per bucket; AWS: leave unset.
            "addressing_style": env("AWS_S3_ADDRESSING_STYLE", default=None),
            "signature_version": "s3v4",
            "custom_domain": env("AWS_S3_CUSTOM_DOMAIN", default=None),
            "querystring_expire": env.int("AWS_QUERYSTRING_EXPIRE", default=3600),
            "default_acl": None,
            "file_overwrite": False,
        },
    }
else:
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Uploads --------------------------------------------------------------------------------------------------
ARTSITE_MAX_UPLOAD_BYTES = env.int("ARTSITE_MAX_UPLOAD_BYTES", default=20 * 1024 * 1024)
# More pixels than this is treated as a decompression bomb and refused before decoding.
ARTSITE_MAX_IMAGE_PIXELS = env.int("ARTSITE_MAX_IMAGE_PIXELS", default=60_000_000)
ARTSITE_THUMBNAIL_SIZE = env.int("ARTSITE_THUMBNAIL_SIZE", default=320)
# The copy pages and the API show (no EXIF or GPS; the original is for curators), at most this many pixels a side.
ARTSITE_DISPLAY_SIZE = env.int("ARTSITE_DISPLAY_SIZE", default=1600)
# Django's own limit must not cut an upload short before our service can give the proper error.
DATA_UPLOAD_MAX_MEMORY_SIZE = ARTSITE_MAX_UPLOAD_BYTES + 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# The first handler counts each file's bytes as they stream in and stops the upload past the limit (413,
# artsite/request_limits.py); larger declared bodies are refused unread by its middleware.
FILE_UPLOAD_HANDLERS = [
    "artsite.request_limits.UploadLimitHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
# Whether uploaded images (thumbnails, display copies) need a log-in; originals always need a curator.
ARTSITE_MEDIA_REQUIRES_LOGIN = env.bool("ARTSITE_MEDIA_REQUIRES_LOGIN", default=False)
# Behind nginx (deploy/nginx.conf): Django decides who may see a file and answers with an X-Accel-Redirect under this
# internal prefix; nginx sends the bytes. Empty: Django streams them itself.
ARTSITE_MEDIA_ACCEL_PREFIX = env("ARTSITE_MEDIA_ACCEL_PREFIX", default="")

# --- Models -----------------------------------------------------------------------------------------------------
# Folders holding model versions (one sub-folder per version with model.keras and card.json). The first is the
# shipped one, in the repository; the last is where `train_model` writes new versions.
ARTSITE_MODEL_DIRS = [
    Path(p)
    for p in env.list(
        "ARTSITE_MODEL_DIRS", default=[str(BASE_DIR / "inference" / "weights"), str(VAR_DIR / "models")]
    )
]
# The version activated when none is active yet (a fresh database).
ARTSITE_DEFAULT_MODEL = env("ARTSITE_DEFAULT_MODEL", default="")
ARTSITE_SIMILAR_COUNT = 5

# IIIF manifests and collections (/iiif/, catalogue/iiif/): public (any viewer on any site may load them and their
# images), or only for accounts that may view artworks (a portal session or an API token).
ARTSITE_IIIF_PUBLIC = env.bool("ARTSITE_IIIF_PUBLIC", default=False)
# A IIIF collection is a tree of id ranges (catalogue/iiif/builder.py): a page is a nested Collection of the works
# of PAGE_SIZE consecutive ids; the top and every larger range list at most FANOUT nested Collections.
ARTSITE_IIIF_PAGE_SIZE = env.int("ARTSITE_IIIF_PAGE_SIZE", default=100)
ARTSITE_IIIF_FANOUT = env.int("ARTSITE_IIIF_FANOUT", default=100)

# TensorFlow threads per process (0: one per CPU) and XLA compilation (slower on this kind of CPU, so off).
ARTSITE_TF_THREADS = env.int("ARTSITE_TF_THREADS", default=0)
ARTSITE_TF_JIT = env.bool("ARTSITE_TF_JIT", default=False)

# --- Celery -----------------------------------------------------------------------------------------------------
CELERY_TASK_ACKS_LATE = True
# A worker killed mid-task (OOM, SIGKILL) must not lose the artwork: the message goes back to the queue.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=120)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=180)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # How long an unacknowledged task waits before Redis hands it to another worker.
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=600),
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    "max_retries": 1,
}
CELERY_TASK_ALWAYS_EAGER = False
# Long jobs (training a model version, checking the labels) run on a queue of their own, served by a worker of their
# own (one job at a time, TensorFlow loaded), so classification never waits behind them.
ARTSITE_TRAINING_QUEUE = env("ARTSITE_TRAINING_QUEUE", default="training")
CELERY_TASK_ROUTES = {
    "catalogue.tasks.training_job_run": {"queue": ARTSITE_TRAINING_QUEUE},
    "catalogue.tasks.label_check_run": {"queue": ARTSITE_TRAINING_QUEUE},
    "catalogue.tasks.near_duplicates_scan": {"queue": ARTSITE_TRAINING_QUEUE},
}
# How long a training job may run (seconds) before its worker stops it: the soft limit a minute earlier lets it
# record why; a job whose worker is killed by the hard limit is marked failed by the next start or cancel.
ARTSITE_TRAINING_TIME_LIMIT = env.int("ARTSITE_TRAINING_TIME_LIMIT", default=6 * 3600)
# Each worker process loads the active model when it starts rather than on its first task.
ARTSITE_WARM_MODEL_ON_START = env.bool("ARTSITE_WARM_MODEL_ON_START", default=True)
# Classification in batches, under a claim (catalogue/services/classification.py): a task takes every work waiting,
# up to a batch, into one model call; a worker holds its works for a lease it renews every third of it, so the works
# of a worker that died are handed on by the sweep within a lease plus a sweep period (seconds), never twice at once.
ARTSITE_CLASSIFY_BATCH = env.int("ARTSITE_CLASSIFY_BATCH", default=32)
# Threads reading and decoding a batch.
ARTSITE_CLASSIFY_READERS = env.int("ARTSITE_CLASSIFY_READERS", default=4)
ARTSITE_CLAIM_LEASE_SECONDS = env.int("ARTSITE_CLAIM_LEASE_SECONDS", default=6)
ARTSITE_PENDING_GRACE_SECONDS = env.int("ARTSITE_PENDING_GRACE_SECONDS", default=5)
CELERY_BEAT_SCHEDULE = {
    # Nothing stays pending: works stored while the broker was down, or held by a worker that died, go through
    # within seconds (the sweep is one cheap query when nothing waits).
    "requeue-pending": {
        "task": "catalogue.tasks.requeue_pending",
        "schedule": env.int("ARTSITE_SWEEP_SECONDS", default=3),
    },
    # The mislabel detector runs again once enough labels were added or changed since its last run.
    "label-check-if-due": {
        "task": "catalogue.tasks.label_check_if_due",
        "schedule": env.int("ARTSITE_LABEL_CHECK_SWEEP_SECONDS", default=600),
    },
    # A version that became active (by any path) gets its collection map computed within this many seconds.
    "map-layout-if-missing": {
        "task": "catalogue.tasks.map_layout_if_missing",
        "schedule": env.int("ARTSITE_MAP_SWEEP_SECONDS", default=120),
    },
}
# A label check starts by itself after this many works had their label added, changed or confirmed since the last
# one, or — before the first — once this many works are labelled; and stops (failed) after this many seconds.
ARTSITE_LABEL_CHECK_AFTER = env.int("ARTSITE_LABEL_CHECK_AFTER", default=100)
ARTSITE_LABEL_CHECK_MIN_LABELS = env.int("ARTSITE_LABEL_CHECK_MIN_LABELS", default=50)
ARTSITE_LABEL_CHECK_TIME_LIMIT = env.int("ARTSITE_LABEL_CHECK_TIME_LIMIT", default=6 * 3600)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- REST API -----------------------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "catalogue.api.authentication.BearerOrTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    # Every API error is JSON of one shape: {"status", "code", "message", "fields"} (catalogue/api/exceptions.py).
    "EXCEPTION_HANDLER": "catalogue.api.exceptions.api_exception_handler",
    "PAGE_SIZE": 24,
    "DEFAULT_THROTTLE_RATES": {
        "classify": env("ARTSITE_THROTTLE_CLASSIFY", default="600/min"),
        "upload": env("ARTSITE_THROTTLE_UPLOAD", default="240/min"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Artsite API",
    "DESCRIPTION": "Catalogue artworks, classify their type and find similar works.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "ArtworkStatusEnum": "catalogue.models.Artwork.Status",
        "ModelVersionStatusEnum": "inference.models.ModelVersion.Status",
    },
}

# --- Operations (artsite/health.py, artsite/metrics.py) ------------------------------------------------------------
# When set, GET /metrics needs `Authorization: Bearer <token>`; unset, it is open like /healthz.
ARTSITE_METRICS_TOKEN = env("ARTSITE_METRICS_TOKEN", default="")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("DJANGO_LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}, "pgserver": {"level": "WARNING"}},
}


def services(var_dir: Path, *, allow_embedded: bool = True) -> tuple[dict, str]:
    """The database settings and the Celery broker URL: from DATABASE_URL / CELERY_BROKER_URL when set, otherwise
    embedded PostgreSQL and Redis under ``var_dir`` (started on first use, shared by every process)."""

    if env("DATABASE_URL", default=""):
        database = env.db("DATABASE_URL")
        database["CONN_MAX_AGE"] = env.int("DJANGO_CONN_MAX_AGE", default=60)
        database["CONN_HEALTH_CHECKS"] = True
    elif allow_embedded:
        database = embedded.postgres_settings(
            var_dir / "postgres", env("ARTSITE_DATABASE_NAME", default="artsite")
        )
    else:
        raise ImproperlyConfigured("Set DATABASE_URL (postgres://...) for this environment.")
    broker = env("CELERY_BROKER_URL", default="")
    if not broker:
        if not allow_embedded:
            raise ImproperlyConfigured("Set CELERY_BROKER_URL (redis://...) for this environment.")
        broker = embedded.redis_url(var_dir / "redis")
    return {"default": database}, broker


def caches(broker: str) -> dict[str, Any]:
    """Django's caches. ``default``: this process's memory (the API's throttle counts, the map's built points).
    ``shared``: Redis, seen alike by every web process and worker — figures a page may show as they were computed a
    moment ago (the model's agreement with the labels, ``catalogue/selectors/curation.py``). On
    ``ARTSITE_CACHE_URL``, by default database 1 of the broker's Redis: clearing the cache never touches Celery's
    queues (database 0). Short timeouts and no retries: while Redis is down the pages compute the figures instead
    (``catalogue.selectors.curation``), and must learn that at once."""
    url = env("ARTSITE_CACHE_URL", default="")
    if not url:
        if broker.startswith("redis+socket://"):  # kombu's form for the embedded server's Unix socket
            url = f"unix://{broker.removeprefix('redis+socket://').split('?', 1)[0]}?db=1"
        else:
            url = urlunsplit(urlsplit(broker)._replace(path="/1"))
    return {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "shared": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": "artsite",
            "OPTIONS": {"socket_timeout": 1.0, "socket_connect_timeout": 1.0, "retry": Retry(NoBackoff(), 0)},
        },
    }


# --- Content-Security-Policy (django-csp) ---------------------------------------------------------------------------
# Pages run only scripts from our own static files: no inline <script>, no on...= handlers (static/js/*.js attach
# them). Inline style *attributes* stay allowed: the bars and swatches are sized by data (style="width: 42%").
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "style-src-attr": ["'unsafe-inline'"],
        "img-src": ["'self'", "data:", "blob:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
# Text search (catalogue/selectors/search.py, docs/search.md): PostgreSQL's text-search configuration. "simple"
# (no stemming, no stop words) suits a catalogue whose titles mix languages; prefix matching covers plurals. The
# migration catalogue/0010 builds the stored document with it: changing it needs the column rebuilt (docs/search.md).
ARTSITE_SEARCH_CONFIG = env("ARTSITE_SEARCH_CONFIG", default="simple")
