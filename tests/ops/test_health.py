"""/readyz: database, broker and model, 200 when all serve and 503 with the reason when one does not; /healthz
(liveness): the process and its database answer, 200 while Redis is down or the model is missing."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.django_db


def get_health(client, path: str = "/readyz"):  # type: ignore[no-untyped-def]
    response = client.get(path)
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    return response.status_code, response.json()


def test_healthy_without_login(client, active_model, broker):
    status, body = get_health(client)
    assert status == 200, body
    assert body["ok"] is True
    assert body["database"]["ok"] and body["broker"]["ok"]
    assert body["model"] == {**body["model"], "ok": True, "version": active_model.version, "loaded": True}
    assert body["model"]["classes"] == ["drawings", "engraving", "iconography", "painting", "sculpture"]


def test_no_active_model_is_unhealthy(client, db, broker):
    status, body = get_health(client)
    assert status == 503
    assert body["ok"] is False and body["model"]["ok"] is False
    assert body["model"]["error"] == "no model version is active"
    assert body["database"]["ok"] and body["broker"]["ok"]


def test_model_file_missing_is_unhealthy_with_the_reason(client, own_model, broker):
    (own_model / "model.tflite").unlink()
    status, body = get_health(client)
    assert status == 503
    assert body["model"]["version"] == "ops-model"
    assert "model.tflite is missing" in body["model"]["error"]


def test_model_folder_missing_is_unhealthy(client, own_model, broker):
    import shutil

    shutil.rmtree(own_model)
    status, body = get_health(client)
    assert status == 503
    assert "no folder named 'ops-model'" in body["model"]["error"]


def test_corrupt_model_is_unhealthy_with_the_reason(client, own_model, broker):
    (own_model / "model.tflite").write_bytes(b"this is not a flatbuffer")
    status, body = get_health(client)
    assert status == 503
    assert "could not be loaded" in body["model"]["error"]


def test_model_damaged_after_it_loaded_is_noticed(client, own_model, broker):
    status, body = get_health(client)
    assert status == 200 and body["model"]["loaded"] is True
    path = own_model / "model.tflite"
    path.write_bytes(b"damaged on disk while serving")
    stat = path.stat()
    # A different mtime even where the clock is coarse.
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    status, body = get_health(client)
    assert status == 503
    assert "could not be loaded" in body["model"]["error"]


def test_a_repaired_model_is_healthy_again(client, own_model, broker, model_root):
    import shutil

    from tests.conftest import TINY_VERSION

    good = (own_model / "model.tflite").read_bytes()
    (own_model / "model.tflite").write_bytes(b"broken")
    assert get_health(client)[0] == 503
    shutil.copy(model_root / TINY_VERSION / "model.tflite", own_model / "model.tflite")
    assert (own_model / "model.tflite").read_bytes() == good
    status, body = get_health(client)
    assert status == 200, body


def test_broker_down_is_unhealthy(client, active_model, settings, stopped_redis):
    settings.CELERY_BROKER_URL = stopped_redis
    status, body = get_health(client)
    assert status == 503
    assert body["broker"]["ok"] is False and body["broker"]["error"]
    assert body["database"]["ok"] and body["model"]["ok"]


def test_liveness_stays_up_while_redis_is_down(client, active_model, settings, stopped_redis):
    settings.CELERY_BROKER_URL = stopped_redis
    assert get_health(client, "/readyz")[0] == 503
    status, body = get_health(client, "/healthz")
    assert status == 200, body
    assert body == {"ok": True, "database": {**body["database"], "ok": True}}


def test_liveness_does_not_depend_on_the_model(client, db, broker):
    assert get_health(client, "/readyz")[0] == 503  # no active model
    assert get_health(client, "/healthz")[0] == 200


def test_liveness_fails_when_the_database_does_not_answer(client, db, monkeypatch):
    from django.db import OperationalError, connection

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(connection, "cursor", refuse)
    status, body = get_health(client, "/healthz")
    assert status == 503
    assert body["ok"] is False and "OperationalError" in body["database"]["error"]
