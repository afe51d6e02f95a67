"""The bulk import on generated folders: labels from folder names, every kind of bad file skipped with its reason,
duplicates, the manifest, interrupted and resumed runs, the run that imports nothing, the dry run that writes nothing.
Real PostgreSQL, real storage (a temporary media folder), the tiny real model."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from PIL import Image

from catalogue.importing import ImportEvents, ImportFailed, ImportResult, artworks_import, store
from catalogue.models import Artwork, LabelCorrection, Prediction
from catalogue.services import imports as import_services
from tests.images import decompression_bomb_png, image_bytes, make_image, truncated_jpeg

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings.MEDIA_ROOT = (
        tmp_path / "media"
    )  # a media folder per test: rolled-back rows leave no files behind


def stored_files() -> set[str]:
    root = Path(settings.MEDIA_ROOT)
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def referenced_files() -> set[str]:
    names = set()
    for image, thumbnail in Artwork.objects.values_list("image", "thumbnail"):
        names.update(n for n in (image, thumbnail) if n)
    return names


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def collection(tmp_path: Path) -> Path:
    """A museum's folder as they come: nested type folders in any case and number, a folder that names no type,
    a repeated file, a cut-off JPEG, a text file named .jpg, a decompression bomb, a file that is not an image."""
    root = tmp_path / "collection"
    write(root / "cover.jpg", image_bytes(1))  # top level: unlabelled, no folder to report
    write(root / "notes.txt", b"inventory notes")
    write(root / "painting" / "vase_of-flowers.jpg", image_bytes(2))
    write(root / "Paintings" / "italian" / "1600s" / "saint.png", image_bytes(3, fmt="PNG"))
    write(root / "DRAWING" / "study.webp", image_bytes(4, fmt="WEBP"))
    write(root / "museum-b" / "Sculpture" / "bust.tiff", image_bytes(5, fmt="TIFF"))
    write(root / "unsorted" / "a.jpg", image_bytes(6))
    write(
        root / "unsorted" / "z_copy_of_vase.jpg", image_bytes(2)
    )  # same bytes as painting/vase_of-flowers.jpg
    write(root / "unsorted" / "broken.jpg", truncated_jpeg(7))
    write(root / "unsorted" / "readme.jpg", b"this is a text file, not a picture")
    write(root / "unsorted" / "bomb.png", decompression_bomb_png())
    return root


GOOD = {
    "cover.jpg",
    "painting/vase_of-flowers.jpg",
    "Paintings/italian/1600s/saint.png",
    "DRAWING/study.webp",
    "museum-b/Sculpture/bust.tiff",
    "unsorted/a.jpg",
}


def run(folder: Path, **kwargs: object) -> tuple[ImportResult, list[dict[str, str]]]:
    report = io.StringIO()
    result = artworks_import(folder=folder, report=report, **kwargs)  # type: ignore[arg-type]
    return result, list(csv.DictReader(io.StringIO(report.getvalue())))


def test_imports_a_folder_with_labels_skips_and_classification(active_model, collection):
    result, report = run(collection, batch_size=2)

    assert result.imported == 6
    assert result.candidates == 10 and result.other_files == 1
    assert result.duplicates_in_run == 1 and result.duplicates_in_catalogue == 0
    assert dict(result.unreadable) == {"truncated": 1, "not_image": 1, "too_many_pixels": 1}
    assert dict(result.labelled) == {"painting": 2, "drawings": 1, "sculpture": 1}
    assert result.unlabelled == 2
    assert dict(result.unknown_folders) == {"unsorted": 1}
    assert result.classified == 6 and result.versions == [active_model.version]
    assert sum(result.predicted.values()) == 6
    assert result.labels_checked == 4 and 0 <= result.labels_agreed <= 4

    reasons = {row["path"]: row["reason"] for row in report}
    assert reasons == {
        "notes.txt": "not_an_image_file",
        "unsorted/z_copy_of_vase.jpg": "duplicate_in_run",
        "unsorted/broken.jpg": "truncated",
        "unsorted/readme.jpg": "not_image",
        "unsorted/bomb.png": "too_many_pixels",
    }
    assert all(row["detail"] for row in report)

    artworks = {a.title: a for a in Artwork.objects.select_related("curator_type")}
    assert set(artworks) == {"cover", "vase of flowers", "saint", "study", "bust", "a"}
    assert artworks["saint"].curator_type.slug == "painting"
    assert artworks["study"].curator_type.slug == "drawings"
    assert artworks["bust"].curator_type.slug == "sculpture"
    assert artworks["cover"].curator_type is None and artworks["a"].curator_type is None
    for artwork in artworks.values():
        assert artwork.status == Artwork.Status.READY and artwork.processed_at is not None
        prediction = Prediction.objects.get(artwork=artwork, model_version=active_model)
        assert np.linalg.norm(np.asarray(prediction.embedding)) == pytest.approx(1.0, abs=1e-3)
        assert artwork.sha256 in artwork.image.name and (artwork.width, artwork.height) == (64, 48)
        assert set(artwork.color_histogram) == {"r", "g", "b"}
        Image.open(artwork.thumbnail.open()).verify()
    assert artworks["vase of flowers"].image.read() == image_bytes(2)  # the original bytes, not a re-encoding

    corrections = LabelCorrection.objects.filter(source=LabelCorrection.Source.IMPORT)
    assert corrections.count() == 4
    assert all(c.from_type is None and c.to_type == c.artwork.curator_type for c in corrections)
    assert "folder Paintings/" in corrections.get(artwork=artworks["saint"]).note
    assert stored_files() == referenced_files() and len(stored_files()) == 12


def test_classification_matches_the_single_artwork_path(active_model, collection):
    from catalogue.services.classification import artwork_classify

    run(collection)
    artwork = Artwork.objects.get(title="saint")
    batch = Prediction.objects.get(artwork=artwork).embedding
    Prediction.objects.filter(artwork=artwork).delete()
    Artwork.objects.filter(pk=artwork.pk).update(status=Artwork.Status.PENDING)
    artwork_classify(artwork_id=artwork.pk)
    assert np.allclose(np.asarray(Prediction.objects.get(artwork=artwork).embedding), batch, atol=1e-4)


def test_second_run_imports_and_writes_nothing(active_model, collection):
    run(collection)
    root = Path(settings.MEDIA_ROOT)
    before = {name: (root / name).stat().st_mtime_ns for name in stored_files()}
    rows = set(Artwork.objects.values_list("id", "updated_at"))

    result, report = run(collection)

    assert result.imported == 0 and result.resumed == 0 and result.classified == 0
    assert result.duplicates_in_catalogue == 7  # the six artworks and the copy of one of them
    assert result.duplicates_in_run == 0
    assert {name: (root / name).stat().st_mtime_ns for name in stored_files()} == before
    assert set(Artwork.objects.values_list("id", "updated_at")) == rows
    assert LabelCorrection.objects.count() == 4
    assert sum(row["reason"] == "duplicate_in_catalogue" for row in report) == 7


def test_dry_run_writes_nothing_and_counts_what_it_would_do(active_model, collection):
    result, report = run(collection, dry_run=True)

    assert result.dry_run and result.imported == 6 and result.duplicates_in_run == 1
    assert dict(result.unreadable) == {"truncated": 1, "not_image": 1, "too_many_pixels": 1}
    assert result.classified == 0 and result.queued == 0
    assert (
        Artwork.objects.count() == 0
        and LabelCorrection.objects.count() == 0
        and Prediction.objects.count() == 0
    )
    assert stored_files() == set()
    assert len(report) == 5


def test_dry_run_reports_files_already_in_the_catalogue(active_model, collection):
    from tests.factories import ArtworkFactory

    ArtworkFactory(data=image_bytes(6))  # unsorted/a.jpg is already catalogued
    files = stored_files()
    result, _ = run(collection, dry_run=True)
    assert result.imported == 5 and result.duplicates_in_catalogue == 1
    assert stored_files() == files and Artwork.objects.count() == 1


class Killed(Exception):
    """Stands in for the process being killed at a chosen moment."""


def test_interrupted_run_is_completed_by_the_next_one(active_model, collection):
    def stop_after_two(batch: int) -> None:
        if batch == 2:
            raise Killed

    with pytest.raises(Killed):
        artworks_import(folder=collection, batch_size=2, events=ImportEvents(batch_done=stop_after_two))
    assert Artwork.objects.count() == 4
    assert stored_files() == referenced_files()  # never a file without its row, nor a row without its file

    result, _ = run(collection, batch_size=2)

    assert result.imported == 2 and result.duplicates_in_catalogue == 4 and result.duplicates_in_run == 1
    assert Artwork.objects.count() == 6
    assert set(Artwork.objects.values_list("status", flat=True)) == {Artwork.Status.READY}
    assert Prediction.objects.count() == 6 and LabelCorrection.objects.count() == 4
    assert stored_files() == referenced_files() and len(stored_files()) == 12


def test_artworks_left_pending_are_classified_by_the_next_run(collection, settings, model_root, tmp_path):
    settings.ARTSITE_MODEL_DIRS = [tmp_path / "no-models"]  # no model yet: stored, left pending
    first, _ = run(collection)
    assert first.imported == 6 and first.left_pending == 6 and first.classified == 0
    assert "No model version is active" in first.warnings[0]
    assert set(Artwork.objects.values_list("status", flat=True)) == {Artwork.Status.PENDING}

    settings.ARTSITE_MODEL_DIRS = [model_root]
    result, _ = run(collection, batch_size=4)

    assert result.resumed == 6 and result.classified == 6 and result.imported == 0
    assert result.duplicates_in_run == 1  # the copy of the vase, met after the vase itself
    assert set(Artwork.objects.values_list("status", flat=True)) == {Artwork.Status.READY}
    assert Prediction.objects.count() == 6
    assert stored_files() == referenced_files()


def test_a_batch_interrupted_inside_its_transaction_leaves_nothing_behind(
    active_model, collection, monkeypatch
):
    from catalogue.services.classification import prediction_store

    calls = {"n": 0}
    store = prediction_store

    def killed_on_second_batch(**kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise Killed
        return store(**kwargs)

    # The import services store each batch's predictions inside the batch's transaction.
    monkeypatch.setattr(import_services, "prediction_store", killed_on_second_batch)
    with pytest.raises(Killed):
        artworks_import(folder=collection, batch_size=2)
    assert Artwork.objects.count() == 2  # batch 1 only: batch 2's rows never committed
    assert set(Artwork.objects.values_list("status", flat=True)) == {Artwork.Status.READY}
    assert stored_files() == referenced_files()


def test_files_left_by_a_run_killed_before_its_rows_were_committed_are_replaced(active_model, collection):
    # What a kill between writing the files and committing the rows leaves behind: files, half-written, no row.
    import hashlib

    digest = hashlib.sha256(image_bytes(2)).hexdigest()
    write(Path(settings.MEDIA_ROOT) / f"artworks/{digest[:2]}/{digest}.jpg", image_bytes(2)[:100])
    write(Path(settings.MEDIA_ROOT) / f"thumbnails/{digest[:2]}/{digest}.jpg", b"half a thumbnail")

    result, _ = run(collection)

    assert result.imported == 6
    artwork = Artwork.objects.get(sha256=digest)
    assert artwork.image.name == f"artworks/{digest[:2]}/{digest}.jpg"
    assert artwork.image.read() == image_bytes(2)
    Image.open(artwork.thumbnail.open()).verify()
    assert stored_files() == referenced_files()


def test_an_image_stored_by_someone_else_meanwhile_is_a_duplicate_and_its_file_is_kept(
    active_model, collection, monkeypatch
):
    from tests.factories import ArtworkFactory

    check = store.artwork_drafts_check
    uploads = []

    def uploaded_right_after_the_check(**kwargs):  # type: ignore[no-untyped-def]
        conflicts = check(**kwargs)
        if not uploads:  # unsorted/a.jpg arrives through the portal between the check and the writes
            uploads.append(ArtworkFactory(data=image_bytes(6), status=Artwork.Status.READY))
        return conflicts

    # The import's duplicate check before the model runs and the writes (the service's own, on a conflict, is not
    # patched: it finds the upload).
    monkeypatch.setattr(store, "artwork_drafts_check", uploaded_right_after_the_check)
    result, report = run(collection, batch_size=64)
    upload = uploads[0]

    assert result.imported == 5 and result.duplicates_in_catalogue == 1
    assert {r["path"]: r["reason"] for r in report}["unsorted/a.jpg"] == "duplicate_in_catalogue"
    upload.refresh_from_db()
    assert upload.image.read() == image_bytes(6)
    assert stored_files() == referenced_files()


def test_a_failing_batch_removes_the_files_it_wrote(active_model, collection, monkeypatch):
    def boom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("database went away")

    monkeypatch.setattr(
        LabelCorrection.objects, "bulk_create", boom
    )  # the label audit rows of the first batch
    with pytest.raises(RuntimeError):
        artworks_import(folder=collection, batch_size=3)
    assert Artwork.objects.count() == 0
    assert stored_files() == set()


def test_oversized_files_are_skipped_before_being_read(active_model, collection, settings):
    settings.ARTSITE_MAX_UPLOAD_BYTES = 20_000
    write(collection / "big" / "poster.png", image_bytes(8, size=(600, 600), fmt="PNG"))
    result, report = run(collection)
    assert result.unreadable["too_large"] == 1
    assert {row["path"]: row["reason"] for row in report}["big/poster.png"] == "too_large"
    assert result.imported == 6


def test_large_jpeg_is_decoded_in_draft_mode_but_stored_whole_with_its_true_size(active_model, tmp_path):
    from catalogue.services.artworks import image_check

    data = image_bytes(9, size=(1600, 1200), quality=90)
    write(tmp_path / "photos" / "large.jpg", data)
    checked = image_check(data=data, draft=320)
    assert (checked.decoded.width, checked.decoded.height) == (1600, 1200)
    assert checked.decoded.image.size == (800, 600)  # libjpeg scaled it by 1/2: still >= 320 a side

    result, _ = run(tmp_path / "photos")
    assert result.imported == 1
    artwork = Artwork.objects.get()
    assert (artwork.width, artwork.height) == (1600, 1200)
    assert artwork.image.read() == data
    assert max(Image.open(artwork.thumbnail.open()).size) == settings.ARTSITE_THUMBNAIL_SIZE


def test_draft_keeps_the_true_size_of_a_rotated_jpeg():
    from inference.preprocessing import decode_image

    image = make_image(10, size=(1400, 700))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    full = decode_image(out.getvalue())
    draft = decode_image(out.getvalue(), draft=300)
    assert (full.width, full.height) == (draft.width, draft.height) == (700, 1400)
    assert draft.image.size == (350, 700)


def write_manifest_csv(path: Path, rows: list[str]) -> Path:
    header = "path,title,artist,date,accession,type,description\n"
    return write(path, (header + "".join(r + "\n" for r in rows)).encode("utf-8"))


def test_manifest_gives_metadata_and_every_bad_row_is_reported_with_its_line(
    active_model, collection, tmp_path
):
    manifest = write_manifest_csv(
        tmp_path / "manifest.csv",
        [
            'unsorted/a.jpg,The Annunciation,Fra Angelico,c. 1440,INV-1,iconography,"Tempera, gold"',  # line 2
            "cover.jpg,Cover,,,INV-1,,",  # 3: accession already used on line 2
            "missing.jpg,Lost,,,,,",  # 4: no such file
            "DRAWING/study.webp,Study,,,INV-3,tapestry,",  # 5: unknown type
            "unsorted/a.jpg,Again,,,,,",  # 6: the same file twice
            "../outside.jpg,Outside,,,,,",  # 7: not in the folder
            "notes.txt,Notes,,,,,",  # 8: not an image
            "museum-b/Sculpture/bust.tiff,Bust of a Man,,1890s,INV-4,,",  # 9: good; type from its folder
        ],
    )
    # line 10: not UTF-8
    manifest.write_bytes(
        manifest.read_bytes() + "Paintings/italian/1600s/saint.png,Sa\xefnt,,,,,\n".encode("latin-1")
    )

    result, report = run(collection, manifest=manifest)

    assert [(bad.line, bad.reason.split(" ")[0]) for bad in result.bad_rows] == [
        (3, "accession"),
        (4, "no"),
        (5, "unknown"),
        (6, "the"),
        (7, "the"),
        (8, "notes.txt"),
        (10, "bad"),
    ]
    assert "INV-1" in result.bad_rows[0].reason and "line 2" in result.bad_rows[0].reason
    assert "tapestry" in result.bad_rows[2].reason
    assert (
        result.imported == 3
    )  # unsorted/a.jpg, bust.tiff, vase (not in the manifest); three files with bad rows
    assert result.bad_row_files == 3
    annunciation = Artwork.objects.get(accession_number="INV-1")
    assert (annunciation.title, annunciation.artist, annunciation.date, annunciation.description) == (
        "The Annunciation",
        "Fra Angelico",
        "c. 1440",
        "Tempera, gold",
    )
    assert annunciation.curator_type.slug == "iconography"  # the manifest's type, not the folder's
    assert "manifest line 2" in annunciation.label_corrections.get().note
    bust = Artwork.objects.get(accession_number="INV-4")
    assert bust.title == "Bust of a Man" and bust.curator_type.slug == "sculpture"
    assert Artwork.objects.filter(title="vase of flowers").exists()
    reasons = {(row["path"], row["reason"]) for row in report}
    assert ("missing.jpg", "bad_manifest_row") in reasons
    assert ("cover.jpg", "bad_manifest_row") in reasons
    assert ("Paintings/italian/1600s/saint.png", "bad_manifest_row") in reasons
    assert ("unsorted/a.jpg", "bad_manifest_row") not in reasons  # its second row was bad, the file imported


def test_json_lines_manifest(active_model, collection, tmp_path):
    manifest = write(
        tmp_path / "manifest.jsonl",
        b"\n".join(
            [
                json.dumps(
                    {"path": "cover.jpg", "title": "Frontispiece", "accession": 17, "type": "Engravings"}
                ).encode(),
                b"{not json",
                b"[1, 2]",
                json.dumps({"path": "unsorted/a.jpg", "title": ["a list"]}).encode(),
                b"",
            ]
        ),
    )
    result, _ = run(collection, manifest=manifest)
    assert [(b.line, b.reason) for b in result.bad_rows][1:] == [
        (3, "not a JSON object"),
        (4, "'title' must be a string"),
    ]
    assert result.bad_rows[0].line == 2 and "JSON" in result.bad_rows[0].reason
    cover = Artwork.objects.get(accession_number="17")
    assert cover.title == "Frontispiece" and cover.curator_type.slug == "engraving"
    assert not Artwork.objects.filter(title="a").exists()  # its row was bad


def test_manifest_accession_already_in_the_catalogue_skips_only_that_file(active_model, collection, tmp_path):
    from tests.factories import ArtworkFactory

    ArtworkFactory(accession_number="INV-9")
    manifest = write_manifest_csv(tmp_path / "m.csv", ["cover.jpg,Cover,,,INV-9,,"])
    result, report = run(collection, manifest=manifest)
    assert result.duplicate_accessions == 1 and result.imported == 5
    assert {r["path"]: r["reason"] for r in report}["cover.jpg"] == "duplicate_accession"


def test_manifest_inside_the_folder_is_not_listed_as_a_skipped_file(active_model, collection):
    manifest = write_manifest_csv(collection / "manifest.csv", ["cover.jpg,Cover,,,,,"])
    result, report = run(collection, manifest=manifest)
    assert result.other_files == 1 and "manifest.csv" not in {row["path"] for row in report}
    assert Artwork.objects.filter(title="Cover").exists()


def test_manifest_without_a_path_column_is_refused_before_anything_is_written(
    active_model, collection, tmp_path
):
    manifest = write(tmp_path / "m.csv", b"file,title\ncover.jpg,Cover\n")
    with pytest.raises(ImportFailed, match="path"):
        artworks_import(folder=collection, manifest=manifest)
    assert Artwork.objects.count() == 0 and stored_files() == set()


def test_limit(active_model, collection):
    result, _ = run(collection, limit=3)
    assert result.candidates == 3 and result.imported == 3


def test_async_queues_the_artworks_for_the_workers(collection, broker, django_capture_on_commit_callbacks):
    from tests.catalogue.curation_helpers import reopen_broker_pool

    reopen_broker_pool()  # an earlier broker-down test may have closed Celery's producer pool
    with django_capture_on_commit_callbacks(execute=True):
        result, _ = run(collection, enqueue=True)
    assert result.imported == 6 and result.queued == 6 and result.classified == 0
    assert broker.llen("celery") == 6
    assert set(Artwork.objects.values_list("status", flat=True)) == {Artwork.Status.PENDING}
    assert Prediction.objects.count() == 0


def test_without_an_active_model_artworks_stay_pending_with_a_warning(collection, settings, tmp_path):
    settings.ARTSITE_MODEL_DIRS = [tmp_path / "no-models"]
    settings.ARTSITE_DEFAULT_MODEL = ""
    result, _ = run(collection)
    assert result.imported == 6 and result.left_pending == 6
    assert "No model version is active" in result.warnings[0]


def test_missing_model_stops_the_import_before_anything_is_written(
    active_model, collection, settings, tmp_path
):
    settings.ARTSITE_MODEL_DIRS = [tmp_path / "elsewhere"]  # the active version's folder is gone
    with pytest.raises(ImportFailed, match="test-tiny"):
        artworks_import(folder=collection)
    assert Artwork.objects.count() == 0 and stored_files() == set()


def test_damaged_model_stops_the_import_before_anything_is_written(
    active_model, collection, settings, tmp_path
):
    import shutil

    from inference.loader import clear_cache

    damaged = tmp_path / "models"
    shutil.copytree(Path(active_model.path), damaged / active_model.version)
    (damaged / active_model.version / "model.tflite").write_bytes(b"not a zip")
    settings.ARTSITE_MODEL_DIRS = [damaged]
    clear_cache()
    try:
        with pytest.raises(ImportFailed, match="unavailable"):
            artworks_import(folder=collection)
    finally:
        clear_cache()
    assert Artwork.objects.count() == 0 and stored_files() == set()


def test_a_finished_folder_does_not_even_load_the_model(active_model, collection):
    run(collection)
    from inference.loader import clear_cache

    clear_cache()
    result, _ = run(collection)
    assert result.imported == 0 and result.model_load_seconds == 0.0


def test_command_prints_a_summary_and_writes_the_report(active_model, collection, tmp_path):
    out = io.StringIO()
    report = tmp_path / "skipped.csv"
    call_command("import_artworks", str(collection), "--report", str(report), "--no-progress", stdout=out)
    text = out.getvalue()
    assert "Import summary" in text and "Images per second" in text
    assert "folder unsorted/" in text and "without a label" in text
    rows = list(csv.DictReader(report.open()))
    assert len(rows) == 5 and {"path", "reason", "detail"} <= set(rows[0])
    assert Artwork.objects.count() == 6


def test_command_dry_run_and_errors(active_model, collection, tmp_path):
    out = io.StringIO()
    call_command("import_artworks", str(collection), "--dry-run", "--no-progress", stdout=out)
    assert "Dry run" in out.getvalue() and Artwork.objects.count() == 0
    with pytest.raises(CommandError, match="not a folder"):
        call_command("import_artworks", str(tmp_path / "nowhere"), "--no-progress", stdout=io.StringIO())
    with pytest.raises(CommandError, match="limit"):
        call_command("import_artworks", str(collection), "--limit", "-1", stdout=io.StringIO())
