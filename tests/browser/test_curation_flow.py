"""End to end in a real browser: log in, upload, wait for the worker's prediction, correct the type in the review
queue, and find the new type and its audit entry on the artwork's page.

The browser and the curator come from tests/browser/conftest.py.
"""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import PASSWORD
from tests.images import image_bytes

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

TYPE_KEYS = {"Drawing": "1", "Engraving": "2", "Iconography": "3", "Painting": "4", "Sculpture": "5"}


def test_upload_predict_review_and_audit_in_a_browser(
    live_server, browser_page, e2e_curator, active_model, celery_worker_process, tmp_path
):
    from catalogue.models import Artwork, LabelCorrection
    from tests.catalogue.curation_helpers import reopen_broker_pool

    reopen_broker_pool()  # the upload's enqueue runs in the live server thread, with this process's Celery app
    celery_worker_process.start()
    page = browser_page
    base = live_server.url

    # Log in.
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", "e2e-curator")
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit], input[type=submit]")
    assert "/accounts/login/" not in page.url, "login failed"

    # Upload a picture the test made.
    image = tmp_path / "harbour.jpg"
    image.write_bytes(image_bytes(42, size=(320, 240)))
    page.goto(f"{base}/artworks/upload/")
    page.set_input_files("input[name=image]", str(image))
    page.fill("input[name=title]", "Harbour at dusk")
    with page.expect_navigation():
        page.click("main button[type=submit]")
    match = re.search(r"/artworks/(\d+)/$", page.url)
    assert match, f"upload did not lead to the artwork page: {page.url}"
    pk = int(match.group(1))

    # The page polls the status and reloads itself when the worker is done.
    try:
        page.wait_for_selector("table.probabilities", timeout=150_000)
    except Exception:
        pytest.fail(
            f"no prediction appeared; artwork status {Artwork.objects.get(pk=pk).status!r}\n"
            f"worker log:\n{celery_worker_process.log()[-3000:]}"
        )
    predicted = page.inner_text("h2 .badge").strip()
    assert predicted in TYPE_KEYS

    # The review queue shows it (the only unlabelled work); a key press gives it another type.
    page.goto(f"{base}/review/")
    assert page.get_attribute("#review", "data-artwork") == str(pk)
    assert page.inner_text("#predicted-type").strip() == predicted
    new_type = next(name for name in TYPE_KEYS if name != predicted)
    with page.expect_navigation():
        page.keyboard.press(TYPE_KEYS[new_type])
    page.wait_for_selector("#queue-empty")
    assert page.inner_text("#reviewed-count").strip() == "1"

    # The artwork's page shows the curator's type and the audit entry.
    page.goto(f"{base}/artworks/{pk}/")
    assert page.inner_text("h2 .badge").strip() == new_type
    history = page.inner_text("table.history")
    assert (
        "no label" in history  # the work had only the model's type before
        and new_type in history
        and "Review queue" in history
        and "e2e-curator" in history
    )

    correction = LabelCorrection.objects.get(artwork_id=pk)
    assert (correction.source, correction.from_type.name, correction.to_type.name, correction.user) == (
        "review",
        predicted,
        new_type,
        e2e_curator,
    )
