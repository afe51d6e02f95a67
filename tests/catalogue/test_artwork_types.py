"""Types belong to the catalogue: a curator adds one in the admin, it is a label at once (portal and API), it can be
renamed, its slug stays while a model knows it, and a type in use is never deleted."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from catalogue.models import ArtworkType, LabelCorrection
from catalogue.services.artwork_types import artwork_type_create, artwork_type_delete, artwork_type_update
from tests.catalogue.curation_helpers import logged_in
from tests.factories import ArtworkFactory

pytestmark = pytest.mark.django_db
ADD = reverse("admin:catalogue_artworktype_add")


@pytest.fixture
def curator_client(client, curator):
    return logged_in(client, curator)


def test_a_curator_adds_a_type_in_the_admin_and_labels_with_it_at_once(curator_client, curator, active_model):
    response = curator_client.post(ADD, {"name": "Photograph", "slug": ""})
    assert response.status_code == 302, response.context["adminform"].form.errors
    photograph = ArtworkType.objects.get(slug="photograph")
    assert photograph.name == "Photograph"
    assert photograph.position > max(
        ArtworkType.objects.exclude(pk=photograph.pk).values_list("position", flat=True)
    )

    artwork = ArtworkFactory()
    curator_client.post(reverse("catalogue:artwork-label", args=[artwork.pk]), {"type": "photograph"})
    artwork.refresh_from_db()
    assert (artwork.curator_type, artwork.label_provenance) == (photograph, "set")

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=curator).key}")
    other = ArtworkFactory()
    response = api.post(f"/api/v1/artworks/{other.pk}/label/", {"type": "photograph"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["artwork"]["curator_type"] == "photograph"
    assert LabelCorrection.objects.filter(to_type=photograph).count() == 2


def test_names_that_would_be_read_as_another_type_are_refused(curator_client):
    for name in ("Drawing", "paintings", "SCULPTURE"):
        response = curator_client.post(ADD, {"name": name, "slug": ""})
        assert response.status_code == 200 and response.context["adminform"].form.errors
    assert ArtworkType.objects.count() == 5


def test_a_known_types_slug_never_changes_but_its_name_may(db, active_model):
    drawings = ArtworkType.objects.get(slug="drawings")
    with pytest.raises(ValidationError, match="cannot change"):
        artwork_type_update(artwork_type=drawings, name="Drawing", slug="drawing_on_paper")
    artwork_type_update(artwork_type=drawings, name="Drawing on paper", slug="drawings")
    drawings.refresh_from_db()
    assert (drawings.name, drawings.slug) == ("Drawing on paper", "drawings")
    textile = artwork_type_create(name="Textile")  # no model knows it yet: its slug may change
    artwork_type_update(artwork_type=textile, name="Textiles", slug="textiles")
    assert ArtworkType.objects.filter(slug="textiles").exists()


def test_a_type_in_use_is_never_deleted(curator_client, active_model):
    used = artwork_type_create(name="Textile")
    ArtworkFactory(curator_type=used)
    with pytest.raises(ValidationError, match="1 labelled works"):
        artwork_type_delete(artwork_type=used)
    with pytest.raises(ValidationError, match="model versions test-tiny"):
        artwork_type_delete(artwork_type=ArtworkType.objects.get(slug="painting"))
    # The admin's delete page says what uses it, and deletes nothing.
    page = curator_client.post(reverse("admin:catalogue_artworktype_delete", args=[used.pk]), {"post": "yes"})
    assert page.status_code == 200 and "Textile: used by 1 labelled works" in page.content.decode()
    assert ArtworkType.objects.filter(pk=used.pk).exists()

    mistake = artwork_type_create(name="Txetile")
    response = curator_client.post(
        reverse("admin:catalogue_artworktype_delete", args=[mistake.pk]), {"post": "yes"}
    )
    assert response.status_code == 302 and not ArtworkType.objects.filter(pk=mistake.pk).exists()


def test_a_viewer_may_not_add_types(client, viewer):
    viewer.is_staff = True
    viewer.save()
    client = logged_in(client, viewer)
    assert client.post(ADD, {"name": "Photograph", "slug": ""}).status_code == 403
    assert not ArtworkType.objects.filter(slug="photograph").exists()
