"""The collection map in a real browser: the canvas draws every work from the binary, hovering a work shows its
thumbnail and title, colouring by label source changes the picture, and a box drawn with shift-drag opens exactly
the works inside it in the catalogue.

The browser and the curator come from tests/browser/conftest.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from catalogue.services.maps import map_layout_compute
from tests.browser.conftest import log_in
from tests.catalogue.curation_helpers import confident, ready_artwork

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

COUNT_INKED = """() => {
  const canvas = document.getElementById("map-canvas");
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let inked = 0;
  for (let i = 0; i < data.length; i += 4) if (data[i] < 250 || data[i + 1] < 250 || data[i + 2] < 250) inked++;
  return inked;
}"""


def clusters(version) -> dict[str, list]:
    rng = np.random.default_rng(5)
    centres = {"painting": rng.normal(size=128) * 3, "sculpture": rng.normal(size=128) * 3}
    works: dict[str, list] = {}
    for slug, centre in centres.items():
        for i in range(5):
            vector = centre + rng.normal(size=128) * 0.3
            works.setdefault(slug, []).append(
                ready_artwork(
                    version, confident(slug), embedding=vector / np.linalg.norm(vector), title=f"{slug} {i}"
                )
            )
    return works


def test_the_map_draws_hovers_and_opens_a_box_in_the_catalogue(
    live_server, browser_page, e2e_curator, active_model
):
    works = clusters(active_model)
    map_layout_compute(version=active_model)
    page = browser_page
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/map/")
    page.wait_for_selector("#map[data-drawn=true]")
    assert page.get_attribute("#map", "data-points") == "10"
    assert page.evaluate(COUNT_INKED) > 0

    # Hover one work: its thumbnail and title appear.
    canvas = page.locator("#map-canvas").bounding_box()
    target = works["painting"][2]
    x, y = page.evaluate(f"window.artsiteMap.screenOf({target.pk})")
    page.mouse.move(canvas["x"] + x, canvas["y"] + y)
    page.wait_for_selector(f'#map-hover[data-artwork="{target.pk}"] img[src="{target.thumbnail.url}"]')
    assert page.text_content("#map-hover span").startswith(target.title)

    # Colour by label source: none of these works has a label, so every dot turns the "no label" grey.
    page.mouse.move(canvas["x"] + 2, canvas["y"] + 2)
    page.check("input[name=colour][value=provenance]")
    page.wait_for_function("document.querySelector('#map-legend li').textContent.includes('No label')")
    assert "10" in page.text_content("#map-legend li")

    # Shift-drag a box around the sculptures only, then open them in the catalogue.
    corners = [page.evaluate(f"window.artsiteMap.screenOf({w.pk})") for w in works["sculpture"]]
    others = [page.evaluate(f"window.artsiteMap.screenOf({w.pk})") for w in works["painting"]]
    left, right = min(c[0] for c in corners) - 6, max(c[0] for c in corners) + 6
    top, bottom = min(c[1] for c in corners) - 6, max(c[1] for c in corners) + 6
    assert not any(left <= px <= right and top <= py <= bottom for px, py in others), "the clusters overlap"
    page.keyboard.down("Shift")
    page.mouse.move(canvas["x"] + left, canvas["y"] + top)
    page.mouse.down()
    page.mouse.move(canvas["x"] + right, canvas["y"] + bottom, steps=5)
    page.mouse.up()
    page.keyboard.up("Shift")
    page.wait_for_selector("#map-open:visible")
    assert page.text_content("#map-open") == "Open 5 works in the catalogue"
    with page.expect_navigation():
        page.click("#map-open")
    assert "map_box=" in page.url
    shown = {
        int(href.split("/")[2])
        for href in page.eval_on_selector_all(
            ".grid a[href^='/artworks/']", "els => els.map(e => e.getAttribute('href'))"
        )
    }
    assert shown == {w.pk for w in works["sculpture"]}
