"""The import reads nothing outside its folder: a link to a file elsewhere is refused with its reason in the report,
also when the manifest names it; a link inside the folder is an ordinary file."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from catalogue.importing import artworks_import
from catalogue.importing.sources import title_from_filename
from catalogue.models import TITLE_MAX_LENGTH, Artwork
from tests.images import image_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings.MEDIA_ROOT = str(tmp_path / "media")


def run(folder: Path, **kwargs: object) -> tuple[object, dict[str, dict[str, str]]]:
    report = io.StringIO()
    result = artworks_import(folder=folder, report=report, **kwargs)  # type: ignore[arg-type]
    return result, {row["path"]: row for row in csv.DictReader(io.StringIO(report.getvalue()))}


@pytest.fixture
def linked(tmp_path: Path) -> Path:
    """A folder holding one image, a link to an image outside it, and a link to its own image."""
    secret = tmp_path / "elsewhere" / "secret.jpg"
    secret.parent.mkdir()
    secret.write_bytes(image_bytes(71))
    folder = tmp_path / "collection"
    (folder / "painting").mkdir(parents=True)
    (folder / "painting" / "own.jpg").write_bytes(image_bytes(72))
    (folder / "painting" / "escape.jpg").symlink_to(secret)
    (folder / "alias.jpg").symlink_to(folder / "painting" / "own.jpg")
    return folder


def sha_of(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_link_to_a_file_outside_the_folder_is_refused_with_its_reason(active_model, linked):
    result, report = run(linked)

    assert not Artwork.objects.filter(sha256=sha_of(linked / "painting" / "escape.jpg")).exists()
    assert report["painting/escape.jpg"]["reason"] == "outside_folder"
    assert "outside the folder" in report["painting/escape.jpg"]["detail"]
    assert result.unreadable["outside_folder"] == 1  # type: ignore[attr-defined]
    # The folder's own image is imported once; the link to it inside the folder is the same file (a duplicate).
    assert Artwork.objects.filter(sha256=sha_of(linked / "painting" / "own.jpg")).count() == 1
    assert Artwork.objects.count() == 1


def test_a_manifest_row_naming_a_link_outside_is_refused_and_the_file_never_imported(
    active_model, linked, tmp_path
):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,title\npainting/escape.jpg,Smuggled\npainting/own.jpg,Own\n")

    result, report = run(linked, manifest=manifest)

    assert not Artwork.objects.filter(title="Smuggled").exists()
    assert not Artwork.objects.filter(sha256=sha_of(linked / "painting" / "escape.jpg")).exists()
    assert report["painting/escape.jpg"]["reason"] == "bad_manifest_row"
    assert "line 2" in report["painting/escape.jpg"]["detail"]
    assert "link to a file outside the folder" in report["painting/escape.jpg"]["detail"]
    assert Artwork.objects.count() == 1  # the folder's own image (first met through its link inside)


def test_a_title_made_from_a_very_long_file_name_fits_the_title_field():
    title = title_from_filename(("word_" * 400) + ".jpg")
    assert len(title) <= TITLE_MAX_LENGTH and title.startswith("word word")
