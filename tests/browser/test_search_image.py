"""Search by image, in a real browser: choose an image, read its type and the similar works, show more, filter by
type, then add it to the catalogue with the same file (static/js/search_image.js). Nothing is stored before.

The browser and the curator come from tests/browser/conftest.py; the tiny test model classifies.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from tests.images import image_bytes

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_search_by_image_then_add_it(live_server, browser_page, e2e_curator, active_model, broker, tmp_path):
    from catalogue.models import Artwork
    from catalogue.services.classification import artwork_classify
    from tests.catalogue.curation_helpers import reopen_broker_pool
    from tests.factories import ArtworkFactory

    reopen_broker_pool()  # "Add" enqueues the classification in the live server thread
    for seed in range(8):
        artwork_classify(artwork_id=ArtworkFactory(data=image_bytes(200 + seed, size=(96, 72))).pk)
    query = tmp_path / "new_find.jpg"
    query.write_bytes(image_bytes(300, size=(200, 150)))
    count = Artwork.objects.count()

    page = browser_page
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/")
    page.click("nav >> text=Search by image")
    page.wait_for_load_state()  # the deferred script is connected; a file chosen earlier is searched too (below)
    page.set_input_files("input[name=image]", str(query))  # the script searches as soon as a file is chosen
    page.wait_for_selector("#image-search-result")
    assert page.locator("table.probabilities tr").count() == 5
    assert page.locator("#image-search-similar li.tile").count() == 5
    assert Artwork.objects.count() == count  # searching stored nothing

    page.click("#show-more")
    # A locator, not wait_for_function: the page's Content-Security-Policy forbids the eval that one needs.
    expect(page.locator("#image-search-similar li.tile")).to_have_count(8)
    assert page.locator("#show-more").count() == 0  # every ready work is shown

    page.select_option("select[name=type]", "painting")
    page.wait_for_selector("#image-search-similar h2:has-text('of type Painting')")
    assert Artwork.objects.count() == count

    assert page.input_value("#image-add-title") == "new find"
    page.fill("#image-add-title", "A new find")
    page.click("#image-add-button")
    page.wait_for_selector("#image-add-outcome[data-outcome=stored]")
    added = Artwork.objects.get(title="A new find")
    assert f"#{added.pk}" in page.inner_text("#image-add-outcome")
    assert added.file_size == query.stat().st_size and added.uploaded_by_id == e2e_curator.pk

    assert not page.is_enabled("#image-add-button")  # added once
    assert Artwork.objects.count() == count + 1
