"""bench_import's measurements use the import's own public pieces: the walk, and the per-image work (read and
hash, decode and check, thumbnail, histogram, model input) timed alone. The whole benchmark drops and recreates its
database, so here it is only shown to refuse any other."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from catalogue.importing.sources import (
    Candidate,
    ImportItem,
    folder_walk,
    is_image_file,
    item_prepare,
    item_read,
)
from catalogue.models import Artwork
from tests.images import image_bytes, truncated_jpeg


def test_decode_alone_uses_the_imports_per_image_work(tmp_path: Path):
    (tmp_path / "painting").mkdir()
    for index in range(3):
        (tmp_path / "painting" / f"{index}.jpg").write_bytes(image_bytes(index))
    (tmp_path / "broken.jpg").write_bytes(truncated_jpeg(9))
    (tmp_path / "notes.txt").write_text("not an image")

    files = [entry for entry in folder_walk(tmp_path) if is_image_file(entry[0])]
    assert [entry.rel for entry in files] == [
        "broken.jpg",
        "painting/0.jpg",
        "painting/1.jpg",
        "painting/2.jpg",
    ]
    items = []
    for entry in files:
        candidate = Candidate(path=entry.path, rel=entry.rel, size=entry.size)
        item = item_read(ImportItem(candidate=candidate), max_bytes=10**6)
        items.append(item_prepare(item, sizes=[32], draft=None, thumbnail_size=64))
    assert items[0].skip is not None and items[0].skip[0] == "truncated" and not items[0].data
    for item in items[1:]:
        assert item.skip is None and len(item.sha256) == 64
        assert (
            item.inputs[32].shape == (32, 32, 3) and item.thumbnail and set(item.histogram) == {"r", "g", "b"}
        )


def test_a_file_over_the_limit_is_refused_unread(tmp_path: Path):
    path = tmp_path / "big.jpg"
    path.write_bytes(image_bytes(1, size=(300, 300)))
    item = item_read(
        ImportItem(candidate=Candidate(path=path, rel="big.jpg", size=path.stat().st_size)), max_bytes=10
    )
    assert item.skip is not None and item.skip[0] == "too_large" and not item.data


@pytest.mark.django_db
def test_bench_import_refuses_a_database_not_named_for_it(tmp_path: Path):
    (tmp_path / "a.jpg").write_bytes(image_bytes(1))
    with pytest.raises(CommandError, match="bench"):
        call_command("bench_import", str(tmp_path))
    assert Artwork.objects.count() == 0
