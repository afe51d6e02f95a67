"""A manifest opened in a real IIIF viewer: Mirador (its npm bundle, fetched by `make mirador`) in headless Chromium,
on a page served by a server of its own (another origin than Artsite's: 127.0.0.1 against the live server's
localhost, another port), so the manifest and the image load only because the IIIF routes send CORS headers. The image shows on the canvas and the model's classification is listed in the annotations panel.

Mirador 4 lists only commenting and tagging annotations unless ``annotations.filteredMotivations`` opts in to
others: the page opts in to ``classifying`` and ``assessing``, as docs/export.md tells collections to do.
"""

from __future__ import annotations

import functools
import io
import json
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings as django_settings
from PIL import Image

from catalogue.models import ArtworkType
from catalogue.services.labels import label_correct
from tests.factories import ArtworkFactory, CuratorFactory, prediction_for
from tests.images import image_bytes

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

MIRADOR_VERSION = "4.0.0"  # the Makefile's MIRADOR_VERSION
BUNDLE = Path(django_settings.BASE_DIR) / "var" / "mirador" / MIRADOR_VERSION / "mirador.min.js"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Mirador</title></head>
<body style="margin:0"><div id="mirador" style="position:absolute;inset:0"></div>
<script src="/mirador.min.js"></script>
<script>
  Mirador.viewer({
    id: "mirador",
    windows: [{manifestId: MANIFEST}],
    window: {sideBarOpen: true, sideBarPanel: "annotations", panels: {annotations: true}},
    annotations: {
      filteredMotivations: ["oa:commenting", "oa:tagging", "sc:painting", "commenting", "tagging",
                            "classifying", "assessing"],
    },
  });
</script></body></html>"""


@pytest.fixture
def mirador_bundle() -> Path:
    if not BUNDLE.exists():
        pytest.skip(
            f"{BUNDLE} is missing: `make mirador` fetches Mirador {MIRADOR_VERSION} from the npm registry."
        )
    return BUNDLE


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture
def viewer_site(mirador_bundle: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static site on 127.0.0.1 (a port of its own) holding Mirador's bundle; the test writes its page."""
    root = tmp_path / "viewer"
    root.mkdir()
    (root / "mirador.min.js").write_bytes(mirador_bundle.read_bytes())
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def test_mirador_shows_the_image_and_lists_the_classification(
    live_server, browser_page, viewer_site, active_model, settings
):
    settings.ARTSITE_IIIF_PUBLIC = True  # a viewer on another site sends no credentials
    curator = CuratorFactory(username="mirador-curator", first_name="Ada", last_name="Lovelace")
    artwork = ArtworkFactory(
        status="ready", title="Melencolia I", artist="Dürer", data=image_bytes(41, (240, 180))
    )
    embedding = np.random.default_rng(4).normal(size=128)
    prediction_for(
        artwork, version=active_model, type_slug="painting", embedding=embedding / np.linalg.norm(embedding)
    )
    label_correct(
        artwork=artwork, to_type=ArtworkType.objects.get(slug="engraving"), user=curator, source="portal"
    )
    manifest = f"{live_server.url}/iiif/artworks/{artwork.pk}/manifest.json"
    image = f"{live_server.url}/iiif/artworks/{artwork.pk}/image"

    assert live_server.url.startswith("http://localhost:")  # so the viewer's 127.0.0.1 is another origin
    origin, root = viewer_site
    (root / "index.html").write_text(PAGE.replace("MANIFEST", json.dumps(manifest)), encoding="utf-8")
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    with page.expect_response(lambda r: r.url == image) as image_response:
        page.goto(f"{origin}/index.html")
    assert image_response.value.status == 200
    assert image_response.value.headers["access-control-allow-origin"] == "*"

    # The image is drawn: OpenSeadragon's canvas is there and the viewer shows the work's title.
    page.wait_for_selector(".openseadragon-canvas canvas", state="attached")
    page.wait_for_selector("text=Melencolia I")
    # The annotations panel lists the classification and the curator's label (the bodies' values).
    panel = page.wait_for_selector(".mirador-window-sidebar-annotation-panel")
    page.wait_for_selector(".mirador-window-sidebar-annotation-panel >> text=Painting")
    text = panel.inner_text()
    assert "Painting" in text and "Engraving" in text, text
    assert "2 annotations" in text.lower() or "showing 2" in text.lower(), text
    assert not errors, errors
    # And drawn: the viewer's canvas shows the picture's colours, not an empty (white) viewport.
    shot = Image.open(io.BytesIO(page.locator(".openseadragon-canvas").screenshot())).convert("RGB")
    pixels = np.asarray(shot, dtype=np.float32)
    assert pixels.std() > 10 and pixels.mean() < 245, (pixels.mean(), pixels.std())
