"""The upload service: what it stores, and that bad input stores nothing at all."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from catalogue.models import Artwork
from catalogue.services.artworks import (
    ArtworkRejected,
    DuplicateArtwork,
    artwork_create,
    artwork_delete,
    read_upload,
)
from tests.images import decompression_bomb_png, image_bytes, truncated_jpeg

pytestmark = pytest.mark.django_db


def stored_files() -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_create_stores_file_thumbnail_and_pending_row(curator):
    data = image_bytes(1, size=(640, 480))
    artwork = artwork_create(
        data=data, title="  Vase of Flowers ", artist="Anon", uploaded_by=curator, enqueue=False
    )

    artwork.refresh_from_db()
    assert artwork.status == Artwork.Status.PENDING
    assert artwork.title == "Vase of Flowers"
    assert (artwork.width, artwork.height) == (640, 480)
    assert artwork.file_size == len(data)
    assert artwork.image.read() == data
    assert artwork.image.name.endswith(".jpg") and artwork.sha256 in artwork.image.name
    from PIL import Image

    thumb = Image.open(artwork.thumbnail.open())
    assert max(thumb.size) == settings.ARTSITE_THUMBNAIL_SIZE
    assert set(artwork.color_histogram) == {"r", "g", "b"}
    assert abs(sum(artwork.color_histogram["r"]) - 1.0) < 1e-3


def test_create_enqueues_classification_on_commit(broker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        artwork_create(data=image_bytes(2), title="Queued")
    assert broker.llen("celery") == 0, "nothing may reach the worker before the row is committed"
    for callback in callbacks:
        callback()
    assert broker.llen("celery") == 1


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"this is a text file, not a picture", "not_image"),
        (b"", "empty"),
        (pytest.param("truncated", id="truncated"), "truncated"),
        (pytest.param("bomb", id="bomb"), "too_many_pixels"),
        (pytest.param("gif", id="gif"), "unsupported_format"),
    ],
)
def test_bad_files_are_refused_and_nothing_is_stored(data, reason):
    if not isinstance(data, bytes):
        data = {
            "truncated": truncated_jpeg,
            "bomb": decompression_bomb_png,
            "gif": lambda: image_bytes(3, fmt="GIF"),
        }[data.values[0]]()
    before = stored_files()
    with pytest.raises(ArtworkRejected) as excinfo:
        artwork_create(data=data, title="Bad", enqueue=False)
    assert excinfo.value.reason == reason
    assert str(excinfo.value)  # a message for the curator
    assert Artwork.objects.count() == 0
    assert stored_files() == before


def test_oversized_upload_is_refused_before_reading_it_all(settings):
    settings.ARTSITE_MAX_UPLOAD_BYTES = 10_000
    import io

    big = io.BytesIO(image_bytes(4, size=(800, 800), fmt="PNG"))
    with pytest.raises(ArtworkRejected) as excinfo:
        read_upload(big)
    assert excinfo.value.reason == "too_large"
    assert "MB" in str(excinfo.value)


def test_same_image_twice_is_refused_with_the_existing_artwork():
    data = image_bytes(5)
    first = artwork_create(data=data, title="First", enqueue=False)
    files = stored_files()
    with pytest.raises(DuplicateArtwork) as excinfo:
        artwork_create(data=data, title="Second", enqueue=False)
    assert excinfo.value.existing == first
    assert Artwork.objects.count() == 1
    assert stored_files() == files


def test_duplicate_accession_number_is_refused():
    artwork_create(data=image_bytes(6), title="A", accession_number="INV-1", enqueue=False)
    files = stored_files()
    with pytest.raises(ArtworkRejected) as excinfo:
        artwork_create(data=image_bytes(7), title="B", accession_number=" INV-1 ", enqueue=False)
    assert excinfo.value.field == "accession_number"
    assert stored_files() == files


def test_title_is_required():
    with pytest.raises(ArtworkRejected) as excinfo:
        artwork_create(data=image_bytes(8), title="   ", enqueue=False)
    assert excinfo.value.field == "title"
    assert Artwork.objects.count() == 0


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16"])
def test_every_image_mode_is_accepted(mode):
    fmt = "TIFF" if mode in ("CMYK", "I;16") else "PNG"
    data = image_bytes(20, mode=mode, fmt=fmt) if mode != "I;16" else _png16()
    artwork = artwork_create(data=data, title=mode, enqueue=False)
    assert artwork.width > 0


def _png16() -> bytes:
    import io

    import numpy as np
    from PIL import Image

    array = (np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20).astype(np.uint16)
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def test_failure_while_storing_leaves_no_orphan_file(monkeypatch):
    from catalogue.models import Artwork as Model

    def explode(self, *args, **kwargs):
        raise RuntimeError("database went away")

    before = stored_files()
    monkeypatch.setattr(Model, "save", explode)
    with pytest.raises(RuntimeError):
        artwork_create(data=image_bytes(9), title="Lost", enqueue=False)
    assert stored_files() == before


def test_delete_removes_files(django_capture_on_commit_callbacks):
    before = stored_files()
    artwork = artwork_create(data=image_bytes(10), title="Gone", enqueue=False)
    assert len(stored_files()) == len(before) + 2
    with django_capture_on_commit_callbacks(execute=True):
        artwork_delete(artwork=artwork)
    assert stored_files() == before
    assert not Artwork.objects.exists()


# --- Privacy, audit and limits (issue 15) ---------------------------------------------------------------------------


def jpeg_with_gps(seed: int = 90) -> bytes:
    import io

    from PIL import ExifTags

    from tests.images import make_image

    image = make_image(seed, size=(900, 600))
    exif = image.getexif()
    exif.get_ifd(ExifTags.IFD.GPSInfo).update({1: "N", 2: (52.0, 22.0, 1.5), 3: "E", 4: (4.0, 53.0, 0.0)})
    exif[0x010F] = "Camera maker"
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif, quality=92)
    return out.getvalue()


def gps_of(data: bytes) -> dict:
    import io

    from PIL import ExifTags, Image

    return dict(Image.open(io.BytesIO(data)).getexif().get_ifd(ExifTags.IFD.GPSInfo))


@pytest.fixture
def viewer_api(viewer):  # type: ignore[no-untyped-def]
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=viewer).key}")
    return client


def test_the_display_copy_and_thumbnail_carry_no_location_but_the_original_keeps_it(
    curator, viewer_client, settings
):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    data = jpeg_with_gps()
    assert gps_of(data)[2] == (52.0, 22.0, 1.5)  # the test file really carries a position
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=curator).key}")
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = api.post("/api/v1/artworks/", {"image": SimpleUploadedFile("gps.jpg", data), "title": "Where"})
    assert response.status_code == 202, response.content
    body = response.json()

    display = viewer_client.get(body["image_url"])
    assert display.status_code == 200 and display["Content-Type"] == "image/jpeg"
    display_bytes = b"".join(display.streaming_content)
    assert gps_of(display_bytes) == {}
    from PIL import Image

    shown = Image.open(__import__("io").BytesIO(display_bytes))
    assert "exif" not in shown.info and not shown.getexif()  # no EXIF block at all
    assert max(shown.size) == min(900, settings.ARTSITE_DISPLAY_SIZE)

    thumbnail = viewer_client.get(body["thumbnail_url"])
    assert thumbnail.status_code == 200
    assert gps_of(b"".join(thumbnail.streaming_content)) == {}

    # The original is a curators' download, metadata and all; a viewer gets neither it nor its /media/ path.
    assert viewer_client.get(body["original_url"]).status_code == 403
    artwork = Artwork.objects.get(pk=body["id"])
    assert viewer_client.get(f"/media/{artwork.image.name}").status_code == 403
    from django.test import Client

    curator_client = Client()  # viewer_client is the default client, logged in as the viewer
    curator_client.force_login(curator)
    original = curator_client.get(body["original_url"])
    assert original.status_code == 200 and original["Content-Disposition"].startswith("attachment")
    assert b"".join(original.streaming_content) == data


def test_media_needs_a_login_when_the_setting_says_so(client, settings):
    artwork = artwork_create(data=image_bytes(91), title="Private", enqueue=False)
    settings.ARTSITE_MEDIA_REQUIRES_LOGIN = False
    assert client.get(f"/artworks/{artwork.pk}/display.jpg").status_code == 200
    assert client.get(f"/media/{artwork.thumbnail.name}").status_code == 200
    settings.ARTSITE_MEDIA_REQUIRES_LOGIN = True
    for url in (f"/artworks/{artwork.pk}/display.jpg", f"/media/{artwork.thumbnail.name}"):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_deleting_keeps_who_deleted_what_and_the_label_history(curator, django_capture_on_commit_callbacks):
    from catalogue.models import ArtworkDeletion, ArtworkType, LabelCorrection
    from catalogue.services.labels import label_correct

    artwork = artwork_create(
        data=image_bytes(92), title="Gone", accession_number="INV-92", uploaded_by=curator, enqueue=False
    )
    label_correct(
        artwork=artwork,
        to_type=ArtworkType.objects.get(slug="painting"),
        user=curator,
        source=LabelCorrection.Source.API,
    )
    artwork_id, sha256 = artwork.pk, artwork.sha256

    with django_capture_on_commit_callbacks(execute=True):
        record = artwork_delete(artwork=artwork, deleted_by=curator)

    assert not Artwork.objects.filter(pk=artwork_id).exists()
    record = ArtworkDeletion.objects.get(pk=record.pk)
    assert (record.artwork_pk, record.title, record.sha256) == (artwork_id, "Gone", sha256)
    assert record.deleted_by == curator and record.deleted_at is not None
    assert record.snapshot["accession_number"] == "INV-92" and record.snapshot["label"] == "painting"
    history = LabelCorrection.objects.filter(deletion=record)
    assert history.count() == 1 and history.get().artwork is None
    assert history.get().to_type.slug == "painting" and history.get().user == curator


@pytest.mark.parametrize(
    ("field", "limit"),
    [("title", 300), ("artist", 300), ("date", 100), ("accession_number", 100), ("description", 10_000)],
)
def test_text_longer_than_its_limit_is_refused_by_the_service(field, limit):
    fields = {"title": "A title", field: "x" * (limit + 1)}
    before = stored_files()
    with pytest.raises(ArtworkRejected) as refused:
        artwork_create(data=image_bytes(93), enqueue=False, **fields)
    assert refused.value.field == field and refused.value.reason == "too_long"
    assert f"{limit:,}" in str(refused.value)
    assert Artwork.objects.count() == 0 and stored_files() == before
    artwork_create(
        data=image_bytes(93), enqueue=False, **{**fields, field: "x" * limit}
    )  # the limit itself is fine


def test_the_database_refuses_a_description_over_its_limit():
    from django.db import IntegrityError, transaction

    artwork = artwork_create(data=image_bytes(94), title="Direct", enqueue=False)
    with pytest.raises(IntegrityError), transaction.atomic():
        Artwork.objects.filter(pk=artwork.pk).update(description="x" * 10_001)


def test_api_refuses_text_over_its_limit_in_the_error_shape(viewer_api, curator):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=curator).key}")
    response = api.post(
        "/api/v1/artworks/",
        {"image": SimpleUploadedFile("a.jpg", image_bytes(95)), "title": "T", "description": "x" * 10_001},
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "max_length" and "description" in body["fields"]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_identical_uploads_at_once_store_one_artwork_and_one_file(live_server, curator, monkeypatch):
    """Two real requests with the same file, held until both have passed the duplicate check (so the database's
    unique sha256 decides): one 202, one 409 naming the other, one row, one image and one thumbnail on disk."""
    import json
    import threading
    import urllib.error
    import urllib.request

    from rest_framework.authtoken.models import Token

    from catalogue.services import artworks as artwork_services

    both_checked = threading.Barrier(2, timeout=20)
    make_thumbnail = artwork_services.thumbnail_bytes

    def thumbnail_after_both(*args, **kwargs):  # type: ignore[no-untyped-def]
        both_checked.wait()  # each request has read the catalogue and found no duplicate
        return make_thumbnail(*args, **kwargs)

    monkeypatch.setattr(artwork_services, "thumbnail_bytes", thumbnail_after_both)
    token = Token.objects.create(user=curator).key
    data = image_bytes(96, size=(300, 200))
    boundary = "TwinBoundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\nTwin\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="twin.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    answers: list[tuple[int, dict]] = []

    def upload() -> None:
        request = urllib.request.Request(
            f"{live_server.url}/api/v1/artworks/",
            data=body,
            headers={
                "Authorization": f"Token {token}",
                "Content-Type": f"multipart/form-data; boundary={boundary}",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                answers.append((response.status, json.loads(response.read())))
        except urllib.error.HTTPError as error:
            answers.append((error.code, json.loads(error.read())))

    threads = [threading.Thread(target=upload) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)

    assert sorted(status for status, _ in answers) == [202, 409], answers
    accepted = next(body for status, body in answers if status == 202)
    refused = next(body for status, body in answers if status == 409)
    assert refused["code"] == "duplicate" and refused["existing"]["id"] == accepted["id"]
    artwork = Artwork.objects.get()
    assert artwork.pk == accepted["id"]
    same_file = [p for p in stored_files() if artwork.sha256 in p.name]
    assert sorted(p.relative_to(settings.MEDIA_ROOT).as_posix() for p in same_file) == sorted(
        [artwork.image.name, artwork.thumbnail.name]
    )
