"""JSON errors outside DRF's views (unknown paths, 500s), and the OpenAPI schema and its docs page."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import RequestFactory
from rest_framework.test import APIClient

from tests.api.conftest import assert_error

pytestmark = pytest.mark.django_db

# force_login would otherwise use the first of AUTHENTICATION_BACKENDS, which need not be able to load users.
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


@pytest.mark.parametrize("method", ["get", "post", "patch", "delete"])
def test_unknown_api_path_is_json_404_for_every_method(viewer_api, method):
    body = assert_error(getattr(viewer_api, method)("/api/v1/paintings/"), 404, "not_found")
    assert "/api/v1/paintings/" in body["message"]


def test_unknown_api_path_is_json_404_even_anonymous_and_with_debug(anon, settings):
    assert_error(anon.get("/api/v2/artworks/"), 404, "not_found")  # handler404 (outside /api/v1/)
    settings.DEBUG = True  # Django's handler404 is not used then, but /api/v1/ has its own catch-all
    assert_error(anon.get("/api/v1/nothing/here"), 404, "not_found")


def test_missing_trailing_slash_says_so(viewer_api):
    body = assert_error(viewer_api.post("/api/v1/classify", {}), 404, "not_found")
    assert "/api/v1/classify/" in body["message"] and "trailing slash" in body["message"]


def test_portal_404_stays_html(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


def test_unexpected_error_is_json_500(viewer_api, monkeypatch):
    from catalogue.api import views

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")

    monkeypatch.setattr(views, "artworks_with_prediction", broken)
    viewer_api.raise_request_exception = False  # let Django's handler answer, as in production
    body = assert_error(viewer_api.get("/api/v1/artworks/"), 500, "server_error")
    assert "boom" not in body["message"]  # no internals leak


def test_handlers_answer_json_for_api_paths_only():
    from catalogue.api.exceptions import handler404, handler500

    factory = RequestFactory()
    api_404 = handler404(factory.get("/api/v9/x"), None)
    assert api_404.status_code == 404 and json.loads(api_404.content)["code"] == "not_found"
    assert json.loads(handler500(factory.get("/api/v1/artworks/")).content)["status"] == 500
    assert handler500(factory.get("/")).status_code == 500
    assert not handler500(factory.get("/")).get("Content-Type", "").startswith("application/json")


def test_session_post_without_csrf_token_is_json_403(viewer):
    viewer.save()  # the factory does not save the password; the session checks its hash
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(viewer, backend=MODEL_BACKEND)
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post(
        "/api/v1/classify/", {"image": SimpleUploadedFile("a.jpg", b"x")}, format="multipart"
    )
    body = assert_error(response, 403, "permission_denied")
    assert "CSRF" in body["message"]


# --- Schema ---------------------------------------------------------------------------------------------------


def _schema(client) -> dict:  # type: ignore[no-untyped-def]
    response = client.get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    return json.loads(response.content)


def test_schema_is_valid_openapi_3(anon):
    from openapi_spec_validator import validate

    schema = _schema(anon)
    assert schema["openapi"].startswith("3.")
    validate(schema)


def test_schema_generates_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command(
        "spectacular",
        "--validate",
        "--fail-on-warn",
        "--file",
        str(out),
        stdout=StringIO(),
        stderr=StringIO(),
    )
    assert out.stat().st_size > 10_000


EXPECTED_OPERATIONS = {
    ("get", "/api/v1/artworks/"): "200",
    ("post", "/api/v1/artworks/"): "202",
    ("get", "/api/v1/artworks/{id}/"): "200",
    ("patch", "/api/v1/artworks/{id}/"): "200",
    ("delete", "/api/v1/artworks/{id}/"): "204",
    ("get", "/api/v1/artworks/{id}/similar/"): "200",
    ("post", "/api/v1/artworks/{id}/label/"): "201",
    ("post", "/api/v1/classify/"): "200",
    ("get", "/api/v1/types/"): "200",
    ("get", "/api/v1/types/{slug}/"): "200",
    ("get", "/api/v1/models/"): "200",
    ("get", "/api/v1/models/{version}/"): "200",
    ("get", "/api/v1/mislabels/"): "200",
    ("post", "/api/v1/mislabels/{artwork_id}/decide/"): "200",
    ("get", "/api/v1/artworks/{id}/history/"): "200",
    ("post", "/api/v1/artworks/bulk-edit/"): "201",
    ("get", "/api/v1/bulk-edits/"): "200",
    ("get", "/api/v1/bulk-edits/{id}/"): "200",
    ("post", "/api/v1/bulk-edits/{id}/undo/"): "200",
    ("get", "/api/v1/near-duplicates/"): "200",
    ("post", "/api/v1/near-duplicates/{id}/decide/"): "200",
    ("post", "/api/v1/near-duplicates/scan/"): "202",
    ("post", "/predict/"): "200",  # the seed project's route (catalogue/api/compat.py)
}
# Streamed exports: their success is CSV or JSON lines, not a JSON document.
STREAMED_OPERATIONS = {
    ("get", "/api/v1/artworks/export/"): "200",
    ("get", "/api/v1/label-corrections/export/"): "200",
}


def test_every_endpoint_documents_request_response_and_errors(anon):
    schema = _schema(anon)
    operations = {(m, p): op for p, item in schema["paths"].items() for m, op in item.items()}
    assert set(operations) == set(EXPECTED_OPERATIONS) | set(STREAMED_OPERATIONS)
    for key, success in {**EXPECTED_OPERATIONS, **STREAMED_OPERATIONS}.items():
        op = operations[key]
        assert success in op["responses"], key
        if key in STREAMED_OPERATIONS:
            assert set(op["responses"][success]["content"]) == {"text/csv", "application/x-ndjson"}, key
        elif success != "204":
            assert "$ref" in json.dumps(op["responses"][success]["content"]["application/json"]["schema"]), (
                key
            )
        for code in ("401", "403"):
            assert op["responses"][code]["content"]["application/json"]["schema"]["$ref"].endswith(
                "/Error"
            ), key
        if key[0] in ("post", "patch"):
            assert op["requestBody"]["content"], key
        assert {"tokenAuth": []} in op["security"] and {"bearerAuth": []} in op["security"]
    upload = operations[("post", "/api/v1/artworks/")]["requestBody"]["content"]
    assert "multipart/form-data" in upload
    for code in ("400", "409", "413", "415", "429"):
        assert code in operations[("post", "/api/v1/artworks/")]["responses"]
    similar_params = {p["name"] for p in operations[("get", "/api/v1/artworks/{id}/similar/")]["parameters"]}
    assert {"k", "type"} <= similar_params
    list_params = {p["name"] for p in operations[("get", "/api/v1/artworks/")]["parameters"]}
    assert {
        "type",
        "status",
        "labelled",
        "provenance",
        "min_confidence",
        "max_confidence",
        "model_version",
        "search",
        "ordering",
        "page",
        "page_size",
    } <= list_params
    assert set(schema["components"]["schemas"]["Error"]["required"]) == {
        "status",
        "code",
        "message",
        "fields",
    }


def test_swagger_ui_is_served(anon):
    response = anon.get("/api/v1/docs/")
    assert response.status_code == 200 and b"swagger" in response.content.lower()


def test_row_deleted_while_the_request_runs_is_404(catalogue, curator_api, monkeypatch):
    from catalogue.api import views
    from catalogue.models import Artwork

    def gone(**kwargs):  # type: ignore[no-untyped-def]
        raise Artwork.DoesNotExist("Artwork matching query does not exist.")

    monkeypatch.setattr(views, "label_correct", gone)
    artwork = catalogue[0][0]
    response = curator_api.post(f"/api/v1/artworks/{artwork.pk}/label/", {"type": "painting"}, format="json")
    assert_error(response, 404, "not_found")
