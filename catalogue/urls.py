from django.urls import path

from catalogue import views

app_name = "catalogue"
urlpatterns = [
    path("", views.artwork_list, name="artwork-list"),
    path("artworks/upload/", views.artwork_upload, name="artwork-upload"),
    path("artworks/<int:pk>/", views.artwork_detail, name="artwork-detail"),
    path("artworks/<int:pk>/status/", views.artwork_status, name="artwork-status"),
    path("artworks/<int:pk>/retry/", views.artwork_retry, name="artwork-retry"),
    path("artworks/<int:pk>/label/", views.artwork_label, name="artwork-label"),
]
