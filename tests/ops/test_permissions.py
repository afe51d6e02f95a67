"""The permission matrix: every URL pattern the resolver knows (so a page added later is walked too), for
anonymous, viewer, curator and admin, with every method that can change something.

Rules, for any route:

* nobody ever gets a 5xx;
* anonymous is refused everywhere except the public routes (log-in, health, metrics, uploaded images):
  portal pages redirect to the log-in page, admin pages to the admin's, the API answers 401;
* a viewer reads the portal and the API, cannot enter the admin, and nothing a viewer sends (GET, POST, PUT,
  PATCH, DELETE, to any route) changes a row;
* a curator reads every portal page and API endpoint, and in the admin sees the catalogue and the models but not
  the accounts (users, groups, tokens);
* an admin (superuser) is refused nowhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from django.urls import URLPattern, URLResolver, get_resolver, resolve

from catalogue.models import (
    Artwork,
    ArtworkChange,
    ArtworkType,
    BulkEdit,
    LabelCorrection,
    MapLayout,
    NearDuplicatePair,
    Prediction,
    TrainingJob,
)
from catalogue.services.bulk_edits import BulkValues, bulk_edit_apply
from catalogue.services.labels import label_correct
from catalogue.services.maps import map_layout_compute
from inference.models import ModelVersion
from tests.factories import ArtworkFactory, LabelCheckFactory, label_issue_for, prediction_for

pytestmark = pytest.mark.django_db

# Routes anyone may use (by route string as the resolver reports it). The OpenAPI schema and its viewer are
# public (drf-spectacular's default): they describe the endpoints, and every endpoint still needs a token.
PUBLIC = {
    "healthz",
    "readyz",
    "metrics",
    "accounts/login/",
    "accounts/logout/",
    "admin/login/",
    "admin/logout/",
    "media/<path:path>",
    # Like media: public unless ARTSITE_MEDIA_REQUIRES_LOGIN (on in production; tests/catalogue/test_upload_service.py).
    "artworks/<int:pk>/display.jpg",
    "api/v1/schema/",
    "api/v1/docs/",
    "iiif/context.json",  # Artsite's JSON-LD context: it only defines words
}
# Routes outside /api/ that answer as the API does (401 in the API's error shape, never a log-in page): the seed
# project's /predict/ and the IIIF documents and images (public only with ARTSITE_IIIF_PUBLIC, tested below).
API_LIKE_PREFIXES = ("predict/", "iiif/")
# Known bugs: routes the matrix must skip until fixed (none now).
KNOWN_BROKEN: set[str] = set()
# Catch-alls: any path below them that no other pattern matches.
CATCH_ALLS = {"admin/(?P<url>.*)$", "api/v1/^(?P<path>.*)$"}
# Former URLs that answer a read with a permanent redirect to the new one (after the same permission checks).
REDIRECTS = {"iiif/collection/<int:number>.json"}
WRITE_METHODS = ("post", "put", "patch", "delete")
VIEW_ON_SITE = "admin/r/<path:content_type_id>/<path:object_id>/"


@dataclass(frozen=True)
class Route:
    route: str  # the pattern as the resolver reports it (resolver_match.route)
    url: str  # a concrete URL for it
    kind: str  # public, admin, api or portal
    admin_model: str | None  # "app_label.model" for a ModelAdmin's pages
    model_admin: Any = None


def walk(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            yield prefix + str(pattern.pattern), pattern


def _replace_groups(regex: str, values: dict[str, str]) -> str:
    """Fill the named groups of a regex with values (groups may hold brackets and nested parentheses)."""
    out, i = [], 0
    while i < len(regex):
        if regex.startswith("(?P<", i):
            name = regex[i + 4 : regex.index(">", i)]
            depth, j = 0, i
            while True:
                if regex[j] == "\\":
                    j += 2
                    continue
                depth += {"(": 1, ")": -1}.get(regex[j], 0)
                j += 1
                if depth == 0:
                    break
            out.append(values[name])
            i = j
        else:
            out.append(regex[i])
            i += 1
    return "".join(out)


def concrete_url(route: str, values: dict[str, str]) -> str:
    url = route
    if "(?P<" in url or "^" in url or "$" in url:  # a regex (re_path, DRF's router)
        url = _replace_groups(url, values)
        url = url.replace("^", "").replace("$", "").replace("/?", "/").replace("\\.", ".")
    url = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values[m.group(1)], url)  # path() converters
    return "/" + url


@pytest.fixture
def world(active_model, settings):  # type: ignore[no-untyped-def]
    """One of everything: users of each role, a ready artwork with a prediction and a correction, a token."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.contrib.contenttypes.models import ContentType
    from rest_framework.authtoken.models import Token

    from tests.factories import CuratorFactory, ViewerFactory

    users = {
        "viewer": ViewerFactory(username="matrix-viewer"),
        "curator": CuratorFactory(username="matrix-curator"),
        "admin": get_user_model().objects.create_superuser("matrix-admin", password="pw"),
    }
    artworks = [ArtworkFactory(status="ready", title=f"Matrix {i}") for i in range(3)]
    rng = np.random.default_rng(3)
    for i, artwork in enumerate(artworks):
        embedding = rng.normal(size=128)
        prediction_for(
            artwork,
            version=active_model,
            type_slug=["painting", "drawings", "sculpture"][i],
            embedding=embedding / np.linalg.norm(embedding),
        )
    artwork = artworks[0]
    label_correct(
        artwork=artwork,
        to_type=ArtworkType.objects.get(slug="engraving"),
        user=users["curator"],
        source="portal",
    )
    # A doubted imported label, so that the possible-mislabels routes act on a real queue entry.
    doubted = artworks[1]
    Artwork.objects.filter(pk=doubted.pk).update(
        curator_type=ArtworkType.objects.get(slug="drawings"), label_provenance=Artwork.Provenance.IMPORTED
    )
    doubted.refresh_from_db()
    label_issue_for(
        doubted,
        check=LabelCheckFactory(),
        suggested="painting",
        label_probability=0.1,
        suggested_probability=0.8,
        quality=0.1,
    )
    map_layout_compute(version=active_model)  # the map's routes serve real points
    token = Token.objects.create(user=users["viewer"])
    job = TrainingJob.objects.create(status=TrainingJob.Status.QUEUED)  # the Models page's job routes
    # A bulk edit (its history rows) and a near-duplicate pair, for the history, bulk-edit and triage routes.
    bulk = bulk_edit_apply(
        artworks=Artwork.objects.filter(pk__in=[a.pk for a in artworks]),
        values=BulkValues(artist="Matrix master"),
        selection={"ids": [a.pk for a in artworks]},
        user=users["curator"],
        source="portal",
    )
    pair = NearDuplicatePair.objects.create(
        artwork_a=artworks[1], artwork_b=artworks[2], hash_distance=2, alignment=0.97, found_by="scan"
    )
    objects = {
        "catalogue.artwork": artwork.pk,
        "catalogue.labelcorrection": LabelCorrection.objects.first().pk,
        "catalogue.artworktype": ArtworkType.objects.get(slug="painting").pk,
        "catalogue.prediction": Prediction.objects.first().pk,
        "inference.modelversion": active_model.pk,
        "auth.user": users["viewer"].pk,
        "auth.group": Group.objects.get(name="Curators").pk,
        "authtoken.tokenproxy": token.pk,
        "catalogue.bulkedit": bulk.pk,
        "catalogue.artworkchange": ArtworkChange.objects.first().pk,
        "catalogue.nearduplicatepair": pair.pk,
    }
    values = {
        "pk": str(artwork.pk),
        "artwork_id": str(doubted.pk),
        "job_id": str(job.pk),
        "id": str(users["viewer"].pk),
        "slug": "painting",
        "version": active_model.version,
        "format": "json",
        "app_label": "catalogue",
        "content_type_id": str(ContentType.objects.get_for_model(Artwork).pk),
        "url": "no-such-admin-page/",
        "path": artwork.image.name,
        "number": "1",  # a page of a IIIF collection, by its old number (redirected to its id range)
        # The IIIF collection page of ids that holds the artwork.
        "first": str(
            (artwork.pk - 1) // settings.ARTSITE_IIIF_PAGE_SIZE * settings.ARTSITE_IIIF_PAGE_SIZE + 1
        ),
        "last": str(
            ((artwork.pk - 1) // settings.ARTSITE_IIIF_PAGE_SIZE + 1) * settings.ARTSITE_IIIF_PAGE_SIZE
        ),
    }
    routes, shadowed = [], []
    for route, pattern in walk(get_resolver().url_patterns):
        if route in KNOWN_BROKEN:
            continue
        model_admin = getattr(pattern.callback, "model_admin", None)
        admin_model = (
            f"{model_admin.model._meta.app_label}.{model_admin.model._meta.model_name}"
            if model_admin
            else None
        )
        route_values = dict(values)
        if admin_model:
            route_values["object_id"] = str(objects[admin_model])
        elif "object_id" in route:
            route_values["object_id"] = str(artwork.pk)  # the admin's view-on-site shortcut
        if route == "api/v1/^(?P<path>.*)$":
            route_values["path"] = "no-such-endpoint/"
        if "bulk-edits/" in route:  # their own rows, not an artwork's id
            route_values["pk"] = str(bulk.pk)
        elif "near-duplicates/" in route:
            route_values["pk"] = str(pair.pk)
        url = concrete_url(route, route_values)
        if route not in CATCH_ALLS and resolve(url).route != route.replace("/^", "/"):
            # Unreachable: an earlier pattern takes its URLs (DRF's ".json" suffix after a version that may hold
            # dots); those URLs are walked as the earlier pattern's.
            shadowed.append(route)
            continue
        kind = (
            "public"
            if route in PUBLIC
            else "admin"
            if route.startswith("admin/")
            else "api"
            if route.startswith("api/") or route.startswith(API_LIKE_PREFIXES)
            else "portal"
        )
        routes.append(
            Route(route=route, url=url, kind=kind, admin_model=admin_model, model_admin=model_admin)
        )
    return {"users": users, "routes": routes, "artwork": artwork, "shadowed": shadowed}


def snapshot() -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from rest_framework.authtoken.models import Token

    return {
        "artworks": list(
            Artwork.objects.order_by("pk").values_list(
                "pk",
                "title",
                "artist",
                "status",
                "curator_type_id",
                "label_provenance",
                "accession_number",
                "description",
            )
        ),
        "predictions": list(
            Prediction.objects.order_by("pk").values_list("pk", "predicted_type_id", "confidence")
        ),
        "corrections": list(LabelCorrection.objects.order_by("pk").values_list("pk", "to_type_id")),
        "models": list(ModelVersion.objects.order_by("pk").values_list("pk", "status")),
        "types": list(ArtworkType.objects.order_by("pk").values_list("pk", "slug", "name")),
        "users": list(
            get_user_model()
            .objects.order_by("pk")
            .values_list("pk", "username", "is_staff", "is_superuser", "password")
        ),
        "groups": list(Group.objects.order_by("pk").values_list("pk", "name")),
        "tokens": list(Token.objects.order_by("pk").values_list("pk")),
        "training_jobs": list(TrainingJob.objects.order_by("pk").values_list("pk", "status")),
        "history": list(ArtworkChange.objects.order_by("pk").values_list("pk")),
        "bulk_edits": list(BulkEdit.objects.order_by("pk").values_list("pk", "undone_at")),
        "pairs": list(NearDuplicatePair.objects.order_by("pk").values_list("pk", "status")),
        "work_groups": list(Artwork.objects.order_by("pk").values_list("pk", "work_group_id", "notes")),
        "map_layouts": list(MapLayout.objects.order_by("pk").values_list("pk", "status")),
    }


def call(client, method: str, url: str):  # type: ignore[no-untyped-def]
    return getattr(client, method)(url)


def redirects_to(response, prefix: str) -> bool:  # type: ignore[no-untyped-def]
    return response.status_code == 302 and response["Location"].startswith(prefix)


def test_every_route_resolves_to_its_own_pattern(world):
    """The walk builds a real URL for every pattern (else the matrix below would test the wrong views)."""
    routes = world["routes"]
    assert len(routes) > 60  # portal, API (with format suffixes), admin, operations
    for route in routes:
        if route.route in CATCH_ALLS:
            continue
        # The resolver reports nested regexes without their inner "^".
        assert resolve(route.url).route == route.route.replace("/^", "/"), (route.url, route.route)
    assert all("(?P<format>" in route for route in world["shadowed"]), world["shadowed"]
    kinds = {r.kind for r in routes}
    assert kinds == {"public", "admin", "api", "portal"}


def test_anonymous_is_refused_everywhere_but_the_public_routes(client, world):
    problems = []
    for route in world["routes"]:
        for method in ("get", *WRITE_METHODS):
            response = call(client, method, route.url)
            status = response.status_code
            if status >= 500:
                problems.append((method, route.url, status))
            elif route.kind == "public":
                continue
            elif route.kind == "portal":
                if not (redirects_to(response, "/accounts/login/") or status == 405):
                    problems.append((method, route.url, status))
            elif route.kind == "admin":
                if not redirects_to(response, "/admin/login/"):
                    problems.append((method, route.url, status))
            elif route.kind == "api":
                allowed = {401, 404} if route.route in CATCH_ALLS else {401}
                if status not in allowed:
                    problems.append((method, route.url, status))
    assert not problems, problems


def test_viewer_reads_and_changes_nothing(client, world):
    viewer = world["users"]["viewer"]
    before = snapshot()
    problems = []
    for route in world["routes"]:
        for method in ("get", *WRITE_METHODS):
            client.force_login(viewer)  # a POST to a log-out page logs out: log in again before each request
            response = call(client, method, route.url)
            status = response.status_code
            if status >= 500:
                problems.append((method, route.url, status))
            elif route.kind == "admin" and route.url != "/admin/logout/":
                if not redirects_to(response, "/admin/login/"):
                    problems.append((method, route.url, status, "viewer in the admin"))
            elif route.kind in {"api", "portal"} and method == "get" and route.route not in CATCH_ALLS:
                if status not in ({200, 403, 405} | ({301} if route.route in REDIRECTS else set())):
                    problems.append((method, route.url, status))
    assert not problems, problems
    assert snapshot() == before


def test_viewer_cannot_upload_or_curate_in_the_portal(client, world):
    client.force_login(world["users"]["viewer"])
    pk = world["artwork"].pk
    assert client.get("/artworks/upload/").status_code == 403
    assert client.post(f"/artworks/{pk}/label/", {"type": "painting"}).status_code == 403
    assert client.post(f"/artworks/{pk}/retry/").status_code == 403
    assert client.post(f"/review/{pk}/label/", {"type": "painting"}).status_code == 403
    assert client.post("/quality/retry/").status_code == 403
    assert client.post(f"/artworks/{pk}/confirm/").status_code == 403
    assert client.post(f"/mislabels/{pk}/decide/", {"decision": "keep"}).status_code == 403
    assert (
        client.post("/artworks/bulk-edit/", {"scope": "ids", "ids": [pk], "artist": "X"}).status_code == 403
    )
    assert client.post(f"/bulk-edits/{BulkEdit.objects.get().pk}/undo/").status_code == 403
    pair = NearDuplicatePair.objects.get()
    assert client.post(f"/near-duplicates/{pair.pk}/decide/", {"decision": "same"}).status_code == 403
    assert client.post("/near-duplicates/scan/").status_code == 403
    assert client.post("/artworks/upload/file/", {"title": "x"}).status_code == 403  # many files at once
    assert client.get("/search/image/").status_code == 200  # search by image: reading, stores nothing
    active = ModelVersion.objects.active().get().version
    assert client.post("/map/layout/", {"version": active}).status_code == 403


def admin_allows(route: Route, user: Any) -> bool:
    """What the route's ModelAdmin itself grants ``user`` (an audit trail has no add page even for a superuser)."""
    from django.test import RequestFactory

    request = RequestFactory().get(route.url)
    request.user = user
    model_admin = route.model_admin
    if route.route.endswith("/add/"):
        return model_admin.has_add_permission(request)
    if route.route.endswith("/delete/"):
        return model_admin.has_delete_permission(request)
    return model_admin.has_view_or_change_permission(request)


def test_curator_reads_everything_but_the_accounts_admin(client, world):
    curator = world["users"]["curator"]
    client.force_login(curator)
    problems = []
    for route in world["routes"]:
        response = client.get(route.url)
        status = response.status_code
        if status >= 500:
            problems.append((route.url, status))
        elif route.kind in {"api", "portal"}:
            allowed = (
                {404} if route.route in CATCH_ALLS else {301, 405} if route.route in REDIRECTS else {200, 405}
            )
            if status not in allowed:
                problems.append((route.url, status))
        elif route.admin_model:
            app_label = route.admin_model.split(".")[0]
            if route.route.endswith("<path:object_id>/"):
                ok = status == 302  # the old-style object URL redirects to the change page
            elif app_label in {"auth", "authtoken"}:
                # Accounts are the administrators' business: refused, or sent back to the admin's index.
                ok = status == 403 or (status == 302 and response["Location"] == "/admin/")
            else:
                ok = status == (200 if admin_allows(route, curator) else 403)
            if not ok:
                problems.append((route.url, status, route.admin_model))
    assert not problems, problems


def test_admin_is_refused_nowhere(client, world):
    admin = world["users"]["admin"]
    client.force_login(admin)
    problems = []
    for route in world["routes"]:
        response = client.get(route.url)
        status = response.status_code
        if status >= 500:
            problems.append((route.url, status))
        elif route.admin_model and not admin_allows(route, admin):
            if status != 403:  # refused by the ModelAdmin's own design (read-only audit trail...)
                problems.append((route.url, status, "expected 403"))
        elif (
            status in {401, 403} and route.route != "admin/autocomplete/"
        ):  # autocomplete: 403 without its query
            problems.append((route.url, status))
        elif status == 404 and route.route not in CATCH_ALLS | {VIEW_ON_SITE}:  # Artwork has no public page
            problems.append((route.url, status))
    assert not problems, problems


@pytest.mark.parametrize("action", ["similar", "label"])
def test_format_suffix_routes_of_the_artwork_actions(client, world, action):
    client.force_login(world["users"]["curator"])
    method = client.get if action == "similar" else client.post
    response = method(f"/api/v1/artworks/{world['artwork'].pk}/{action}.json")
    assert response.status_code < 500


def test_iiif_is_read_by_anyone_only_when_the_setting_says_public(client, world, settings):
    iiif = [r for r in world["routes"] if r.route.startswith("iiif/") and r.kind != "public"]
    assert (
        len(iiif) == 7
    )  # manifest, annotations, image, thumbnail, collection, a range of ids, a former page
    settings.ARTSITE_IIIF_PUBLIC = True
    before = snapshot()
    for route in iiif:
        assert client.get(route.url).status_code == (301 if route.route in REDIRECTS else 200), route.url
        for method in WRITE_METHODS:  # public reads, never writes
            assert call(client, method, route.url).status_code == 405, (method, route.url)
    assert snapshot() == before
