"""The IIIF routes, mounted at /iiif/ by artsite/urls.py (names without a namespace: builder.py reverses them)."""

from django.urls import path

from catalogue.iiif import views

urlpatterns = [
    path("artworks/<int:pk>/manifest.json", views.ManifestView.as_view(), name="iiif-manifest"),
    path("artworks/<int:pk>/annotations.json", views.AnnotationPageView.as_view(), name="iiif-annotations"),
    path("artworks/<int:pk>/image", views.ImageView.as_view(), name="iiif-image"),
    path("artworks/<int:pk>/thumbnail.jpg", views.ThumbnailView.as_view(), name="iiif-thumbnail"),
    path("collection.json", views.CollectionView.as_view(), name="iiif-collection"),
    path(
        "collection/<int:first>-<int:last>.json",
        views.CollectionRangeView.as_view(),
        name="iiif-collection-range",
    ),
    path("collection/<int:number>.json", views.CollectionPageView.as_view(), name="iiif-collection-page"),
    path("context.json", views.ContextView.as_view(), name="iiif-context"),
]
