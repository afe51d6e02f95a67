"""End to end in a real browser: log in, upload, wait for the worker's prediction, correct the type in the review
queue, and find the new type and its audit entry on the artwork's page.

Headless Chromium from Debian's ``chromium`` package, driven by Playwright (never ``playwright install``: nothing is
downloaded at run time). ``make test`` installs the package when it is missing; so does the ``chromium`` fixture
below when run as root with apt, and the test is skipped, saying why, only where apt cannot be used.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.images import image_bytes

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TYPE_KEYS = {"Drawing": "1", "Engraving": "2", "Iconography": "3", "Painting": "4", "Sculpture": "5"}
PASSWORD = "e2e-secret-pw"


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium, installed with apt when missing (root only)."""
    if CHROMIUM.exists():
        return CHROMIUM
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip(
            f"{CHROMIUM} is missing and apt-get cannot install it here (no apt-get, or not root): "
            "install Debian's `chromium` package to run the browser test."
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            pytest.fail(f"`{' '.join(command)}` failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    assert CHROMIUM.exists(), "apt-get installed chromium but /usr/bin/chromium is not there"
    return CHROMIUM


@pytest.fixture
def browser_page(chromium, monkeypatch):  # type: ignore[no-untyped-def]
    from django.db import connections
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls the test makes between browser steps
    # are still plain synchronous ones.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()
            # While Playwright's event loop runs in this thread, Django keeps this thread's database connections in
            # a context-local store, apart from the connection pytest-django closes: close them here, or that
            # session keeps the test database open and dropping it fails at the end of the run.
            connections.close_all()


@pytest.fixture
def e2e_curator(db):  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user = get_user_model().objects.create_user("e2e-curator", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name="Curators"))
    return user


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
        predicted in history
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
