"""Many files at once, in a real browser: choose several images (one already catalogued, one chosen twice) and a
text file on the upload page, set the shared metadata, and read each row's own outcome (static/js/upload.js).

The browser and the curator come from tests/browser/conftest.py.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from tests.images import image_bytes

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

DONE = "tr.upload-row:not([data-outcome=waiting]):not([data-outcome=queued]):not([data-outcome=sending])"


def test_many_files_each_with_its_own_outcome(live_server, browser_page, e2e_curator, broker, tmp_path):
    from catalogue.models import Artwork, ArtworkType
    from catalogue.services.artworks import artwork_create
    from tests.catalogue.curation_helpers import reopen_broker_pool

    reopen_broker_pool()  # the uploads enqueue in the live server thread, with this process's Celery app
    already = image_bytes(11, size=(160, 120))
    existing = artwork_create(data=already, title="Already catalogued", enqueue=False)
    twin = image_bytes(12, size=(160, 120))
    files = {
        "harbour_at_dusk.jpg": image_bytes(10, size=(320, 240)),
        "study.png": image_bytes(13, size=(120, 160), fmt="PNG"),
        "again.jpg": already,
        "twin-a.jpg": twin,
        "twin-b.jpg": twin,
        "notes.txt": b"Not an image: a curator's notes.",
    }
    paths = []
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        paths.append(str(path))

    page = browser_page
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/artworks/upload/")
    page.wait_for_selector("#multi-upload:not([hidden])")  # the script shows the many-files part
    page.set_input_files("#batch-files", paths)
    assert page.locator("tr.upload-row").count() == len(files)
    titles = page.locator("tr.upload-row td:nth-child(2) input")
    assert titles.nth(0).input_value() == "harbour at dusk"  # a title per file, from its name
    titles.nth(1).fill("Study of a hand")
    page.fill("#batch_artist", "Berthe Morisot")
    page.fill("#batch_date", "c. 1875")
    page.select_option("#batch_type", "painting")
    assert page.inner_text("#upload-start") == "Upload 6 files"
    page.click("#upload-start")
    # A locator, not wait_for_function: the page's Content-Security-Policy forbids the eval that one needs.
    expect(page.locator(DONE)).to_have_count(len(files), timeout=60_000)

    def row(name: str):  # type: ignore[no-untyped-def]
        return page.locator("tr.upload-row").filter(has=page.locator(".file-name", has_text=name))

    outcomes = {
        name: (row(name).get_attribute("data-outcome"), row(name).locator(".outcome").inner_text())
        for name in files
    }
    stored = {a.title: a for a in Artwork.objects.exclude(pk=existing.pk)}

    assert outcomes["harbour_at_dusk.jpg"][0] == "classifying"
    assert f"#{stored['harbour at dusk'].pk}" in outcomes["harbour_at_dusk.jpg"][1]
    assert outcomes["study.png"][0] == "classifying"
    assert outcomes["again.jpg"] == ("duplicate", f"Duplicate of #{existing.pk}: “Already catalogued”")
    assert row("again.jpg").locator(".outcome a").get_attribute("href") == f"/artworks/{existing.pk}/"
    # The same file twice in one batch: whichever arrived first is stored, the other is its duplicate.
    assert sorted([outcomes["twin-a.jpg"][0], outcomes["twin-b.jpg"][0]]) == ["classifying", "duplicate"]
    assert outcomes["notes.txt"][0] == "refused" and "not an image" in outcomes["notes.txt"][1]
    # Every file was sent: its progress bar is full.
    assert all(row(name).locator("progress").get_attribute("value") == "100" for name in files)

    # Stored with the shared metadata and their own titles; nothing of the refused file.
    assert len(stored) == 3 and {"harbour at dusk", "Study of a hand"} <= set(stored)
    assert len({"twin-a", "twin-b"} & set(stored)) == 1
    painting = ArtworkType.objects.get(slug="painting")
    for artwork in stored.values():
        assert (artwork.artist, artwork.date, artwork.curator_type_id) == (
            "Berthe Morisot",
            "c. 1875",
            painting.pk,
        )
        assert artwork.status == Artwork.Status.PENDING
