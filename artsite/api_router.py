"""Every REST endpoint, under /api/v1/ (see catalogue/api/): one router for the resources, plain views for actions."""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from catalogue.api import collection_views, exports, views
from catalogue.api.exceptions import api_not_found

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("artworks", views.ArtworkViewSet, basename="api-artwork")
router.register("types", views.ArtworkTypeViewSet, basename="api-type")
router.register("models", views.ModelVersionViewSet, basename="api-model")
router.register("mislabels", views.MislabelViewSet, basename="api-mislabel")
router.register("bulk-edits", collection_views.BulkEditViewSet, basename="api-bulk-edit")
router.register("near-duplicates", collection_views.NearDuplicateViewSet, basename="api-near-duplicate")

urlpatterns = [
    path("classify/", views.ClassifyView.as_view(), name="api-classify"),
    path(
        "artworks/<int:pk>/history/",
        collection_views.ArtworkHistoryView.as_view(),
        name="api-artwork-history",
    ),
    path("artworks/bulk-edit/", collection_views.BulkEditCreateView.as_view(), name="api-bulk-edit-create"),
    # Streamed exports (catalogue/api/exports.py); before the router, whose artworks/<pk>/ takes only digits anyway.
    path("artworks/export/", exports.ArtworkExportView.as_view(), name="api-artwork-export"),
    path(
        "label-corrections/export/",
        exports.LabelCorrectionExportView.as_view(),
        name="api-label-correction-export",
    ),
    *router.urls,
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up script as a file: the Content-Security-Policy allows no inline script.
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    # Last: any other path under /api/v1/ answers a JSON 404 (also with DEBUG on, where Django would show HTML).
    re_path(r"^(?P<path>.*)$", api_not_found),
]
