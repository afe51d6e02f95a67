"""artworks/{id}/similar/ against an exact numpy computation, and classify/ (the seed project's use case)."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from catalogue.models import Artwork, ArtworkType, Prediction
from tests.api.conftest import TYPES, assert_error
from tests.factories import ArtworkFactory, prediction_for
from tests.images import decompression_bomb_png, image_bytes, truncated_jpeg

pytestmark = pytest.mark.django_db


def _exact_order(embeddings: np.ndarray, query: np.ndarray, candidates: list[int]) -> list[int]:
    """Indices of ``candidates`` by cosine similarity to ``query``, most similar first."""
    normed = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    q = query / np.linalg.norm(query)
    sims = normed[candidates] @ q
    return [candidates[i] for i in np.argsort(-sims, kind="stable")]


# --- Similar --------------------------------------------------------------------------------------------------


def test_similar_order_matches_numpy(catalogue, viewer_api):
    artworks, embeddings = catalogue
    body = viewer_api.get(f"/api/v1/artworks/{artworks[0].pk}/similar/?k=11").json()
    expected = _exact_order(embeddings, embeddings[0], list(range(1, 12)))
    assert [r["id"] for r in body["results"]] == [artworks[i].pk for i in expected]
    sims = [r["similarity"] for r in body["results"]]
    normed = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    assert sims == pytest.approx([float(normed[i] @ normed[0]) for i in expected], abs=1e-5)
    assert body["k"] == 11 and body["type"] is None and body["artwork_id"] == artworks[0].pk


def test_similar_default_k_is_5_and_items_have_urls(catalogue, viewer_api):
    artworks, embeddings = catalogue
    body = viewer_api.get(f"/api/v1/artworks/{artworks[2].pk}/similar/").json()
    expected = _exact_order(embeddings, embeddings[2], [i for i in range(12) if i != 2])[:5]
    assert [r["id"] for r in body["results"]] == [artworks[i].pk for i in expected]
    item = body["results"][0]
    assert item["url"] == f"http://testserver/api/v1/artworks/{item['id']}/"
    assert item["page_url"] == f"http://testserver/artworks/{item['id']}/"
    assert item["thumbnail_url"].startswith("http://testserver/media/thumbnails/")
    assert item["type"] in TYPES and "thumbnail_base64" not in item


def test_similar_within_one_type(catalogue, viewer_api):
    artworks, embeddings = catalogue
    paintings = [i for i in range(12) if i % 5 == 3]
    body = viewer_api.get(f"/api/v1/artworks/{artworks[0].pk}/similar/?k=50&type=painting").json()
    assert [r["id"] for r in body["results"]] == [
        artworks[i].pk for i in _exact_order(embeddings, embeddings[0], paintings)
    ]
    assert {r["type"] for r in body["results"]} == {"painting"} and body["type"] == "painting"


@pytest.mark.parametrize(
    "query, field, code",
    [
        ("k=0", "k", "min_value"),
        ("k=51", "k", "max_value"),
        ("k=abc", "k", "invalid"),
        ("k=1.5", "k", "invalid"),
        ("type=etching", "type", "unknown_type"),
    ],
)
def test_similar_bad_query_is_400(catalogue, viewer_api, query, field, code):
    body = assert_error(viewer_api.get(f"/api/v1/artworks/{catalogue[0][0].pk}/similar/?{query}"), 400, code)
    assert field in body["fields"]


def test_similar_of_unclassified_artwork_is_409(viewer_api, active_model):
    artwork = ArtworkFactory()
    body = assert_error(viewer_api.get(f"/api/v1/artworks/{artwork.pk}/similar/"), 409, "not_classified")
    assert "pending" in body["message"]


# --- Classify -------------------------------------------------------------------------------------------------


def _post(client, data: bytes, query: str = ""):  # type: ignore[no-untyped-def]
    return client.post(
        f"/api/v1/classify/{query}",
        {"image": SimpleUploadedFile("q.jpg", data, "image/jpeg")},
        format="multipart",
    )


def _ready_catalogue_from_model(active_model, n: int = 8) -> list[Artwork]:
    """Artworks classified by the real (tiny) model, so classify's neighbours are computed in the same space."""
    from catalogue.services.classification import artwork_classify

    artworks = [ArtworkFactory(data=image_bytes(900 + i, size=(300, 320))) for i in range(n)]
    for artwork in artworks:
        artwork_classify(artwork_id=artwork.pk)
    return artworks


def test_classify_returns_type_probabilities_version_and_similar(viewer_api, active_model, media_files):
    from PIL import Image

    from inference.loader import get_classifier

    artworks = _ready_catalogue_from_model(active_model)
    query = image_bytes(123, size=(300, 320))
    before_files, before_rows = media_files(), (Artwork.objects.count(), Prediction.objects.count())
    response = _post(viewer_api, query)
    assert response.status_code == 200, response.content
    body = response.json()

    import io

    probs, emb = get_classifier(active_model.version).predict_images(
        [Image.open(io.BytesIO(query)).convert("RGB")]
    )
    assert body["model_version"] == active_model.version
    assert set(body["probabilities"]) == set(TYPES)
    assert [body["probabilities"][t] for t in TYPES] == pytest.approx(probs[0].tolist(), abs=1e-5)
    assert body["type"] == TYPES[int(np.argmax(probs[0]))] and body["confidence"] == pytest.approx(
        float(probs[0].max()), abs=1e-5
    )
    assert body["type_name"] == ArtworkType.objects.get(slug=body["type"]).name

    stored = {p.artwork_id: np.asarray(p.embedding) for p in Prediction.objects.filter(artwork__in=artworks)}
    ids = list(stored)
    matrix = np.stack([stored[i] for i in ids])
    expected = [ids[i] for i in _exact_order(matrix, emb[0], list(range(len(ids))))[:5]]
    assert [s["id"] for s in body["similar"]] == expected
    assert all(
        set(s) >= {"id", "title", "type", "similarity", "image_url", "thumbnail_url", "page_url"}
        for s in body["similar"]
    )
    # Classify stores nothing.
    assert (
        media_files() == before_files and (Artwork.objects.count(), Prediction.objects.count()) == before_rows
    )
    timing = response["Server-Timing"]
    for part in ("decode;dur=", "model;dur=", "search;dur=", "serialise;dur=", "app;dur="):
        assert part in timing


def test_classify_inline_adds_base64_thumbnails(viewer_api, active_model):
    artworks = _ready_catalogue_from_model(active_model, n=3)
    body = _post(viewer_api, image_bytes(124), "?inline=1").json()
    assert len(body["similar"]) == 3
    by_id = {a.pk: a for a in artworks}
    for item in body["similar"]:
        with by_id[item["id"]].thumbnail.open("rb") as handle:
            assert base64.b64decode(item["thumbnail_base64"]) == handle.read()


def test_classify_with_empty_catalogue_has_no_similar(viewer_api, active_model):
    body = _post(viewer_api, image_bytes(125)).json()
    assert body["similar"] == [] and body["type"] in TYPES


def test_classify_ignores_other_versions_and_unready_works(viewer_api, active_model):
    from inference.models import ModelVersion

    other = ModelVersion.objects.create(version="other", path="/nowhere", card={})
    stale = ArtworkFactory(status="ready")
    prediction_for(stale, version=other, type_slug="painting", embedding=np.ones(128))
    failed = ArtworkFactory(status="failed")
    prediction_for(failed, version=active_model, type_slug="painting", embedding=np.ones(128))
    assert _post(viewer_api, image_bytes(126)).json()["similar"] == []


@pytest.mark.parametrize(
    "data, status, code",
    [
        (b"hello, not an image", 415, "not_image"),
        (truncated_jpeg(9), 400, "truncated"),
        (decompression_bomb_png(), 413, "too_many_pixels"),
        (b"", 400, "empty"),
    ],
)
def test_classify_bad_images(viewer_api, active_model, media_files, data, status, code):
    before = media_files()
    body = assert_error(_post(viewer_api, data), status, code)
    assert "image" in body["fields"]
    assert media_files() == before and Artwork.objects.count() == 0


def test_classify_oversized_is_413(viewer_api, active_model, settings):
    settings.ARTSITE_MAX_UPLOAD_BYTES = 5_000
    body = assert_error(_post(viewer_api, image_bytes(10, size=(300, 300), quality=100)), 413, "too_large")
    assert "MB" in body["message"]


def test_classify_missing_image_and_bad_inline(viewer_api, active_model):
    body = assert_error(viewer_api.post("/api/v1/classify/", {}, format="multipart"), 400, "required")
    assert "image" in body["fields"]
    assert_error(_post(viewer_api, image_bytes(1), "?inline=perhaps"), 400, "invalid")
    assert_error(
        viewer_api.post("/api/v1/classify/", {"image": "x"}, format="json"), 415, "unsupported_media_type"
    )
    assert_error(viewer_api.get("/api/v1/classify/"), 405, "method_not_allowed")


def test_classify_without_active_model_is_503(viewer_api, db):
    body = assert_error(_post(viewer_api, image_bytes(2)), 503, "model_unavailable")
    assert "no model version is active" in body["message"]


def test_classify_throttled_with_429(viewer_api, active_model, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"classify": "3/min", "upload": "100/min"},
    }
    for _ in range(3):
        assert _post(viewer_api, image_bytes(3)).status_code == 200
    response = _post(viewer_api, image_bytes(3))
    assert_error(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0


def test_real_responses_match_the_documented_schemas(catalogue, viewer_api, curator_api, anon, active_model):
    """Successful answers (which generated inputs rarely reach for classify) against their OpenAPI components."""
    import json

    from openapi_schema_validator import OAS30Validator, validate

    components = json.loads(anon.get("/api/v1/schema/?format=json").content)["components"]

    def check(body: object, component: str) -> None:
        validate(
            body, {"$ref": f"#/components/schemas/{component}", "components": components}, cls=OAS30Validator
        )

    artwork = catalogue[0][0]
    check(_post(viewer_api, image_bytes(5), "?inline=1").json(), "ClassifyResult")
    check(viewer_api.get("/api/v1/artworks/?page_size=3").json(), "PaginatedArtworkList")
    check(viewer_api.get(f"/api/v1/artworks/{artwork.pk}/").json(), "Artwork")
    check(viewer_api.get(f"/api/v1/artworks/{artwork.pk}/similar/").json(), "SimilarResponse")
    label = curator_api.post(f"/api/v1/artworks/{artwork.pk}/label/", {"type": "painting"}, format="json")
    check(label.json(), "LabelResponse")
    # The history is paged like the lists (found by the schema fuzzing when it hit a real artwork's history).
    history = viewer_api.get(f"/api/v1/artworks/{artwork.pk}/history/?page_size=1").json()
    assert history["count"] >= 1 and len(history["results"]) == 1
    check(history, "PaginatedArtworkChangeList")
    check(viewer_api.get("/api/v1/artworks/?type=etching").json(), "Error")
    with pytest.raises(Exception, match="required"):  # the check has teeth
        check({"status": 400, "code": "x"}, "Error")
