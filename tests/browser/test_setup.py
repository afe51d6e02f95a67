"""The browser tests' setup installs nothing: a missing browser is a skip with the reason, never an apt-get run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.browser.conftest import chromium_or_skip


def test_a_missing_browser_is_a_skip_that_says_how_to_get_it(tmp_path: Path, monkeypatch):
    def forbidden(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError(f"the test run tried to run {args[0] if args else kwargs}")

    monkeypatch.setattr(subprocess, "run", forbidden)
    monkeypatch.setattr(subprocess, "Popen", forbidden)
    monkeypatch.setattr(os, "system", forbidden)
    with pytest.raises(pytest.skip.Exception) as skipped:
        chromium_or_skip(tmp_path / "chromium")
    assert "make test" in str(skipped.value) and "missing" in str(skipped.value)


def test_a_present_browser_is_used_as_it_is(tmp_path: Path):
    browser = tmp_path / "chromium"
    browser.write_bytes(b"")
    assert chromium_or_skip(browser) == browser
