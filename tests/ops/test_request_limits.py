"""Request bodies stop at the upload limit (413, nothing read past it, nothing stored), in the portal and the API, and
a long file name is an ordinary upload."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from catalogue.models import Artwork
from tests.images import image_bytes

pytestmark = pytest.mark.django_db

LIMIT = 40_000


@pytest.fixture
def small_limit(settings):  # type: ignore[no-untyped-def]
    settings.ARTSITE_MAX_UPLOAD_BYTES = LIMIT
    return LIMIT


@pytest.fixture
def api(curator) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=curator).key}")
    return client


def stored_files() -> list[Path]:
    return sorted(p for p in Path(django_settings.MEDIA_ROOT).rglob("*") if p.is_file())


def big_image() -> bytes:
    data = image_bytes(5, size=(500, 400), fmt="PNG")  # noise compresses badly: well over the limit
    assert (
        LIMIT < len(data) < LIMIT + 1024 * 1024
    )  # declared length within the form slack: the handler stops it
    return data


def test_api_upload_over_the_limit_is_413_in_the_error_shape(api, small_limit):
    before = stored_files()
    response = api.post(
        "/api/v1/artworks/", {"image": SimpleUploadedFile("big.png", big_image()), "title": "Big"}
    )
    assert response.status_code == 413
    body = response.json()
    assert body["status"] == 413 and body["code"] == "too_large" and body["fields"] == {}
    assert "limit" in body["message"]
    assert Artwork.objects.count() == 0 and stored_files() == before


def test_portal_upload_over_the_limit_is_413(curator_client, small_limit):
    before = stored_files()
    response = curator_client.post(
        reverse("catalogue:artwork-upload"),
        {"title": "Big", "image": SimpleUploadedFile("big.png", big_image())},
    )
    assert response.status_code == 413
    assert "limit" in response.content.decode()
    assert Artwork.objects.count() == 0 and stored_files() == before


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(client, small_limit):
    # Anonymous, with a made-up CSRF cookie: refused on the header alone, before the CSRF check reads the form.
    client.cookies["csrftoken"] = "x" * 32

    class Unreadable:
        def read(self, *args: object) -> bytes:
            raise AssertionError("the body was read")

        readline = read

    response = client.generic(
        "POST",
        "/api/v1/artworks/",
        data=b"",
        content_type="multipart/form-data; boundary=xyz",
        CONTENT_LENGTH=str(LIMIT + 2 * 1024 * 1024),
        **{"wsgi.input": Unreadable()},
    )
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"


def test_a_body_longer_than_its_content_length_is_never_read_past_it(api, small_limit):
    # The header claims a small body; the file behind it is over the limit. Django reads only what was declared,
    # so the upload is cut short and refused; nothing is stored.
    client = api
    boundary = "BoUnDaRy"
    data = big_image()
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\nLiar\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="liar.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    response = client.generic(
        "POST",
        "/api/v1/artworks/",
        data=body,
        content_type=f"multipart/form-data; boundary={boundary}",
        CONTENT_LENGTH="2000",
    )
    assert response.status_code in (400, 413)
    assert Artwork.objects.count() == 0


def multipart(fields: dict[str, str], file_name: str, data: bytes) -> tuple[bytes, str]:
    """A multipart body written by hand: Django's test client would cut the file name to 255 characters."""
    boundary = "LongNameBoundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{file_name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize("stem", ["a" * 1000, "語" * 400])
def test_a_very_long_file_name_uploads_like_any_other(api, curator_client, stem):
    body, content_type = multipart({"title": "Long name"}, f"{stem}.jpg", image_bytes(41))
    response = api.generic("POST", "/api/v1/artworks/", data=body, content_type=content_type)
    assert response.status_code == 202, response.content
    artwork = Artwork.objects.get()
    assert artwork.image.name.endswith(".jpg") and len(artwork.image.name) < 100

    token = curator_client.get(reverse("catalogue:artwork-upload")).cookies["csrftoken"].value
    body, content_type = multipart(
        {"title": "Long name too", "csrfmiddlewaretoken": token}, f"{stem}.png", image_bytes(42, fmt="PNG")
    )
    response = curator_client.generic(
        "POST", reverse("catalogue:artwork-upload"), data=body, content_type=content_type
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Artwork.objects.filter(image__endswith=".png").count() == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_real_server_answers_413_before_the_body_is_sent(live_server, settings):
    """Over a real socket: 24 MiB declared, nothing sent but the headers, and the answer comes at once."""
    settings.ARTSITE_MAX_UPLOAD_BYTES = 1024 * 1024
    url = urlsplit(live_server.url)
    with socket.create_connection((url.hostname, url.port), timeout=20) as sock:
        sock.sendall(
            (
                "POST /api/v1/artworks/ HTTP/1.1\r\n"
                f"Host: {url.hostname}\r\n"
                "Content-Type: multipart/form-data; boundary=xyz\r\n"
                "Cookie: csrftoken=" + "x" * 32 + "\r\n"
                f"Content-Length: {24 * 1024 * 1024}\r\n\r\n"
            ).encode()
        )
        reply = b""
        while b"too_large" not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413"), reply[:300]
    assert b'"code": "too_large"' in reply
