"""Browser fixtures: headless Chromium from Debian's ``chromium`` package, driven by Playwright (never
``playwright install``). Nothing is installed from inside the test run: ``make test`` installs the package first
(its ``chromium`` target), and where the browser is still missing the browser tests are skipped, saying why.
"""

from __future__ import annotations

from pathlib import Path

import pytest

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
PASSWORD = "e2e-secret-pw"


def chromium_or_skip(path: Path = CHROMIUM) -> Path:
    """The browser, or a skip that says how to get it; never installs anything."""
    if not path.exists():
        pytest.skip(
            f"{path} is missing: `make test` installs Debian's `chromium` package before the run "
            "(or run `make chromium`, or `apt-get install chromium`), then the browser tests run."
        )
    return path


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium, already installed (``make test`` does it); the test is skipped when it is missing."""
    return chromium_or_skip()


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


def log_in(page, base: str, username: str = "e2e-curator") -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit], input[type=submit]")
    assert "/accounts/login/" not in page.url, "login failed"
