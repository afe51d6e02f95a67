"""The possible-mislabels queue driven from the keyboard in a real browser: K keeps, Enter takes the suggestion, a
digit chooses a type, S skips; each press settles one label and the next appears."""

from __future__ import annotations

import pytest

from catalogue.models import Artwork, LabelCorrection
from tests.browser.conftest import log_in
from tests.catalogue.curation_helpers import confident, ready_artwork, type_of
from tests.factories import LabelCheckFactory, label_issue_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_keys_settle_doubtful_labels(live_server, browser_page, e2e_curator, active_model):
    check = LabelCheckFactory(labelled=4)
    works = []
    for i, name in enumerate("ABCD"):
        artwork = ready_artwork(
            active_model, confident("painting"), curator_type=type_of("drawings"), title=f"Work {name}"
        )
        label_issue_for(
            artwork,
            check=check,
            suggested="painting",
            label_probability=0.1,
            suggested_probability=0.8,
            quality=i / 10,
        )
        works.append(artwork)
    page = browser_page
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/mislabels/")
    for artwork, key in zip(works, ["k", "Enter", "3", "s"], strict=True):
        assert page.get_attribute("#mislabel", "data-artwork") == str(artwork.pk)
        with page.expect_navigation():
            page.keyboard.press(key)
    page.wait_for_selector("#queue-empty")

    expected = [
        ("drawings", Artwork.Provenance.CONFIRMED),
        ("painting", Artwork.Provenance.SET),
        ("iconography", Artwork.Provenance.SET),
        ("drawings", Artwork.Provenance.IMPORTED),  # skipped: nothing decided
    ]
    for artwork, (slug, provenance) in zip(works, expected, strict=True):
        artwork.refresh_from_db()
        assert (artwork.curator_type.slug, artwork.label_provenance) == (slug, provenance), artwork.title
    sources = set(
        LabelCorrection.objects.filter(artwork__in=works[:3], user=e2e_curator).values_list(
            "source", flat=True
        )
    )
    assert sources == {LabelCorrection.Source.MISLABELS}
