from django.urls import path

from catalogue import (
    collection_views,
    curation_views,
    export_views,
    map_views,
    media_views,
    model_views,
    views,
)

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
    # Images: the display copy without metadata, the original for curators (catalogue/media_views.py)
    path("artworks/<int:pk>/display.jpg", media_views.artwork_display_image, name="artwork-display"),
    path("artworks/<int:pk>/original/", media_views.artwork_original, name="artwork-original"),
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
    # Bulk edits and the photos of one work (catalogue/collection_views.py)
    path("artworks/<int:pk>/edit/", collection_views.artwork_edit, name="artwork-edit"),
    path("artworks/bulk-edit/", collection_views.bulk_edit_create, name="bulk-edit"),
    path("bulk-edits/", collection_views.bulk_edit_list, name="bulk-edits"),
    path("bulk-edits/<int:pk>/undo/", collection_views.bulk_edit_undo_view, name="bulk-edit-undo"),
    path("near-duplicates/", collection_views.near_duplicate_triage, name="near-duplicates"),
    path(
        "near-duplicates/<int:pk>/decide/",
        collection_views.near_duplicate_decide_view,
        name="near-duplicate-decide",
    ),
    path("near-duplicates/scan/", collection_views.near_duplicate_scan, name="near-duplicate-scan"),
]
# Many files at once (the upload page's script) and search by image (catalogue/views.py)
urlpatterns += [
    path("artworks/upload/file/", views.artwork_upload_file, name="artwork-upload-file"),
    path("search/image/", views.image_search, name="image-search"),
    # Export of the filtered catalogue (catalogue/export_views.py)
    path("artworks/export/", export_views.artwork_export, name="artwork-export"),
    # The collection map (catalogue/map_views.py)
    path("map/points/<str:version>/", map_views.map_points, name="map-points"),
    path("map/works/", map_views.map_works, name="map-works"),
    path("map/layout/", map_views.map_layout_start, name="map-layout-start"),
]
