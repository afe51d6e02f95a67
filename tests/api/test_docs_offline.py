import pytest

pytestmark = pytest.mark.django_db


def test_swagger_ui_is_served_from_our_own_static_files(curator_client):
    html = curator_client.get("/api/v1/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn.jsdelivr" not in html and "unpkg.com" not in html
