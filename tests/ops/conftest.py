"""Fixtures for the operations tests: a Redis server of the test's own that can be stopped, a model version folder
of the test's own that can be damaged, and a clean health cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _fresh_health():  # type: ignore[no-untyped-def]
    from artsite import health, metrics

    health.health_reset()
    metrics._quiet_until = 0.0
    yield
    health.health_reset()
    metrics._quiet_until = 0.0


@pytest.fixture
def stopped_redis(tmp_path: Path) -> str:
    """The URL of a real Redis that was started and then stopped (the broker is down)."""
    import time

    from artsite import embedded

    # A short path: Unix socket paths are limited to ~100 bytes.
    folder = Path(f"/tmp/artsite-ops-redis-{tmp_path.name}")
    url = embedded.redis_url(folder)
    embedded.redis_stop(folder)
    deadline = time.monotonic() + 10
    while embedded._redis_answers(folder / "redis.sock") and time.monotonic() < deadline:
        time.sleep(0.05)
    yield url
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def own_model(settings, model_root: Path, tmp_path: Path, db):  # type: ignore[no-untyped-def]
    """A copy of the tiny model as version ``ops-model``, active; returns its folder (to delete or damage files)."""
    from inference import loader
    from inference.models import ModelVersion
    from inference.services import model_version_set_active, model_versions_sync
    from tests.conftest import TINY_VERSION

    root = tmp_path / "models"
    folder = root / "ops-model"
    shutil.copytree(model_root / TINY_VERSION, folder)
    card = (folder / "card.json").read_text().replace(TINY_VERSION, "ops-model")
    (folder / "card.json").write_text(card)
    settings.ARTSITE_MODEL_DIRS = [root]
    model_versions_sync()
    model_version_set_active(version=ModelVersion.objects.get(version="ops-model"))
    loader._cache.pop("ops-model", None)  # loaded by an earlier test from another folder
    yield folder
    loader._cache.pop("ops-model", None)


# --- A real S3 API over HTTP ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """moto's S3 server in a process of its own on a free loopback port: the S3 API spoken over HTTP, as AWS or
    MinIO speak it (boto3 cannot tell the difference). Yields its URL."""
    import os

    from bench.cluster import free_port, s3_server_start

    port = free_port()
    log = tmp_path_factory.mktemp("s3") / "moto.log"
    process = s3_server_start(port=port, log=log, env={**os.environ, **S3_CREDENTIALS})
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


#: What any S3 client needs besides the endpoint (moto accepts any key).
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "artsite-test",
    "AWS_SECRET_ACCESS_KEY": "artsite-test-secret",
    "AWS_S3_REGION_NAME": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class S3Bucket:
    """A bucket of the test's own on the S3 server, and boto3 to look into it directly."""

    def __init__(self, endpoint: str, name: str) -> None:
        import boto3

        self.endpoint, self.name = endpoint, name
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        self.client.create_bucket(Bucket=name)

    def keys(self) -> set[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name)
        return {item["Key"] for page in pages for item in page.get("Contents", [])}

    def read(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.name, Key=key)["Body"].read())

    @property
    def env(self) -> dict[str, str]:
        """The environment that points a process of the project (web, worker, command) at this bucket."""
        return {
            **S3_CREDENTIALS,
            "ARTSITE_STORAGE": "s3",
            "AWS_STORAGE_BUCKET_NAME": self.name,
            "AWS_S3_ENDPOINT_URL": self.endpoint,
            "AWS_S3_ADDRESSING_STYLE": "path",
        }

    def storage_settings(self) -> dict:
        return {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": self.name,
                "endpoint_url": self.endpoint,
                "region_name": "us-east-1",
                "addressing_style": "path",
                "signature_version": "s3v4",
                "access_key": S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                "secret_key": S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                "default_acl": None,
                "file_overwrite": False,
            },
        }


@pytest.fixture
def s3_bucket(s3_server: str, settings):  # type: ignore[no-untyped-def]
    """The default storage is a fresh bucket on the S3 server for this test (``ARTSITE_STORAGE=s3``)."""
    import uuid

    bucket = S3Bucket(s3_server, f"artsite-{uuid.uuid4().hex[:12]}")
    settings.STORAGES = {**settings.STORAGES, "default": bucket.storage_settings()}
    settings.ARTSITE_STORAGE = "s3"
    return bucket


@pytest.fixture
def celery_beat_process(celery_worker_process, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Start the real periodic sweep (``celery beat``) with ``.start(**env)``, on the workers' environment."""
    import os
    import signal
    import subprocess
    import sys

    processes: list[subprocess.Popen] = []

    class Beat:
        @staticmethod
        def start(**extra: str) -> subprocess.Popen:
            log = open(tmp_path / "beat.log", "ab")  # noqa: SIM115 - closed with the process
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "artsite",
                    "beat",
                    "--loglevel=INFO",
                    "--schedule",
                    str(tmp_path / "celerybeat-schedule"),
                ],
                env={**celery_worker_process.env, **extra},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            processes.append(process)
            return process

    yield Beat()
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
