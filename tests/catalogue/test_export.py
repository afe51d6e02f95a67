"""The catalogue export: rows filtered as the list is, CSV and JSON lines, the command (with its images), the portal's
Export button, and the round trip — an export is an import manifest that restores the works on an empty site."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from catalogue.models import Artwork, ArtworkType, LabelCorrection
from catalogue.selectors.exports import ExportFiltersInvalid, artworks_export
from catalogue.services.artworks import artwork_delete
from catalogue.services.labels import label_correct
from tests.factories import ArtworkFactory, prediction_for
from tests.images import image_bytes

pytestmark = pytest.mark.django_db

SLUGS = ["drawings", "engraving", "iconography", "painting", "sculpture"]


@pytest.fixture(autouse=True)
def _media(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings.MEDIA_ROOT = tmp_path / "media"


def _embedding(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=128)
    return v / np.linalg.norm(v)


@pytest.fixture
def works(active_model, curator):  # type: ignore[no-untyped-def]
    """Three works: one a curator labelled (engraving, set), one with an imported label (sculpture), one with only
    the model's prediction (painting at 0.7); plus a pending one without any prediction."""
    set_label = ArtworkFactory(
        status="ready",
        title="The Night Watch, study",
        artist="Rembrandt",
        date="c. 1642",
        accession_number="SK-C-5",
        description='Pen and ink, "after" the painting',
        data=image_bytes(11, size=(80, 60)),
    )
    imported = ArtworkFactory(
        status="ready", title="Bust", artist="Houdon", date="1778", data=image_bytes(12, size=(50, 70))
    )
    predicted = ArtworkFactory(status="ready", title="Vase of flowers", artist="", data=image_bytes(13))
    pending = ArtworkFactory(status="pending", title="Not yet", data=image_bytes(14))
    prediction_for(
        set_label, version=active_model, type_slug="drawings", embedding=_embedding(1), confidence=0.6
    )
    prediction_for(
        imported, version=active_model, type_slug="sculpture", embedding=_embedding(2), confidence=0.9
    )
    prediction_for(
        predicted, version=active_model, type_slug="painting", embedding=_embedding(3), confidence=0.7
    )
    label_correct(
        artwork=set_label, to_type=ArtworkType.objects.get(slug="engraving"), user=curator, source="portal"
    )
    Artwork.objects.filter(pk=imported.pk).update(
        curator_type=ArtworkType.objects.get(slug="sculpture"), label_provenance=Artwork.Provenance.IMPORTED
    )
    return {"set": set_label, "imported": imported, "predicted": predicted, "pending": pending}


def _rows(filters=None) -> list[dict]:  # type: ignore[no-untyped-def]
    return list(artworks_export(filters=filters).rows())


def test_rows_carry_metadata_label_provenance_and_prediction(works, active_model):
    by_title = {row["title"]: row for row in _rows()}
    assert set(by_title) == {"The Night Watch, study", "Bust", "Vase of flowers", "Not yet"}

    labelled = by_title["The Night Watch, study"]
    assert labelled["artist"] == "Rembrandt" and labelled["date"] == "c. 1642"
    assert (
        labelled["accession"] == "SK-C-5" and labelled["description"] == 'Pen and ink, "after" the painting'
    )
    assert labelled["type"] == "engraving" and labelled["label_provenance"] == "set"
    assert labelled["effective_type"] == "engraving" and labelled["effective_type_source"] == "label"
    assert labelled["predicted_type"] == "drawings" and labelled["confidence"] == pytest.approx(0.6)
    assert labelled["probabilities"]["drawings"] == pytest.approx(0.6)
    assert set(labelled["probabilities"]) == set(SLUGS)
    assert labelled["model_version"] == active_model.version
    assert labelled["width"] == 80 and labelled["height"] == 60
    assert labelled["sha256"] == works["set"].sha256 and labelled["file_size"] == works["set"].file_size
    assert labelled["path"] == f"{works['set'].sha256}.jpg"
    assert labelled["image_url"].endswith(f"{works['set'].sha256}.jpg")

    assert by_title["Bust"]["type"] == "sculpture" and by_title["Bust"]["label_provenance"] == "imported"
    predicted = by_title["Vase of flowers"]
    assert predicted["type"] == "" and predicted["label_provenance"] == ""
    assert predicted["effective_type"] == "painting" and predicted["effective_type_source"] == "prediction"
    pending = by_title["Not yet"]
    assert pending["effective_type"] == "" and pending["effective_type_source"] == ""
    assert (
        pending["confidence"] is None
        and pending["probabilities"] is None
        and pending["model_version"] is None
    )


@pytest.mark.parametrize(
    ("filters", "titles"),
    [
        ({"type": "engraving"}, {"The Night Watch, study"}),
        ({"type": "painting"}, {"Vase of flowers"}),
        ({"provenance": "imported"}, {"Bust"}),
        ({"provenance": "none"}, {"Vase of flowers", "Not yet"}),
        ({"status": "pending"}, {"Not yet"}),
        ({"search": "rembr"}, {"The Night Watch, study"}),
        ({"predicted": "sculpture"}, {"Bust"}),
    ],
)
def test_rows_honour_the_catalogues_filters(works, filters, titles):
    assert {row["title"] for row in _rows(filters)} == titles


def test_bad_filters_are_refused_before_any_row(works):
    with pytest.raises(ExportFiltersInvalid, match="type"):
        artworks_export(filters={"type": "watercolour"})


def test_rows_come_from_a_server_side_cursor(works):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    export = artworks_export(filters={})
    rows = export.rows()
    with CaptureQueriesContext(connection) as queries:
        assert len(list(rows)) == 4
    # One cursor for all rows, nothing per row (the savepoints are its transaction's, inside the test's own).
    assert [q["sql"] for q in queries if "SAVEPOINT" not in q["sql"]] == [queries[1]["sql"]]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_rows_stream_from_a_cursor_postgresql_does_not_materialise_first(works):
    # In autocommit, as a web request runs, a cursor WITH HOLD would be computed whole before its first row (49 s
    # for a million works): the export's cursor must be an ordinary one, in a transaction, while rows are read.
    from django.db import connection

    rows = artworks_export(filters={}).rows()
    next(rows)
    with connection.cursor() as cursor:
        cursor.execute("SELECT is_holdable FROM pg_cursors")
        assert cursor.fetchall() == [(False,)]
    assert len(list(rows)) == 3  # and the rest follow from it
    assert not connection.in_atomic_block  # the transaction ends with the rows


def test_csv_has_a_header_and_a_probability_column_per_type(works, tmp_path):
    out = tmp_path / "export.csv"
    call_command("export_artworks", str(out), "--no-progress", stderr=io.StringIO())
    rows = list(csv.DictReader(out.open(encoding="utf-8", newline="")))
    assert len(rows) == 4
    header = list(rows[0])
    assert header[:7] == ["path", "title", "artist", "date", "accession", "type", "description"]
    assert [c for c in header if c.startswith("probability_")] == [f"probability_{s}" for s in SLUGS]
    row = next(r for r in rows if r["title"] == "Vase of flowers")
    assert float(row["probability_painting"]) == pytest.approx(0.7)
    assert sum(float(row[f"probability_{s}"]) for s in SLUGS) == pytest.approx(1.0)
    assert row["confidence"] == "0.7" and row["type"] == ""
    quoted = next(r for r in rows if r["accession"] == "SK-C-5")
    assert quoted["description"] == 'Pen and ink, "after" the painting'
    assert next(r for r in rows if r["title"] == "Not yet")["probability_painting"] == ""


def test_jsonl_is_one_object_a_line_with_filters_from_the_command(works, tmp_path):
    out = tmp_path / "export.jsonl"
    stderr = io.StringIO()
    call_command("export_artworks", str(out), "--type", "sculpture", "--no-progress", stderr=stderr)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    row = json.loads(lines[0])
    assert row["title"] == "Bust" and row["type"] == "sculpture" and row["probabilities"]["sculpture"] == 0.9
    assert "Wrote 1 works" in stderr.getvalue()


def test_command_refuses_bad_filters_and_writes_nothing(works, tmp_path):
    out = tmp_path / "export.csv"
    with pytest.raises(CommandError, match="Invalid filters"):
        call_command("export_artworks", str(out), "--provenance", "guessed", "--no-progress")
    assert not out.exists()


def test_command_exports_the_audit_trail(works, tmp_path, curator):
    curator.first_name, curator.last_name = "Ada", "Lovelace"
    curator.save()
    out = tmp_path / "corrections.csv"
    call_command("export_artworks", str(out), "--label-corrections", "--no-progress", stderr=io.StringIO())
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == 1
    assert rows[0]["from_type"] == "drawings" and rows[0]["to_type"] == "engraving"
    assert rows[0]["source"] == "portal" and rows[0]["user"] == "Ada Lovelace"
    assert rows[0]["sha256"] == works["set"].sha256


def test_portal_export_keeps_the_filters(works, viewer_client):
    response = viewer_client.get("/artworks/export/?type=engraving&format=csv")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode("utf-8"))))
    assert [r["title"] for r in rows] == ["The Night Watch, study"]


def test_portal_export_with_bad_filters_goes_back_with_a_message(works, viewer_client):
    response = viewer_client.get("/artworks/export/?type=watercolour&format=csv", follow=True)
    assert response.redirect_chain[-1][0].startswith("/?type=watercolour")
    assert "nothing was exported" in response.content.decode()


def test_catalogue_page_has_export_links_with_the_current_filters(works, viewer_client):
    page = viewer_client.get("/?type=painting").content.decode()
    assert "/artworks/export/?type=painting&amp;format=csv" in page
    assert "/artworks/export/?type=painting&amp;format=jsonl" in page


@pytest.mark.parametrize("export_format", ["csv", "jsonl"])
def test_round_trip_an_export_restores_metadata_and_labels_on_an_empty_site(works, tmp_path, export_format):
    folder, manifest = tmp_path / "images", tmp_path / f"artworks.{export_format}"
    call_command(
        "export_artworks", str(manifest), "--images", str(folder), "--no-progress", stderr=io.StringIO()
    )
    exported = {p.name for p in folder.iterdir()}
    assert exported == {f"{w.sha256}.jpg" for w in works.values()}

    for artwork in Artwork.objects.all():
        artwork_delete(artwork=artwork)
    # The label history outlives the deleted works (tied to their deletion records), but no longer to any artwork.
    assert not Artwork.objects.exists() and not LabelCorrection.objects.filter(artwork__isnull=False).exists()

    call_command(
        "import_artworks", str(folder), "--manifest", str(manifest), "--no-progress", stdout=io.StringIO()
    )
    restored = {a.sha256: a for a in Artwork.objects.select_related("curator_type")}
    assert set(restored) == {w.sha256 for w in works.values()}
    night_watch = restored[works["set"].sha256]
    assert (night_watch.title, night_watch.artist, night_watch.date) == (
        "The Night Watch, study",
        "Rembrandt",
        "c. 1642",
    )
    assert night_watch.accession_number == "SK-C-5"
    assert night_watch.description == 'Pen and ink, "after" the painting'
    assert (night_watch.width, night_watch.height) == (80, 60)
    # The labels come back, given at import and audited so.
    assert night_watch.curator_type.slug == "engraving" and night_watch.label_provenance == "imported"
    bust = restored[works["imported"].sha256]
    assert bust.curator_type.slug == "sculpture" and bust.label_provenance == "imported"
    corrections = LabelCorrection.objects.filter(source="import", artwork__isnull=False)
    assert {(c.artwork.sha256, c.to_type.slug) for c in corrections} == {
        (works["set"].sha256, "engraving"),
        (works["imported"].sha256, "sculpture"),
    }
    # Works without a label stay without one: the prediction is not turned into a label.
    vase = restored[works["predicted"].sha256]
    assert vase.title == "Vase of flowers" and vase.curator_type is None and vase.label_provenance == ""
    assert restored[works["pending"].sha256].curator_type is None


def test_an_export_that_fails_half_way_leaves_no_file(works, tmp_path, settings):
    out, folder = tmp_path / "artworks.csv", tmp_path / "images"
    (settings.MEDIA_ROOT / works["predicted"].image.name).unlink()  # one image lost from storage
    with pytest.raises(CommandError, match="Cannot copy the image"):
        call_command("export_artworks", str(out), "--images", str(folder), "--no-progress")
    assert not out.exists() and not (tmp_path / "artworks.csv.part").exists()
