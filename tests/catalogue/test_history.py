"""Every change of an artwork is in its history (who, when, where, old -> new), whatever path made it, and the
history outlives the artwork."""

from __future__ import annotations

import pytest

from catalogue.models import ArtworkChange, ArtworkType, LabelCorrection
from catalogue.selectors.history import artwork_history, artwork_timeline
from catalogue.services.artworks import ArtworkRejected, artwork_delete, artwork_update
from catalogue.services.labels import label_confirm, label_correct
from tests.factories import ArtworkFactory

pytestmark = pytest.mark.django_db


def test_a_metadata_edit_records_each_changed_field_only(curator):
    artwork = ArtworkFactory(title="Old title", artist="Anon", date="1650")
    artwork_update(
        artwork=artwork,
        user=curator,
        source=LabelCorrection.Source.PORTAL,
        title="New title",
        artist="Anon",
        notes="n",
    )
    rows = {c.field: c for c in artwork_history(artwork_id=artwork.pk)}
    assert set(rows) == {"title", "notes"}  # artist was sent unchanged: nothing to record
    assert (rows["title"].old_value, rows["title"].new_value) == ("Old title", "New title")
    assert rows["title"].user == curator and rows["title"].source == "portal"
    artwork.refresh_from_db()
    assert artwork.title == "New title" and artwork.notes == "n"


def test_a_refused_edit_records_nothing(curator):
    artwork = ArtworkFactory(title="Kept")
    with pytest.raises(ArtworkRejected):
        artwork_update(artwork=artwork, user=curator, source="api", title="  ")
    assert not artwork_history(artwork_id=artwork.pk).exists()


def test_type_changes_are_in_the_same_timeline_with_their_provenance(curator):
    artwork = ArtworkFactory()
    painting = ArtworkType.objects.get(slug="painting")
    label_correct(artwork=artwork, to_type=painting, user=curator, source="review", note="looked")
    label_confirm(artwork=artwork, user=curator, source="portal")  # same type, but now confirmed
    artwork_update(artwork=artwork, user=curator, source="portal", date="c. 1700")
    timeline = artwork_timeline(artwork_id=artwork.pk)
    assert [e.change.field for e in timeline] == ["date", "type", "type"]  # newest first
    first = timeline[2].change
    assert first.old_value == {"type": None, "provenance": ""}
    assert first.new_value == {"type": "painting", "provenance": "set"}
    assert first.source == "review" and first.note == "looked"
    assert timeline[1].change.new_value == {"type": "painting", "provenance": "confirmed"}
    assert (
        timeline[2].old == "no label (the model's type)" and timeline[2].new == "Painting (set by a curator)"
    )


def test_the_history_outlives_the_artwork(curator):
    artwork = ArtworkFactory(artist="A")
    artwork_update(artwork=artwork, user=curator, source="api", artist="B")
    pk = artwork.pk
    artwork_delete(artwork=artwork)
    change = ArtworkChange.objects.get(artwork_ref=pk)
    assert change.artwork is None and (change.old_value, change.new_value) == ("A", "B")


def test_api_patch_is_recorded_and_history_endpoint_shows_it(client, curator, viewer):
    artwork = ArtworkFactory(artist="Before")
    client.force_login(curator)
    response = client.patch(
        f"/api/v1/artworks/{artwork.pk}/", {"artist": "After"}, content_type="application/json"
    )
    assert response.status_code == 200
    client.force_login(viewer)  # viewers read the history
    body = client.get(f"/api/v1/artworks/{artwork.pk}/history/").json()
    assert body["count"] == 1
    entry = body["results"][0]
    assert (entry["field"], entry["old_value"], entry["new_value"]) == ("artist", "Before", "After")
    assert entry["user"] == curator.username and entry["source"] == "api"
    assert client.get("/api/v1/artworks/999999/history/").status_code == 404


def test_admin_save_is_recorded(client, curator):
    artwork = ArtworkFactory(title="T", artist="Admin before")
    client.force_login(curator)
    url = f"/admin/catalogue/artwork/{artwork.pk}/change/"
    form = {
        "title": "T",
        "artist": "Admin after",
        "date": "",
        "accession_number": "",
        "description": "",
        "notes": "",
    }
    form.update({"set_type": "", "type_note": "", "_save": "Save"})
    # The inline formset's management form (the type history, read-only).
    form.update({"label_corrections-TOTAL_FORMS": "0", "label_corrections-INITIAL_FORMS": "0"})
    response = client.post(url, form)
    assert response.status_code == 302, response.content[:2000]
    change = ArtworkChange.objects.get(artwork_ref=artwork.pk)
    assert (change.field, change.new_value, change.source) == ("artist", "Admin after", "admin")


def test_the_artwork_page_shows_the_history(curator_client, curator):
    artwork = ArtworkFactory(artist="Page before")
    artwork_update(artwork=artwork, user=curator, source="portal", artist="Page after")
    html = curator_client.get(f"/artworks/{artwork.pk}/").content.decode()
    assert "History" in html and "Page before" in html and "Page after" in html


def test_portal_edit_is_recorded_and_refuses_bad_input(curator_client, curator):
    artwork = ArtworkFactory(title="Portal title", artist="Before")
    url = f"/artworks/{artwork.pk}/edit/"
    assert curator_client.get(url).status_code == 200
    form = {"title": "Portal title", "artist": "After", "date": "", "accession_number": "", "description": ""}
    response = curator_client.post(url, {**form, "notes": "checked the frame"})
    assert response.status_code == 302
    assert {c.field for c in artwork_history(artwork_id=artwork.pk)} == {"artist", "notes"}
    assert curator_client.post(url, {**form, "title": ""}).status_code == 400  # a form error, not a 500
