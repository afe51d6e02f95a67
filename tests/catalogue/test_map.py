"""The collection map: the layout (PCA fitted and every work placed, checked against NumPy), new works placed as they
are classified, the binary the page draws (decoded here and compared with the database), the box selection opened
in the catalogue, and the page and routes."""

from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.urls import reverse

from catalogue.models import Artwork, MapLayout, MapPoint, Prediction
from catalogue.services.classification import prediction_store
from catalogue.services.labels import label_confirm, label_correct
from catalogue.services.maps import (
    EmbeddingsIncomplete,
    map_layout_compute,
    map_layout_request_if_missing,
    pca_fit,
)
from catalogue.tasks import map_points_build as map_points_build_task
from inference.models import ModelVersion
from tests.catalogue.curation_helpers import (
    SLUGS,
    confident,
    logged_in,
    ready_artwork,
    reopen_broker_pool,
    type_of,
)
from tests.factories import ArtworkFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def viewer_client(client, viewer):
    return logged_in(client, viewer)


@pytest.fixture
def curator_client(client, curator):
    return logged_in(client, curator)


def unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def reference_axes(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and top-two eigenvectors of the covariance, each signed so its largest loading is positive: computed
    here with eigh, independently of the code under test (which takes an SVD of the scatter matrix)."""
    mean = data.mean(axis=0)
    _, vectors = np.linalg.eigh(np.cov(data - mean, rowvar=False))
    top = vectors[:, ::-1][:, :2].T.copy()
    for axis in top:
        if axis[np.argmax(np.abs(axis))] < 0:
            axis *= -1
    return mean, top


def two_clusters(version, n: int = 6, seed: int = 0) -> dict[tuple[str, int], Artwork]:
    rng = np.random.default_rng(seed)
    centres = {slug: rng.normal(size=128) * 3 for slug in ("painting", "sculpture")}
    return {
        (slug, i): ready_artwork(
            version, confident(slug), embedding=unit(centre + rng.normal(size=128) * 0.3)
        )
        for slug, centre in centres.items()
        for i in range(n)
    }


def embeddings_of(version) -> tuple[list[int], np.ndarray]:
    rows = Prediction.objects.filter(model_version=version).order_by("artwork_id")
    return [p.artwork_id for p in rows], np.stack([np.asarray(p.embedding, dtype=np.float64) for p in rows])


def points_of(layout) -> dict[int, tuple[float, float]]:
    return {
        artwork_id: (x, y)
        for artwork_id, x, y in MapPoint.objects.filter(layout=layout).values_list(
            "prediction__artwork_id", "x", "y"
        )
    }


def decode(body: bytes) -> dict:
    """The binary, read with struct and plain Python (not the page's code)."""
    assert body[:4] == b"AMP1"
    n, h = struct.unpack_from("<II", body, 4)
    header = json.loads(body[12 : 12 + h])
    offset = 12 + h
    deltas = struct.unpack_from(f"<{n}I", body, offset)
    offset += 4 * n
    xs = struct.unpack_from(f"<{n}H", body, offset)
    offset += 2 * n
    ys = struct.unpack_from(f"<{n}H", body, offset)
    offset += 2 * n
    types = body[offset : offset + n]
    provenances = body[offset + n : offset + 2 * n]
    assert len(body) == offset + 2 * n
    ids, total = [], 0
    for delta in deltas:
        total += delta
        ids.append(total)
    return {
        "header": header,
        "ids": ids,
        "x": xs,
        "y": ys,
        "types": list(types),
        "provenances": list(provenances),
    }


# --- The layout --------------------------------------------------------------------------------------------------


def test_pca_fit_matches_the_covariance_eigenvectors():
    rng = np.random.default_rng(3)
    data = (
        rng.normal(size=(300, 8))
        @ np.diag([5, 3, 1, 1, 0.5, 0.5, 0.2, 0.1])
        @ np.linalg.qr(rng.normal(size=(8, 8)))[0]
    )
    fit = pca_fit(data)
    mean, axes = reference_axes(data)
    assert np.allclose(fit.mean, mean)
    assert np.allclose(fit.components, axes, atol=1e-8)
    eigenvalues = np.sort(np.linalg.eigvalsh(np.cov(data, rowvar=False)))[::-1]
    assert fit.explained_variance == pytest.approx(tuple(eigenvalues[:2] / eigenvalues.sum()), rel=1e-6)
    assert pca_fit(np.zeros((0, 8))).components.shape == (2, 8)


def test_layout_places_every_classified_work_at_its_projection(active_model):
    works = two_clusters(active_model)
    ArtworkFactory()  # pending, no prediction: not placed
    layout = map_layout_compute(version=active_model)

    assert layout.status == MapLayout.Status.READY and layout.placed == 12 and layout.sample_size == 12
    ids, data = embeddings_of(active_model)
    mean, axes = reference_axes(data)
    assert np.allclose(layout.components, axes, atol=1e-6)
    expected = (data - mean) @ axes.T
    points = points_of(layout)
    assert sorted(points) == ids
    got = np.array([points[i] for i in ids])
    assert np.allclose(got, expected, atol=1e-4)  # pgvector computes the inner products in float32
    # Two tight clusters far apart: the first axis splits them.
    xs = {slug: [points[works[(slug, i)].pk][0] for i in range(6)] for slug in ("painting", "sculpture")}
    assert max(xs["painting"]) < min(xs["sculpture"]) or max(xs["sculpture"]) < min(xs["painting"])
    assert layout.explained_variance[0] > 0.5


def test_computing_the_layout_again_gives_the_same_points(active_model):
    two_clusters(active_model)
    first = points_of(map_layout_compute(version=active_model))
    again = map_layout_compute(version=active_model)
    assert points_of(again) == first and MapPoint.objects.count() == 12
    assert MapLayout.objects.count() == 1


def test_a_large_catalogue_is_fitted_on_a_sample_and_still_placed_whole(active_model):
    for i in range(30):
        ready_artwork(active_model, confident(SLUGS[i % 5]), seed=i)
    layout = map_layout_compute(version=active_model, sample_size=10)
    assert 0 < layout.sample_size <= 10 and layout.placed == 30 and MapPoint.objects.count() == 30


def test_no_layout_while_the_version_re_embeds(active_model):
    ModelVersion.objects.filter(pk=active_model.pk).update(status=ModelVersion.Status.EMBEDDING)
    active_model.refresh_from_db()
    with pytest.raises(EmbeddingsIncomplete):
        map_layout_compute(version=active_model)
    assert not MapLayout.objects.exists()


# --- New works placed as they are classified ----------------------------------------------------------------------


def test_a_newly_classified_work_is_placed_with_the_stored_axes(active_model):
    two_clusters(active_model)
    layout = map_layout_compute(version=active_model)
    before = points_of(layout)
    mean, axes = np.asarray(layout.mean), np.asarray(layout.components)

    newcomer = ArtworkFactory(status=Artwork.Status.READY)
    embedding = unit(np.random.default_rng(9).normal(size=128))
    probabilities = np.array([[0.1, 0.1, 0.1, 0.6, 0.1]])
    prediction_store(
        artwork_ids=[newcomer.pk],
        model_version=active_model,
        classes=SLUGS,
        probabilities=probabilities,
        embeddings=np.asarray([embedding], dtype=np.float32),
    )
    after = points_of(layout)
    expected = (embedding.astype(np.float32).astype(np.float64) - mean) @ axes.T
    assert after[newcomer.pk] == pytest.approx(tuple(expected), abs=1e-4)
    assert {k: v for k, v in after.items() if k != newcomer.pk} == before  # nothing else moved
    layout.refresh_from_db()
    assert layout.placed == 12  # not computed again

    # Classified again (a new embedding for the same work): it moves, it is not placed twice.
    moved = unit(np.random.default_rng(10).normal(size=128))
    prediction_store(
        artwork_ids=[newcomer.pk],
        model_version=active_model,
        classes=SLUGS,
        probabilities=probabilities,
        embeddings=np.asarray([moved], dtype=np.float32),
    )
    assert points_of(layout)[newcomer.pk] == pytest.approx(tuple((moved - mean) @ axes.T), abs=1e-4)
    assert MapPoint.objects.count() == 13


def test_without_a_layout_classifying_asks_for_one(active_model, broker, django_capture_on_commit_callbacks):
    reopen_broker_pool()
    newcomer = ArtworkFactory(status=Artwork.Status.READY)
    with django_capture_on_commit_callbacks(execute=True):
        prediction_store(
            artwork_ids=[newcomer.pk],
            model_version=active_model,
            classes=SLUGS,
            probabilities=np.array([[0.1, 0.1, 0.1, 0.6, 0.1]]),
            embeddings=np.asarray([unit(np.ones(128))], dtype=np.float32),
        )
    layout = MapLayout.objects.get(model_version=active_model)
    assert layout.status == MapLayout.Status.QUEUED and not MapPoint.objects.exists()
    sent = [json.loads(m)["headers"]["task"] for m in broker.lrange("celery", 0, -1)]
    assert sent == ["catalogue.tasks.map_layout_compute"]
    # Asked once: the next classification, or the beat, does not queue it again.
    assert map_layout_request_if_missing() is None
    assert broker.llen("celery") == 1


def test_the_beat_asks_for_the_active_versions_layout(
    active_model, broker, django_capture_on_commit_callbacks
):
    reopen_broker_pool()
    with django_capture_on_commit_callbacks(execute=True):
        layout = map_layout_request_if_missing()
    assert layout is not None and layout.model_version == active_model and broker.llen("celery") == 1


def test_the_command_computes_the_layout(active_model, capsys):
    two_clusters(active_model, n=3)
    call_command("map_layout")
    assert "6 works placed" in capsys.readouterr().out
    assert MapLayout.objects.get(model_version=active_model).status == MapLayout.Status.READY


# --- The binary the page draws -------------------------------------------------------------------------------------


def test_the_binary_holds_every_ready_work_as_the_database_has_it(viewer_client, active_model, curator):
    works = two_clusters(active_model, n=4)
    layout = map_layout_compute(version=active_model)
    relabelled, confirmed = works[("painting", 0)], works[("sculpture", 1)]
    label_correct(artwork=relabelled, to_type=type_of("engraving"), user=curator, source="portal")
    label_correct(artwork=confirmed, to_type=type_of("sculpture"), user=curator, source="portal")
    label_confirm(artwork=Artwork.objects.get(pk=confirmed.pk), user=curator, source="portal")
    failed = works[("sculpture", 3)]
    Artwork.objects.filter(pk=failed.pk).update(status=Artwork.Status.FAILED)

    response = viewer_client.get(reverse("catalogue:map-points", args=[active_model.version]))
    assert response.status_code == 200 and response["Content-Type"] == "application/octet-stream"
    data = decode(response.content)
    header = data["header"]
    ready = sorted(w.pk for w in works.values() if w.pk != failed.pk)
    assert data["ids"] == ready and response["X-Map-Points"] == "7"

    types = header["types"]
    points = points_of(layout)
    origin, span = header["origin"], header["span"]
    for i, artwork_id in enumerate(data["ids"]):
        artwork = Artwork.objects.get(pk=artwork_id)
        prediction = Prediction.objects.get(artwork=artwork, model_version=active_model)
        effective = artwork.curator_type_id or prediction.predicted_type_id
        assert types[data["types"][i]] == effective
        provenance = artwork.label_provenance if artwork.curator_type_id else "none"
        assert header["provenances"][data["provenances"][i]] == provenance
        x, y = points[artwork_id]
        assert origin[0] + data["x"][i] / 65535 * span == pytest.approx(x, abs=span / 65535)
        assert origin[1] + data["y"][i] / 65535 * span == pytest.approx(y, abs=span / 65535)
    decoded = dict(zip(data["ids"], data["types"], strict=True))
    assert types[decoded[relabelled.pk]] == type_of("engraving").pk
    provenance = dict(zip(data["ids"], data["provenances"], strict=True))
    assert header["provenances"][provenance[confirmed.pk]] == "confirmed"
    # The points fill the square along the longer axis.
    assert min(data["x"]) == 0 or min(data["y"]) == 0
    assert max(data["x"]) == 65535 or max(data["y"]) == 65535


def test_the_binary_is_gzipped_and_revalidated_with_its_etag(viewer_client, active_model, curator):
    works = two_clusters(active_model, n=3)
    map_layout_compute(version=active_model)
    url = reverse("catalogue:map-points", args=[active_model.version])
    plain = viewer_client.get(url)
    zipped = viewer_client.get(url, HTTP_ACCEPT_ENCODING="gzip, deflate")
    assert zipped["Content-Encoding"] == "gzip" and gzip.decompress(zipped.content) == plain.content
    etag = plain["ETag"]
    assert viewer_client.get(url, HTTP_IF_NONE_MATCH=etag).status_code == 304
    # A label changes: the map is another.
    label_correct(artwork=works[("painting", 0)], to_type=type_of("drawings"), user=curator, source="portal")
    changed = viewer_client.get(url, HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag
    # A new work placed: another again.
    newcomer = ArtworkFactory(status=Artwork.Status.READY)
    prediction_store(
        artwork_ids=[newcomer.pk],
        model_version=active_model,
        classes=SLUGS,
        probabilities=np.array([[0.6, 0.1, 0.1, 0.1, 0.1]]),
        embeddings=np.asarray([unit(np.ones(128))], dtype=np.float32),
    )
    latest = viewer_client.get(url, HTTP_IF_NONE_MATCH=changed["ETag"])
    assert latest.status_code == 200 and newcomer.pk in decode(latest.content)["ids"]


def test_a_slow_build_is_served_from_a_moment_ago_and_made_again_in_the_background(
    viewer_client, active_model, curator, broker, django_capture_on_commit_callbacks
):
    reopen_broker_pool()
    works = two_clusters(active_model, n=3)
    map_layout_compute(version=active_model)
    url = reverse("catalogue:map-points", args=[active_model.version])
    before = viewer_client.get(url)
    MapLayout.objects.update(points_seconds=30.0)  # as a million works take
    label_correct(artwork=works[("painting", 0)], to_type=type_of("drawings"), user=curator, source="portal")
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            stale = viewer_client.get(url)
        assert stale["X-Map-Current"] == "0" and stale["ETag"] == before["ETag"]
        assert stale.content == before.content
    sent = [json.loads(m)["headers"]["task"] for m in broker.lrange("celery", 0, -1)]
    assert sent == ["catalogue.tasks.map_points_build"]  # asked once for this change
    # The worker builds it; the next request gets the new map.
    map_points_build_task(MapLayout.objects.get().pk)
    fresh = viewer_client.get(url, HTTP_IF_NONE_MATCH=before["ETag"])
    assert fresh.status_code == 200 and fresh["X-Map-Current"] == "1" and fresh["ETag"] != before["ETag"]
    decoded = decode(fresh.content)
    index = decoded["ids"].index(works[("painting", 0)].pk)
    assert decoded["header"]["types"][decoded["types"][index]] == type_of("drawings").pk


def test_the_binary_of_a_version_without_layout_is_empty(viewer_client, active_model):
    ready_artwork(active_model, confident("painting"))
    response = viewer_client.get(reverse("catalogue:map-points", args=[active_model.version]))
    data = decode(response.content)
    assert response.status_code == 200 and data["ids"] == [] and data["header"]["status"] == "missing"
    assert viewer_client.get(reverse("catalogue:map-points", args=["nope"])).status_code == 404


# --- The selection, opened in the catalogue ------------------------------------------------------------------------


def test_a_box_on_the_map_filters_the_catalogue_and_the_api(viewer_client, active_model):
    works = two_clusters(active_model, n=4)
    layout = map_layout_compute(version=active_model)
    points = points_of(layout)
    xs = sorted(x for x, _ in points.values())
    # The left half of the works by x (the layout's units), every y.
    cut = (xs[3] + xs[4]) / 2
    left = {pk for pk, (x, _) in points.items() if x < cut}
    assert len(left) == 4
    box = f"{xs[0] - 1},-100,{cut},100"
    html = viewer_client.get(reverse("catalogue:artwork-list"), {"map_box": box}).content.decode()
    shown = {w.pk for w in works.values() if f'href="/artworks/{w.pk}/"' in html}
    assert shown == left
    api = viewer_client.get("/api/v1/artworks/", {"map_box": box})
    assert api.status_code == 200 and {row["id"] for row in api.json()["results"]} == left


@pytest.mark.parametrize("box", ["1,2,3", "a,b,c,d", "1,1,0,0", "nan,0,1,1", "0,0,inf,1"])
def test_a_bad_box_is_a_clear_error(viewer_client, active_model, box):
    page = viewer_client.get(reverse("catalogue:artwork-list"), {"map_box": box})
    assert page.status_code == 200 and "map_box must be" in page.content.decode()
    api = viewer_client.get("/api/v1/artworks/", {"map_box": box})
    assert api.status_code == 400 and "map_box" in api.json()["fields"]


def test_a_box_lists_nothing_without_an_active_layout(viewer_client, active_model):
    ready_artwork(active_model, confident("painting"))
    api = viewer_client.get("/api/v1/artworks/", {"map_box": "-100,-100,100,100"})
    assert api.status_code == 200 and api.json()["count"] == 0


# --- The page and its routes ---------------------------------------------------------------------------------------


def test_map_page_draws_from_the_binary_once_the_layout_is_ready(viewer_client, active_model):
    ready_artwork(active_model, confident("painting"))
    pending = viewer_client.get(reverse("catalogue:map")).content.decode()
    assert 'id="map-pending"' in pending and "<canvas" not in pending
    map_layout_compute(version=active_model)
    html = viewer_client.get(reverse("catalogue:map")).content.decode()
    assert '<canvas id="map-canvas"' in html and "js/map.js" in html
    config = json.loads(
        html.split('<script id="map-config" type="application/json">')[1].split("</script>")[0]
    )
    assert config["points"] == reverse("catalogue:map-points", args=[active_model.version])
    assert config["catalogue"] == reverse("catalogue:artwork-list")
    assert [t["name"] for t in config["types"]] == [type_of(s).name for s in SLUGS]
    assert "Compute the layout" not in html  # viewers cannot ask for it


def test_map_page_without_model_or_with_unknown_version(viewer_client, db):
    response = viewer_client.get(reverse("catalogue:map"))
    assert response.status_code == 200 and "No model version is active" in response.content.decode()
    assert viewer_client.get(reverse("catalogue:map"), {"version": "nope"}).status_code == 404


def test_curators_ask_for_the_layout_viewers_cannot(
    client, curator, viewer, active_model, broker, django_capture_on_commit_callbacks
):
    reopen_broker_pool()
    url = reverse("catalogue:map-layout-start")
    assert logged_in(client, viewer).post(url, {"version": active_model.version}).status_code == 403
    assert not MapLayout.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        response = logged_in(client, curator).post(url, {"version": active_model.version})
    assert response.status_code == 302 and MapLayout.objects.get().status == MapLayout.Status.QUEUED
    assert broker.llen("celery") == 1
    assert logged_in(client, curator).post(url, {"version": "nope"}).status_code == 404


def test_map_works_describes_the_works_under_the_pointer(viewer_client, active_model):
    works = [ready_artwork(active_model, confident("painting"), title=f"Work <{i}>") for i in range(3)]
    url = reverse("catalogue:map-works")
    data = viewer_client.get(url, {"ids": f"{works[2].pk},{works[0].pk},999999"}).json()["works"]
    assert [w["id"] for w in data] == [works[0].pk, works[2].pk]
    assert data[0]["title"] == "Work <0>" and data[0]["url"] == f"/artworks/{works[0].pk}/"
    assert data[0]["thumbnail"] == works[0].thumbnail.url
    assert viewer_client.get(url).json() == {"works": []}
    for bad in ("1,x", "-3", str(2**70), ",".join(str(i) for i in range(1, 502))):
        assert viewer_client.get(url, {"ids": bad}).status_code == 400
