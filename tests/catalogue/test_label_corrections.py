"""A reviewed corrections file: the curators' decisions written out, and applied again on a fresh catalogue."""

import csv

import pytest
from django.core.management import call_command

from catalogue.models import Artwork, ArtworkType, LabelCorrection
from catalogue.services.labels import label_confirm, label_correct
from tests.factories import ArtworkFactory

pytestmark = pytest.mark.django_db


def imported(slug: str) -> Artwork:
    artwork = ArtworkFactory(status=Artwork.Status.READY)
    label_correct(
        artwork=artwork, to_type=ArtworkType.objects.get(slug=slug), source=LabelCorrection.Source.IMPORT
    )
    return artwork


def test_export_then_apply_restores_every_decision(tmp_path, curator):
    kept, moved, untouched = imported("engraving"), imported("drawings"), imported("painting")
    label_confirm(artwork=kept, user=curator, source=LabelCorrection.Source.MISLABELS, note="a woodcut")
    label_correct(
        artwork=moved,
        to_type=ArtworkType.objects.get(slug="painting"),
        user=curator,
        source=LabelCorrection.Source.MISLABELS,
        note="oil on canvas",
    )
    path = tmp_path / "corrections.csv"
    call_command("label_corrections", "export", str(path))

    rows = {r["sha256"]: r for r in csv.DictReader(path.open())}
    assert set(rows) == {kept.sha256, moved.sha256}  # the untouched import is no decision
    assert (rows[kept.sha256]["old_type"], rows[kept.sha256]["new_type"], rows[kept.sha256]["decision"]) == (
        "engraving",
        "engraving",
        "confirmed",
    )
    assert (rows[moved.sha256]["old_type"], rows[moved.sha256]["new_type"], rows[moved.sha256]["note"]) == (
        "drawings",
        "painting",
        "oil on canvas",
    )

    # A fresh catalogue with the same images, labelled from their folders as the import does.
    Artwork.objects.filter(pk=kept.pk).update(label_provenance=Artwork.Provenance.IMPORTED)
    Artwork.objects.filter(pk=moved.pk).update(
        curator_type=ArtworkType.objects.get(slug="drawings"), label_provenance=Artwork.Provenance.IMPORTED
    )
    call_command("label_corrections", "apply", str(path))
    kept.refresh_from_db(), moved.refresh_from_db(), untouched.refresh_from_db()
    assert (kept.curator_type.slug, kept.label_provenance) == ("engraving", Artwork.Provenance.CONFIRMED)
    assert (moved.curator_type.slug, moved.label_provenance) == ("painting", Artwork.Provenance.SET)
    assert untouched.label_provenance == Artwork.Provenance.IMPORTED
    assert moved.label_corrections.filter(source=LabelCorrection.Source.FILE, note="oil on canvas").exists()

    audit_rows = LabelCorrection.objects.count()
    call_command("label_corrections", "apply", str(path))  # idempotent
    assert LabelCorrection.objects.count() == audit_rows


def test_apply_reports_unknown_types_and_missing_artworks(tmp_path, capsys, db):
    artwork = imported("sculpture")
    path = tmp_path / "c.csv"
    path.write_text("sha256,new_type,note\n" + f"{artwork.sha256},etching,\n" + f"{'0' * 64},painting,\n")
    call_command("label_corrections", "apply", str(path))
    out = capsys.readouterr()
    assert "1 artworks not in the catalogue, 1 rows with an unknown type" in out.out
    assert "unknown type: etching" in out.err
    artwork.refresh_from_db()
    assert (
        artwork.curator_type.slug == "sculpture" and artwork.label_provenance == Artwork.Provenance.IMPORTED
    )


def test_apply_refuses_a_file_without_the_columns(tmp_path):
    from django.core.management.base import CommandError

    path = tmp_path / "bad.csv"
    path.write_text("id,type\n1,painting\n")
    with pytest.raises(CommandError, match="lacks the column"):
        call_command("label_corrections", "apply", str(path))
