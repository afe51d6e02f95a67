"""The routes ``bench_pages`` times: every portal page and API route a curator uses, with the URLs that ask for them
as a curator would (deep pages through their keyset cursor, searches, a box drawn on the map, exports).

Each route names the ``Server-Timing`` measure it reads (:mod:`bench.timed_wsgi`): ``app`` (the view done) for
pages; for an export, which streams, ``first`` (its first byte: the CSV header line) and ``second`` (its first row),
both from the same requests, whose body the client stops reading after the first bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode

import numpy as np
from django.conf import settings
from django.db import connection
from django.urls import reverse

from bench.multipart import multipart_body
from bench.pages_setup import PagesSetup
from bench.pictures import jpeg_bytes, synthetic_picture
from catalogue.iiif.builder import id_ranges_top
from catalogue.models import Artwork, ArtworkType, MapLayout, MapPoint
from catalogue.selectors.artworks import artworks_with_prediction, keyset_cursor
from inference.models import ModelVersion

PAGE = 24  # the portal's and the API's page size
#: An artist of the seeded catalogue (``bench.seeding.ARTISTS``: "Vermeer", a seventh of the works) with one letter
#: missing: found by the typo branch of the full-text search.
ARTIST_TYPO = "Vermer"
#: An artist of the seeded catalogue spelt right: a word in a seventh of the works, too many to rank.
ARTIST = "Vermeer"
#: The box selections: the middle tenth of the map along each axis (layout percentiles: 65 of 9,973 works at 10k),
#: and the middle fifth (a few per cent of the works).
BOX_PERCENTILES = (0.45, 0.55)
WIDE_BOX_PERCENTILES = (0.4, 0.6)
MAP_WORKS = 100  # works the map asks about at once (it draws thumbnails once fewer than 120 are in view)


@dataclass(frozen=True)
class Route:
    name: str
    urls: list[str]
    api: bool = False  # with the API token; otherwise the portal session
    #: (suffix of the reported name, Server-Timing measure): one result each, from the same requests.
    measures: tuple[tuple[str, str], ...] = (("", "app"),)
    stream: bool = False  # read the first bytes of the body, then drop the connection
    post: tuple[bytes, str] | None = None  # body and content type of a POST (with the session's CSRF token)
    headers: dict[str, str] = field(default_factory=dict)


def pages_routes(*, size: int, version: ModelVersion, setup: PagesSetup) -> list[Route]:
    """Every route, for a catalogue of ``size`` works seeded by :mod:`bench.pages_catalogue` and completed by
    :mod:`bench.pages_setup`."""
    listing = artworks_with_prediction().order_by("-created_at", "-id")
    portal_deep = min(2000 * PAGE, size - 2 * PAGE)
    api_deep = min(5000 * PAGE, size - 2 * PAGE)
    portal_row = listing[portal_deep - 1]
    api_row = listing[api_deep - 1]
    rng = np.random.default_rng(5)  # the same works at every size
    ready = Artwork.objects.filter(status=Artwork.Status.READY)
    picks = sorted(int(i) for i in rng.integers(1, min(size, 10_000), 12))
    works = list(ready.filter(pk__in=picks).values_list("pk", flat=True))[:5]
    types = {t.pk: t.slug for t in ArtworkType.objects.all()}
    own = dict(artworks_with_prediction().filter(pk__in=works).values_list("pk", "effective_type_id"))
    title = Artwork.objects.get(pk=works[0]).title
    # The IIIF collection's tree (catalogue/iiif/builder.py): the top's first range, the first and the last page.
    last = Artwork.objects.order_by("-pk").values_list("pk", flat=True).first() or 1
    page_size, fanout = settings.ARTSITE_IIIF_PAGE_SIZE, settings.ARTSITE_IIIF_FANOUT
    top = id_ranges_top(last_id=last, page_size=page_size, fanout=fanout)
    iiif_first = [top[0].first, top[0].last]

    def iiif_page(pk: int) -> list[int]:
        first = (pk - 1) // page_size * page_size + 1
        return [first, first + page_size - 1]

    catalogue = reverse("catalogue:artwork-list")
    api = reverse("api-artwork-list")
    review = reverse("catalogue:review")
    export = reverse("catalogue:artwork-export")
    hover = list(ready.order_by("pk").values_list("pk", flat=True)[:MAP_WORKS])
    export_measures = ((", first byte", "first"), (", first row", "second"))
    picture = jpeg_bytes(synthetic_picture(30_001))
    return [
        Route("catalogue /", [catalogue]),
        Route(
            f"catalogue page {portal_deep // PAGE + 1:,} (keyset)",
            [f"{catalogue}?cursor={keyset_cursor(listing, portal_row)}"],
        ),
        Route("catalogue filtered by type", [f"{catalogue}?type=painting"]),
        Route("catalogue search by title", [f"{catalogue}?{urlencode({'search': title})}"]),
        Route(
            "catalogue search by a title word", [f"{catalogue}?{urlencode({'search': title.split()[-1]})}"]
        ),
        Route("catalogue search by artist, typo", [f"{catalogue}?{urlencode({'search': ARTIST_TYPO})}"]),
        Route("catalogue search, a common word", [f"{catalogue}?{urlencode({'search': ARTIST})}"]),
        Route(
            "catalogue of a map box",
            [f"{catalogue}?{urlencode({'map_box': map_box(version=version)})}"],
        ),
        Route(
            "catalogue of a wider map box",
            [
                f"{catalogue}?{urlencode({'map_box': map_box(version=version, percentiles=WIDE_BOX_PERCENTILES)})}"
            ],
        ),
        Route("review queue (lowest confidence)", [review]),
        Route("review queue by entropy", [f"{review}?order=entropy"]),
        Route("review queue by margin", [f"{review}?order=margin"]),
        Route("mislabels queue", [reverse("catalogue:mislabels")]),
        Route("quality", [reverse("catalogue:quality")]),
        Route("map", [reverse("catalogue:map")]),
        Route("map points (binary)", [reverse("catalogue:map-points", args=[version.version])]),
        Route(
            f"map works ({len(hover)} thumbnails)",
            [f"{reverse('catalogue:map-works')}?ids={','.join(str(pk) for pk in hover)}"],
        ),
        Route("Models page", [reverse("catalogue:models")]),
        Route("near-duplicates", [reverse("catalogue:near-duplicates")]),
        Route("bulk edits", [reverse("catalogue:bulk-edits")]),
        Route("export CSV", [f"{export}?format=csv"], measures=export_measures, stream=True),
        Route(
            "export CSV by type",
            [f"{export}?{urlencode({'format': 'csv', 'type': 'painting'})}"],
            measures=export_measures,
            stream=True,
        ),
        Route(
            "search by image (POST)",
            [reverse("catalogue:image-search")],
            post=multipart_body({}, {"image": ("search.jpg", picture, "image/jpeg")}),
            headers={"X-Requested-With": "fetch"},  # what the page's script asks: the results part
        ),
        Route("API list", [api], api=True),
        Route(
            f"API page {api_deep // PAGE + 1:,} (keyset)",
            [f"{api}?cursor={keyset_cursor(listing, api_row)}"],
            api=True,
        ),
        Route("API filtered by type", [f"{api}?type=painting"], api=True),
        Route("API search by title", [f"{api}?{urlencode({'search': title})}"], api=True),
        Route("API search by artist, typo", [f"{api}?{urlencode({'search': ARTIST_TYPO})}"], api=True),
        Route("API similar", [reverse("api-artwork-similar", args=[pk]) for pk in works], api=True),
        Route(
            "API similar with type",
            [f"{reverse('api-artwork-similar', args=[pk])}?type={types[own[pk]]}" for pk in works],
            api=True,
        ),
        Route(
            "API artwork history", [reverse("api-artwork-history", args=[setup.history_artwork_id])], api=True
        ),
        Route("IIIF manifest", [reverse("iiif-manifest", args=[pk]) for pk in works], api=True),
        Route("IIIF collection", [reverse("iiif-collection")], api=True),
        Route("IIIF collection by type", [f"{reverse('iiif-collection')}?type=painting"], api=True),
        Route("IIIF collection range", [reverse("iiif-collection-range", args=iiif_first)], api=True),
        Route("IIIF collection page 1", [reverse("iiif-collection-range", args=iiif_page(1))], api=True),
        Route(
            "IIIF collection last page", [reverse("iiif-collection-range", args=iiif_page(last))], api=True
        ),
        Route("artwork page", [reverse("catalogue:artwork-detail", args=[pk]) for pk in works]),
        Route(
            "artwork page with history",
            [reverse("catalogue:artwork-detail", args=[setup.history_artwork_id])],
        ),
    ]


def map_box(*, version: ModelVersion, percentiles: tuple[float, float] = BOX_PERCENTILES) -> str:
    """``x0,y0,x1,y1`` (the catalogue's ``map_box``, in layout units) around the middle of the version's map: the
    ``percentiles`` of the placed works along each axis."""
    layout = MapLayout.objects.filter(model_version=version).only("pk").first()
    if layout is None:
        raise RuntimeError(f"Model version {version.version} has no map layout (the setup computes it).")
    low, high = percentiles
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT percentile_cont(ARRAY[%s, %s]) WITHIN GROUP (ORDER BY x), "  # noqa: S608 - the model's table
            f"percentile_cont(ARRAY[%s, %s]) WITHIN GROUP (ORDER BY y) FROM {MapPoint._meta.db_table} "
            "WHERE layout_id = %s",
            [low, high, low, high, layout.pk],
        )
        xs, ys = cursor.fetchone()
    if xs is None:
        raise RuntimeError(f"The map layout of {version.version} places no work.")
    return ",".join(f"{v:.9g}" for v in (xs[0], ys[0], xs[1], ys[1]))
