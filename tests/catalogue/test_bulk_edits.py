"""Bulk edits: one action over many works (by hand or by filter), every change in each work's history, and an undo
that restores what was not changed since and says what it left."""

from __future__ import annotations

import pytest

from catalogue.models import Artwork, ArtworkChange, ArtworkType, BulkEdit, LabelCorrection
from catalogue.selectors.history import artworks_selected
from catalogue.services.artworks import artwork_update
from catalogue.services.bulk_edits import BulkEditRefused, BulkValues, bulk_edit_apply, bulk_edit_undo
from catalogue.services.labels import label_correct
from tests.factories import ArtworkFactory

pytestmark = pytest.mark.django_db


def _apply(artworks, curator, **values):  # type: ignore[no-untyped-def]
    queryset, selection = artworks_selected(ids=[a.pk for a in artworks])
    return bulk_edit_apply(
        artworks=queryset, values=BulkValues(**values), selection=selection, user=curator, source="portal"
    )


def test_bulk_edit_sets_every_field_on_every_work_and_records_it(curator):
    drawings = ArtworkType.objects.get(slug="drawings")
    sculpture = ArtworkType.objects.get(slug="sculpture")
    works = [ArtworkFactory(artist="Anon", date="") for _ in range(3)]
    label_correct(artwork=works[0], to_type=drawings, user=curator, source="portal")
    edit = _apply(
        works, curator, artist="Rembrandt", date="1650", artwork_type=sculpture, note="From the 2026 scan"
    )
    assert (edit.count, edit.changed, edit.values["type"]) == (3, 3, "sculpture")
    for work in works:
        work.refresh_from_db()
        assert (work.artist, work.date, work.curator_type, work.notes) == (
            "Rembrandt",
            "1650",
            sculpture,
            "From the 2026 scan",
        )
        assert work.label_provenance == Artwork.Provenance.SET
    # The type goes through label_correct: the audit trail says "bulk".
    assert LabelCorrection.objects.filter(source="bulk", to_type=sculpture).count() == 3
    rows = ArtworkChange.objects.filter(bulk_edit=edit)
    assert rows.count() == 3 * 4 and set(rows.values_list("source", flat=True)) == {"bulk"}


def test_bulk_edit_by_filter_takes_only_the_works_the_filter_shows(curator):
    painting = ArtworkType.objects.get(slug="painting")
    shown = [ArtworkFactory(title=f"Lake view {i}") for i in range(2)]
    hidden = ArtworkFactory(title="Mountain")
    queryset, selection = artworks_selected(filters={"search": "Lake", "page": "2"})
    edit = bulk_edit_apply(
        artworks=queryset,
        values=BulkValues(artwork_type=painting),
        selection=selection,
        user=curator,
        source="api",
    )
    assert edit.count == 2 and edit.selection == {"filter": {"search": "Lake"}}
    assert {a.pk for a in Artwork.objects.filter(curator_type=painting)} == {w.pk for w in shown}
    hidden.refresh_from_db()
    assert hidden.curator_type is None


def test_undo_restores_the_old_values_including_no_label(curator):
    drawings = ArtworkType.objects.get(slug="drawings")
    works = [ArtworkFactory(artist=f"Artist {i}") for i in range(2)]
    label_correct(artwork=works[0], to_type=drawings, user=curator, source="import")  # imported label
    edit = _apply(
        works, curator, artist="Same", artwork_type=ArtworkType.objects.get(slug="painting"), note="x"
    )
    undone = bulk_edit_undo(bulk_edit=edit, user=curator)
    assert undone.undo_result == {"restored": 2, "skipped": []}
    first, second = (Artwork.objects.get(pk=w.pk) for w in works)
    assert (first.artist, first.curator_type, first.label_provenance, first.notes) == (
        "Artist 0",
        drawings,
        "imported",
        "",
    )
    assert (second.artist, second.curator_type, second.label_provenance) == ("Artist 1", None, "")
    # The undo is recorded too, in each artwork's history.
    assert ArtworkChange.objects.filter(bulk_edit=edit, source="undo").count() == 2 * 3


def test_undo_leaves_a_field_changed_since_and_says_so(curator):
    works = [ArtworkFactory(artist="Old", date="1500") for _ in range(2)]
    edit = _apply(works, curator, artist="Bulk", date="1600")
    artwork_update(artwork=works[1], user=curator, source="portal", artist="Fixed by hand")
    undone = bulk_edit_undo(bulk_edit=edit, user=curator)
    assert undone.undo_result["skipped"] == [
        {"artwork": works[1].pk, "field": "artist", "reason": "changed since"}
    ]
    first, second = (Artwork.objects.get(pk=w.pk) for w in works)
    assert (first.artist, first.date) == ("Old", "1500")
    assert (second.artist, second.date) == ("Fixed by hand", "1500")  # its date was untouched since: restored


def test_undo_twice_is_refused_and_a_refused_edit_writes_nothing(curator):
    work = ArtworkFactory()
    edit = _apply([work], curator, artist="Once")
    bulk_edit_undo(bulk_edit=edit, user=curator)
    with pytest.raises(BulkEditRefused):
        bulk_edit_undo(bulk_edit=edit, user=curator)
    with pytest.raises(BulkEditRefused):
        _apply([work], curator)  # nothing to set
    with pytest.raises(BulkEditRefused):
        _apply([work], curator, artist="x" * 301)
    assert BulkEdit.objects.count() == 1


def test_portal_bulk_edit_and_undo(curator_client):
    works = [ArtworkFactory(artist="Before") for _ in range(2)]
    response = curator_client.post(
        "/artworks/bulk-edit/", {"scope": "ids", "ids": [w.pk for w in works], "artist": "Portal", "type": ""}
    )
    assert response.status_code == 302 and response["Location"] == "/bulk-edits/"
    edit = BulkEdit.objects.get()
    assert set(Artwork.objects.values_list("artist", flat=True)) == {"Portal"}
    page = curator_client.get("/bulk-edits/").content.decode()
    assert f"/bulk-edits/{edit.pk}/undo/" in page
    assert curator_client.post(f"/bulk-edits/{edit.pk}/undo/").status_code == 302
    assert set(Artwork.objects.values_list("artist", flat=True)) == {"Before"}
    # By filter: the catalogue's query string.
    curator_client.post(
        "/artworks/bulk-edit/", {"scope": "filter", "filter": "search=nothing-matches", "date": "1"}
    )
    assert BulkEdit.objects.count() == 1  # no works selected: refused, with a message


def test_api_bulk_edit_undo_and_errors(client, curator, viewer):
    works = [ArtworkFactory(artist="Before") for _ in range(2)]
    body = {"ids": [w.pk for w in works], "set": {"type": "engraving", "date": "1700"}}
    client.force_login(viewer)
    assert (
        client.post("/api/v1/artworks/bulk-edit/", body, content_type="application/json").status_code == 403
    )
    client.force_login(curator)
    response = client.post("/api/v1/artworks/bulk-edit/", body, content_type="application/json")
    assert response.status_code == 201, response.json()
    edit = response.json()
    assert (edit["count"], edit["changed"], edit["values"]) == (2, 2, {"date": "1700", "type": "engraving"})
    bad = client.post(
        "/api/v1/artworks/bulk-edit/",
        {"ids": [works[0].pk], "set": {"type": "nope"}},
        content_type="application/json",
    )
    assert bad.status_code == 400 and bad.json()["code"]
    empty = client.post(
        "/api/v1/artworks/bulk-edit/", {"ids": [works[0].pk], "set": {}}, content_type="application/json"
    )
    assert empty.status_code == 400 and "values" in empty.json()["fields"]
    assert client.post(f"/api/v1/bulk-edits/{edit['id']}/undo/").status_code == 200
    again = client.post(f"/api/v1/bulk-edits/{edit['id']}/undo/")
    assert again.status_code == 409 and again.json()["code"] == "already_undone"
    assert set(Artwork.objects.values_list("date", flat=True)) == {""}


def test_admin_bulk_action_asks_then_applies(client, curator):
    works = [ArtworkFactory(artist="Admin before") for _ in range(2)]
    client.force_login(curator)
    ids = [str(w.pk) for w in works]
    form = client.post("/admin/catalogue/artwork/", {"action": "bulk_edit", "_selected_action": ids})
    assert form.status_code == 200 and b"Apply to 2 work(s)" in form.content
    assert not BulkEdit.objects.exists()
    done = client.post(
        "/admin/catalogue/artwork/",
        {"action": "bulk_edit", "_selected_action": ids, "apply": "1", "artist": "Admin after"},
    )
    assert done.status_code == 302
    edit = BulkEdit.objects.get()
    assert edit.source == "admin" and edit.selection == {"ids": sorted(int(i) for i in ids)}
    assert set(Artwork.objects.values_list("artist", flat=True)) == {"Admin after"}
