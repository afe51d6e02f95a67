"""Every endpoint without credentials, with a bad token, with Token and Bearer, and as viewer versus curator."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from catalogue.models import Artwork
from tests.api.conftest import assert_error
from tests.images import image_bytes

pytestmark = pytest.mark.django_db

# force_login would otherwise use the first of AUTHENTICATION_BACKENDS, which need not be able to load users.
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


def _upload(seed: int = 1) -> dict:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return {"image": SimpleUploadedFile("a.jpg", image_bytes(seed), "image/jpeg"), "title": "Upload"}


def _classify() -> dict:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return {"image": SimpleUploadedFile("a.jpg", image_bytes(3), "image/jpeg")}


def _requests(artwork_id: int, version: str) -> list[tuple[str, str, dict | None, str | None]]:
    """(method, path, body, format) for every operation of the API."""
    return [
        ("get", "/api/v1/artworks/", None, None),
        ("post", "/api/v1/artworks/", _upload(), "multipart"),
        ("get", f"/api/v1/artworks/{artwork_id}/", None, None),
        ("patch", f"/api/v1/artworks/{artwork_id}/", {"title": "New"}, "json"),
        ("delete", f"/api/v1/artworks/{artwork_id}/", None, None),
        ("get", f"/api/v1/artworks/{artwork_id}/similar/", None, None),
        ("post", f"/api/v1/artworks/{artwork_id}/label/", {"type": "painting"}, "json"),
        ("post", "/api/v1/classify/", _classify(), "multipart"),
        ("get", "/api/v1/types/", None, None),
        ("get", "/api/v1/types/painting/", None, None),
        ("get", "/api/v1/models/", None, None),
        ("get", f"/api/v1/models/{version}/", None, None),
    ]


def _call(client: APIClient, method: str, path: str, body: dict | None, fmt: str | None):  # type: ignore[no-untyped-def]
    return (
        getattr(client, method)(path, body, format=fmt) if body is not None else getattr(client, method)(path)
    )


def _is_write(method: str, path: str) -> bool:
    return (
        method in ("patch", "delete")
        or path.endswith("/label/")
        or (method, path) == ("post", "/api/v1/artworks/")
    )


def test_every_endpoint_refuses_anonymous_with_401_json(catalogue, active_model, anon):
    artwork = catalogue[0][0]
    for method, path, body, fmt in _requests(artwork.pk, active_model.version):
        response = _call(anon, method, path, body, fmt)
        body_json = assert_error(response, 401, "not_authenticated")
        assert "credentials" in body_json["message"].lower()
        assert response["WWW-Authenticate"] == "Token"
    assert Artwork.objects.filter(pk=artwork.pk).exists()


@pytest.mark.parametrize("header", ["Token nope", "Bearer nope", "Bearer", "Token a b"])
def test_bad_token_is_401_json(catalogue, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    body = assert_error(client.get("/api/v1/artworks/"), 401, "authentication_failed")
    assert "token" in body["message"].lower()


def test_inactive_users_token_is_401(viewer, viewer_token):
    viewer.is_active = False
    viewer.save()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {viewer_token}")
    assert_error(client.get("/api/v1/types/"), 401, "authentication_failed")


@pytest.mark.parametrize("keyword", ["Token", "Bearer", "bearer"])
def test_token_and_bearer_both_authenticate(viewer_token, keyword):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{keyword} {viewer_token}")
    response = client.get("/api/v1/types/")
    assert response.status_code == 200
    assert [t["slug"] for t in response.json()] == [
        "drawings",
        "engraving",
        "iconography",
        "painting",
        "sculpture",
    ]


def test_session_auth_works_for_the_browsable_api(client, viewer):
    # The factories set the password without saving it; a session must match the stored password hash.
    viewer.save()
    client.force_login(viewer, backend=MODEL_BACKEND)
    assert client.get("/api/v1/types/").status_code == 200
    page = client.get("/api/v1/types/", HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and b"<html" in page.content.lower()


def test_viewer_reads_but_may_not_write(catalogue, active_model, viewer_api, media_files):
    artwork = catalogue[0][0]
    before_files, before_rows = media_files(), Artwork.objects.count()
    for method, path, body, fmt in _requests(artwork.pk, active_model.version):
        response = _call(viewer_api, method, path, body, fmt)
        if _is_write(method, path):
            body_json = assert_error(response, 403, "permission_denied")
            assert "Curators" in body_json["message"]
        else:
            assert response.status_code == 200, (method, path, response.content[:300])
    assert media_files() == before_files and Artwork.objects.count() == before_rows
    artwork.refresh_from_db()
    assert artwork.title != "New" and artwork.curator_type_id is None


def test_curator_may_do_everything(catalogue, active_model, curator_api, broker):
    artwork = catalogue[0][0]
    expected = {
        ("post", "/api/v1/artworks/"): 202,
        ("post", f"/api/v1/artworks/{artwork.pk}/label/"): 201,
        ("delete", f"/api/v1/artworks/{artwork.pk}/"): 204,
    }
    requests = _requests(artwork.pk, active_model.version)
    # Delete last, so that the other requests still find the artwork.
    requests.sort(key=lambda r: r[0] == "delete")
    for method, path, body, fmt in requests:
        response = _call(curator_api, method, path, body, fmt)
        assert response.status_code == expected.get((method, path), 200), (
            method,
            path,
            response.content[:300],
        )
    assert not Artwork.objects.filter(pk=artwork.pk).exists()


def test_user_without_group_is_403(catalogue, django_user_model):
    from rest_framework.authtoken.models import Token

    user = django_user_model.objects.create_user("nobody", password="pw")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    assert_error(client.get("/api/v1/artworks/"), 403, "permission_denied")
    assert_error(client.get("/api/v1/types/"), 403, "permission_denied")


def test_superuser_may_write_without_group(catalogue, django_user_model):
    from rest_framework.authtoken.models import Token

    admin = django_user_model.objects.create_superuser("boss", password="pw")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=admin).key}")
    artwork = catalogue[0][0]
    assert (
        client.patch(f"/api/v1/artworks/{artwork.pk}/", {"artist": "Vermeer"}, format="json").status_code
        == 200
    )


def test_drf_create_token_command_makes_a_working_token(viewer):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("drf_create_token", viewer.username, stdout=out)
    key = out.getvalue().split()[2]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get("/api/v1/models/").status_code == 200


def test_browsable_api_pages_render_for_a_curator(client, curator, catalogue):
    curator.save()  # the factory does not save the password; the session checks its hash
    client.force_login(curator, backend=MODEL_BACKEND)
    artwork = catalogue[0][0]
    for path in (
        "/api/v1/artworks/",
        f"/api/v1/artworks/{artwork.pk}/",
        f"/api/v1/artworks/{artwork.pk}/similar/",
        "/api/v1/models/",
        "/api/v1/classify/",
    ):
        response = client.get(path, HTTP_ACCEPT="text/html")
        assert response.status_code in (200, 405), (path, response.status_code)
        assert b"<html" in response.content.lower()
