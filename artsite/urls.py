from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from artsite import health, metrics, security
from catalogue.api.compat import SeedPredictView

urlpatterns = [
    # Operations: no login (load balancers, compose healthchecks, Prometheus); see artsite/health.py, metrics.py.
    path("healthz", health.healthz_view, name="healthz"),
    path("readyz", health.readyz_view, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    # Both log-in pages are rate-limited (artsite/security.py); the admin's is matched before admin.site.urls.
    path("admin/login/", security.login_rate_limited(admin.site.login)),
    path("admin/", admin.site.urls),
    path("accounts/login/", security.login_rate_limited(auth_views.LoginView.as_view()), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/v1/", include("artsite.api_router")),
    # IIIF manifests and collections (catalogue/iiif/), and the seed project's route (catalogue/api/compat.py).
    path("iiif/", include("catalogue.iiif.urls")),
    path("predict/", SeedPredictView.as_view(), name="seed-predict"),
    path("", include("catalogue.urls")),
]

# Media: from the local filesystem storage, only images, with headers that keep anything in them from running; with
# an object store (ARTSITE_STORAGE=s3) a redirect to a presigned URL, so /media/<name> works on every web process
# (artsite/security.py). In production behind a proxy, the proxy serves a local /media/ instead.
urlpatterns += [
    path(
        f"{settings.MEDIA_URL.strip('/')}/<path:path>",
        security.media_serve,
        {"document_root": settings.MEDIA_ROOT},
    )
]

# JSON for /api/ paths, Django's pages elsewhere (catalogue/api/exceptions.py).
handler404 = "catalogue.api.exceptions.handler404"
handler500 = "catalogue.api.exceptions.handler500"
