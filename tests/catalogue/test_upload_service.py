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
