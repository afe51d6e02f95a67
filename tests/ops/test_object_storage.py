"""``ARTSITE_STORAGE=s3`` against a real S3 API over HTTP (moto's server in a process of its own, see conftest):
uploads, thumbnails, classification, the import, deletes, re-embedding, explanation maps, training reads and the
served media all go through the storage API, and the bucket (looked at with boto3 directly) holds what it should.
"""

from __future__ import annotations

import hashlib
import io
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from PIL import Image
from rest_framework.authtoken.models import Token

from catalogue.models import Artwork, ArtworkType, Prediction
from catalogue.services import model_rollout
from catalogue.services.classification import artwork_classify
from catalogue.services.explanations import artwork_explain
from inference import services as model_services
from inference.models import ModelVersion
from tests.conftest import wait_for, write_tiny_model
from tests.factories import ArtworkFactory
from tests.images import image_bytes

pytestmark = pytest.mark.django_db


def local_media_files() -> list[Path]:
    return [p for p in Path(django_settings.MEDIA_ROOT).rglob("*") if p.is_file()]


def api_upload(client, curator, seed: int, title: str = "Stored in S3"):  # type: ignore[no-untyped-def]
    from django.core.files.uploadedfile import SimpleUploadedFile

    token = Token.objects.get_or_create(user=curator)[0].key
    data = image_bytes(seed, size=(400, 300))
    response = client.post(
        "/api/v1/artworks/",
        {"title": title, "image": SimpleUploadedFile("work.jpg", data, "image/jpeg")},
        HTTP_AUTHORIZATION=f"Token {token}",
    )
    assert response.status_code == 202, response.content
    return Artwork.objects.get(pk=response.json()["id"]), data, token


def test_an_upload_is_stored_in_the_bucket_with_its_thumbnail(client, curator, active_model, s3_bucket):
    before = local_media_files()
    artwork, data, _ = api_upload(client, curator, 1)

    assert s3_bucket.keys() == {artwork.image.name, artwork.thumbnail.name}
    assert s3_bucket.read(artwork.image.name) == data
    thumbnail = Image.open(io.BytesIO(s3_bucket.read(artwork.thumbnail.name)))
    assert thumbnail.format == "JPEG" and max(thumbnail.size) == django_settings.ARTSITE_THUMBNAIL_SIZE
    assert local_media_files() == before  # nothing on the local disk


def test_classification_reads_the_image_from_the_bucket(active_model, s3_bucket):
    artwork = ArtworkFactory(data=image_bytes(2, size=(200, 150)))
    artwork_classify(artwork_id=artwork.pk)
    artwork.refresh_from_db()
    assert artwork.status == Artwork.Status.READY
    assert Prediction.objects.filter(artwork=artwork).count() == 1

    # The object gone from the bucket: the work fails with the reason, it does not crash the worker.
    gone = ArtworkFactory(data=image_bytes(3))
    s3_bucket.client.delete_object(Bucket=s3_bucket.name, Key=gone.image.name)
    artwork_classify(artwork_id=gone.pk)
    gone.refresh_from_db()
    assert gone.status == Artwork.Status.FAILED and "cannot be read" in gone.error


def test_image_and_thumbnail_urls_are_served_by_the_store(client, curator, active_model, s3_bucket):
    artwork, data, token = api_upload(client, curator, 4)
    detail = client.get(f"/api/v1/artworks/{artwork.pk}/", HTTP_AUTHORIZATION=f"Token {token}").json()
    # Pages show the display copy and curators download the original: after the permission checks both routes
    # redirect to a presigned URL of the bucket, and any client (a browser) fetches the bytes from the store.
    client.force_login(curator)
    for url, check in (
        (detail["original_url"], lambda body: body == data),
        (detail["image_url"], lambda body: Image.open(io.BytesIO(body)).format == "JPEG"),
    ):
        redirect = client.get(url)
        location = redirect["Location"]
        assert (
            redirect.status_code == 302
            and location.startswith(s3_bucket.endpoint)
            and "Signature" in location
        )
        with urllib.request.urlopen(location, timeout=10) as response:
            assert check(response.read())
    with urllib.request.urlopen(detail["thumbnail_url"], timeout=10) as response:
        assert Image.open(io.BytesIO(response.read())).format == "JPEG"

    # /media/<name> (old links, a proxy's path) redirects to a fresh presigned URL of the same object.
    redirect = client.get(f"/media/{artwork.image.name}")
    assert redirect.status_code == 302 and redirect["Location"].startswith(s3_bucket.endpoint)
    with urllib.request.urlopen(redirect["Location"], timeout=10) as response:
        assert response.read() == data
    assert client.get("/media/artworks/no/such-file.jpg").status_code == 404
    assert client.get(f"/media/{artwork.image.name}.html").status_code == 404


def test_delete_removes_every_object_of_the_artwork(
    client, curator, active_model, s3_bucket, django_capture_on_commit_callbacks
):
    artwork, _, token = api_upload(client, curator, 5)
    kept, _, _ = api_upload(client, curator, 6, title="Kept")
    painting = ArtworkType.objects.get(slug="painting")
    artwork_explain(artwork=artwork, artwork_type=painting, version=active_model)  # a stored map too
    assert len(s3_bucket.keys()) == 5

    with django_capture_on_commit_callbacks(execute=True):
        response = client.delete(f"/api/v1/artworks/{artwork.pk}/", HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 204
    assert s3_bucket.keys() == {kept.image.name, kept.thumbnail.name}


def test_explanation_maps_are_kept_in_the_bucket(active_model, s3_bucket):
    artwork = ArtworkFactory(data=image_bytes(7, size=(160, 120)))
    painting = ArtworkType.objects.get(slug="painting")
    first = artwork_explain(artwork=artwork, artwork_type=painting, version=active_model)
    maps = s3_bucket.keys() - {artwork.image.name, artwork.thumbnail.name}
    assert len(maps) == 1 and s3_bucket.read(maps.pop()) == first.png
    second = artwork_explain(artwork=artwork, artwork_type=painting, version=active_model)
    assert second.cached and second.png == first.png


def test_import_of_a_folder_writes_to_the_bucket(active_model, s3_bucket, tmp_path):
    folder = tmp_path / "collection"
    for n, slug in enumerate(["painting", "painting", "sculpture"]):
        (folder / slug).mkdir(parents=True, exist_ok=True)
        (folder / slug / f"work{n}.jpg").write_bytes(image_bytes(100 + n, size=(240, 180)))
    before = local_media_files()
    call_command("import_artworks", str(folder), stdout=io.StringIO())

    artworks = list(Artwork.objects.all())
    assert len(artworks) == 3 and {a.status for a in artworks} == {Artwork.Status.READY}
    assert s3_bucket.keys() == {a.image.name for a in artworks} | {a.thumbnail.name for a in artworks}
    assert {hashlib.sha256(s3_bucket.read(a.image.name)).hexdigest() for a in artworks} == {
        hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*.jpg")
    }
    assert local_media_files() == before


def test_reembedding_reads_the_images_from_the_bucket(
    active_model, s3_bucket, settings, model_root, tmp_path
):
    works = [ArtworkFactory(data=image_bytes(200 + n)) for n in range(3)]
    for work in works:
        artwork_classify(artwork_id=work.pk)
    write_tiny_model(tmp_path, version="test-tiny-s3", seed=3)
    settings.ARTSITE_MODEL_DIRS = [model_root, tmp_path]
    model_services.model_versions_sync()
    second = ModelVersion.objects.get(version="test-tiny-s3")
    model_rollout.model_activate(version=second, enqueue=False)
    progress = model_rollout.model_reembed_batch(version=second)
    assert progress.remaining == 0
    assert Prediction.objects.filter(model_version=second).count() == 3
    second.refresh_from_db()
    assert second.is_active


def test_training_examples_read_their_images_from_the_bucket(active_model, s3_bucket):
    from catalogue.selectors.training import training_examples

    work = ArtworkFactory(data=image_bytes(300))
    artwork_classify(artwork_id=work.pk)
    (example,) = training_examples()
    assert example.path is None  # no local file to hand TensorFlow: it reads the bytes
    assert example.read_bytes() == s3_bucket.read(work.image.name)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_real_worker_without_the_web_folder_classifies_from_the_bucket(
    active_model, s3_bucket, celery_worker_process, tmp_path
):
    from django.db import transaction

    from catalogue.services.artworks import artwork_create

    # The worker's own, empty media folder: it can only find the image in the bucket.
    celery_worker_process.env.update({**s3_bucket.env, "DJANGO_MEDIA_ROOT": str(tmp_path / "worker-media")})
    celery_worker_process.start()
    with transaction.atomic():
        artwork = artwork_create(data=image_bytes(400, size=(300, 200)), title="Across hosts")
    wait_for(
        lambda: Artwork.objects.get(pk=artwork.pk).status == Artwork.Status.READY,
        timeout=90,
        explain=celery_worker_process.log,
    )
    assert Prediction.objects.filter(artwork=artwork).count() == 1
    assert not any((tmp_path / "worker-media").rglob("*.jpg"))
