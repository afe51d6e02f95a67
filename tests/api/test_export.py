"""The API's streamed exports (catalogue and label audit trail), and the seed project's ``POST /predict/``."""

from __future__ import annotations

import base64
import csv
import io
import json

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from catalogue.models import Artwork, ArtworkType, Prediction
from catalogue.services.labels import label_correct
from tests.api.conftest import TYPES, assert_error
from tests.factories import ArtworkFactory
from tests.images import decompression_bomb_png, image_bytes

pytestmark = pytest.mark.django_db


def _body(response) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.content[:500]
    assert response.streaming
    return b"".join(response.streaming_content).decode("utf-8")


def test_export_csv_honours_the_list_filters(viewer_api, catalogue):
    response = viewer_api.get("/api/v1/artworks/export/?format=csv&search=Hals&ordering=title")
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="artworks-')
    rows = list(csv.DictReader(io.StringIO(_body(response))))
    # Hals made works 0, 3, 6, 9 (the fixture); the list filter says the same.
    listed = viewer_api.get("/api/v1/artworks/?search=Hals&ordering=title").json()["results"]
    assert (
        [r["title"] for r in rows]
        == [w["title"] for w in listed]
        == ["Work 00", "Work 03", "Work 06", "Work 09"]
    )
    assert rows[0]["image_url"].startswith("http://testserver/")
    assert rows[1]["accession"] == "ACC-003" and rows[1]["predicted_type"] == TYPES[3]


def test_export_jsonl(viewer_api, catalogue):
    response = viewer_api.get("/api/v1/artworks/export/?format=jsonl&type=painting")
    assert response["Content-Type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in _body(response).splitlines()]
    assert {r["title"] for r in rows} == {"Work 03", "Work 08"}
    assert all(r["effective_type"] == "painting" and r["effective_type_source"] == "prediction" for r in rows)
    assert all(set(r["probabilities"]) == set(TYPES) for r in rows)


def test_export_defaults_to_csv(viewer_api, catalogue):
    assert _body(viewer_api.get("/api/v1/artworks/export/")).startswith(
        "path,title,artist,date,accession,type,"
    )


@pytest.mark.parametrize(
    ("query", "field"),
    [("format=xml", "format"), ("type=watercolour", "type"), ("provenance=guessed", "provenance")],
)
def test_export_bad_parameters_are_400_in_the_error_shape(viewer_api, catalogue, query, field):
    body = assert_error(viewer_api.get(f"/api/v1/artworks/export/?{query}"), 400)
    assert field in body["fields"]


def test_exports_need_an_account(anon, catalogue):
    assert_error(anon.get("/api/v1/artworks/export/?format=csv"), 401)
    assert_error(anon.get("/api/v1/label-corrections/export/"), 401)


def test_label_corrections_export(viewer_api, catalogue, curator):
    artworks, _ = catalogue
    label_correct(
        artwork=artworks[1],
        to_type=ArtworkType.objects.get(slug="sculpture"),
        user=curator,
        source="api",
        note="bust",
    )
    rows = [
        json.loads(line)
        for line in _body(viewer_api.get("/api/v1/label-corrections/export/?format=jsonl")).splitlines()
    ]
    assert len(rows) == 1
    row = rows[0]
    assert (row["artwork_id"], row["from_type"], row["to_type"]) == (artworks[1].pk, TYPES[1], "sculpture")
    assert (row["source"], row["note"], row["user"]) == ("api", "bust", "curator1")
    assert row["sha256"] == artworks[1].sha256 and row["accession"] == "ACC-001"
    header = _body(viewer_api.get("/api/v1/label-corrections/export/?format=csv")).splitlines()[0]
    assert header == "id,artwork_id,sha256,accession,title,from_type,to_type,source,user,note,created_at"


def test_exports_are_documented_in_the_schema(viewer_api):
    schema = viewer_api.get("/api/v1/schema/?format=json").json()
    export = schema["paths"]["/api/v1/artworks/export/"]["get"]
    assert set(export["responses"]["200"]["content"]) == {"text/csv", "application/x-ndjson"}
    parameters = {p["name"] for p in export["parameters"]}
    assert {"format", "type", "status", "provenance", "search", "ordering"} <= parameters
    assert "/api/v1/label-corrections/export/" in schema["paths"]
    assert "/predict/" in schema["paths"]
    assert not any(path.startswith("/iiif/") for path in schema["paths"])


# --- POST /predict/ (the seed project's clients) ----------------------------------------------------------------


def _classified_catalogue(n: int = 7) -> list[Artwork]:
    from catalogue.services.classification import artwork_classify

    artworks = [ArtworkFactory(data=image_bytes(700 + i, size=(120, 100))) for i in range(n)]
    for artwork in artworks:
        artwork_classify(artwork_id=artwork.pk)
    return artworks


def _predict(client, data: bytes):  # type: ignore[no-untyped-def]
    return client.post(
        "/predict/", {"image": SimpleUploadedFile("q.jpg", data, "image/jpeg")}, format="multipart"
    )


def test_predict_answers_exactly_the_seed_projects_shape(viewer_api, active_model, curator, media_files):
    from inference.loader import get_classifier

    artworks = _classified_catalogue()
    label_correct(
        artwork=artworks[0], to_type=ArtworkType.objects.get(slug="iconography"), user=curator, source="api"
    )
    query = image_bytes(777, size=(120, 100))
    before = (media_files(), Artwork.objects.count(), Prediction.objects.count())
    response = _predict(viewer_api, query)  # viewer_api sends "Authorization: Bearer <token>"
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"prediction", "nearest_neighbors"}
    assert set(body["prediction"]) == {"label", "probability"}
    probabilities, embeddings = get_classifier(active_model.version).predict_images(
        [Image.open(io.BytesIO(query)).convert("RGB")]
    )
    assert body["prediction"]["label"] == TYPES[int(np.argmax(probabilities[0]))]
    assert body["prediction"]["probability"] == round(float(probabilities[0].max()), 2)

    # The five nearest by cosine distance of the stored embeddings, computed here with numpy.
    stored = {
        p.artwork_id: np.asarray(p.embedding) for p in Prediction.objects.filter(model_version=active_model)
    }
    q = embeddings[0] / np.linalg.norm(embeddings[0])
    nearest = sorted(stored, key=lambda pk: -float(q @ (stored[pk] / np.linalg.norm(stored[pk]))))[:5]
    neighbours = body["nearest_neighbors"]
    assert [n["position"] for n in neighbours] == [1, 2, 3, 4, 5]
    assert all(set(n) == {"base64", "label", "position"} for n in neighbours)
    by_id = {a.pk: a for a in artworks}
    for pk, neighbour in zip(nearest, neighbours, strict=True):
        with by_id[pk].image.open("rb") as handle:
            assert base64.b64decode(neighbour["base64"]) == handle.read()
        expected = (
            "iconography"
            if pk == artworks[0].pk
            else Prediction.objects.get(artwork_id=pk).predicted_type.slug
        )
        assert neighbour["label"] == expected
    assert (media_files(), Artwork.objects.count(), Prediction.objects.count()) == before  # nothing stored


def test_predict_bad_input_has_the_api_error_shape(viewer_api, active_model, anon):
    assert_error(_predict(viewer_api, b"not a picture"), 415, "not_image")
    assert_error(_predict(viewer_api, decompression_bomb_png()), 413, "too_many_pixels")
    body = assert_error(viewer_api.post("/predict/", {}, format="multipart"), 400, "required")
    assert "image" in body["fields"]
    assert_error(_predict(anon, image_bytes(1)), 401)
    anon.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    assert_error(_predict(anon, image_bytes(1)), 401)
