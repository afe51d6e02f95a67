from django.urls import path

from catalogue import curation_views, map_views, model_views, views

app_name = "catalogue"
urlpatterns = [
    path("", views.artwork_list, name="artwork-list"),
    path("artworks/upload/", views.artwork_upload, name="artwork-upload"),
    path("artworks/<int:pk>/", views.artwork_detail, name="artwork-detail"),
    path("artworks/<int:pk>/status/", views.artwork_status, name="artwork-status"),
    path("artworks/<int:pk>/retry/", views.artwork_retry, name="artwork-retry"),
    path("artworks/<int:pk>/label/", views.artwork_label, name="artwork-label"),
    path("artworks/<int:pk>/explain/<slug:slug>.png", views.artwork_explanation, name="artwork-explanation"),
    path("artworks/<int:pk>/confirm/", views.artwork_confirm, name="artwork-confirm"),
    # Curation (catalogue/curation_views.py)
    path("review/", curation_views.review_queue, name="review"),
    path("review/<int:pk>/label/", curation_views.review_label, name="review-label"),
    path("review/<int:pk>/skip/", curation_views.review_skip, name="review-skip"),
    path("review/reset/", curation_views.review_reset, name="review-reset"),
    path("mislabels/", curation_views.mislabel_queue, name="mislabels"),
    path("mislabels/<int:pk>/decide/", curation_views.mislabel_decide, name="mislabels-decide"),
    path("mislabels/<int:pk>/skip/", curation_views.mislabel_skip, name="mislabels-skip"),
    path("mislabels/reset/", curation_views.mislabel_reset, name="mislabels-reset"),
    path("mislabels/check/", curation_views.label_check_start, name="label-check-start"),
    path("quality/", curation_views.quality, name="quality"),
    path("quality/retry/", curation_views.quality_retry, name="quality-retry"),
    path("map/", map_views.collection_map, name="map"),
    # Models: training a new version, the gate, activation (catalogue/model_views.py)
    path("models/", model_views.models_page, name="models"),
    path("models/train/", model_views.training_start, name="training-start"),
    path("models/jobs/<int:job_id>/status/", model_views.training_job_status, name="training-status"),
    path("models/jobs/<int:job_id>/cancel/", model_views.training_cancel, name="training-cancel"),
    path("models/jobs/<int:job_id>/activate/", model_views.training_activate, name="training-activate"),
    # The collection map (catalogue/map_views.py)
    path("map/points/<str:version>/", map_views.map_points, name="map-points"),
    path("map/works/", map_views.map_works, name="map-works"),
    path("map/layout/", map_views.map_layout_start, name="map-layout-start"),
]
