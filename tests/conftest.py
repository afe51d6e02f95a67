"""Fixtures shared by the whole suite: a tiny real Keras model, users, and a clean test broker queue.

Everything runs against the real PostgreSQL with pgvector and the real Redis (embedded ones under var/test unless
DATABASE_URL / CELERY_BROKER_URL are set) — no SQLite, no mocked database or broker.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

TINY_VERSION = "test-tiny"
TINY_INPUT = 32
CLASSES = ["drawings", "engraving", "iconography", "painting", "sculpture"]

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def write_tiny_model(folder: Path, version: str = TINY_VERSION, seed: int = 0) -> Path:
    """A real (untrained) seed-architecture model saved as a version folder, small enough to load in a second:
    model.keras, and the model.tflite that serves, made and checked by the training code (its card records the
    passing check that activation requires)."""
    import keras

    from inference.architectures import build_seed_cnn
    from inference.training.tflite_copy import serving_copy_add

    keras.utils.set_random_seed(seed)
    path = folder / version
    path.mkdir(parents=True, exist_ok=True)
    build_seed_cnn(input_size=TINY_INPUT).save(path / "model.keras")
    card = {
        "version": version,
        "created": "2026-01-01T00:00:00",
        "architecture": "seed-cnn",
        "classes": CLASSES,
        "input_size": TINY_INPUT,
        "embedding_dim": 128,
        "temperature": 1.0,
        "metrics": {"accuracy": 0.2},
    }
    (path / "card.json").write_text(json.dumps(card))
    serving_copy_add(path)
    return path


@pytest.fixture(scope="session")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    write_tiny_model(root)
    return root


@pytest.fixture(autouse=True)
def _test_models(settings, model_root: Path) -> None:  # type: ignore[no-untyped-def]
    settings.ARTSITE_MODEL_DIRS = [model_root]
    settings.ARTSITE_DEFAULT_MODEL = TINY_VERSION


@pytest.fixture(autouse=True)
def _fresh_shared_cache() -> None:
    """The shared cache (the agreement figures) lives in the real test Redis across tests, while each test's rows are
    rolled back: what one test counted must not reach the next."""
    from django.core.cache import caches
    from redis.exceptions import RedisError

    try:
        caches["shared"].clear()
    except RedisError:  # a test that stops Redis finds out for itself
        pass


@pytest.fixture
def active_model(db):  # type: ignore[no-untyped-def]
    from inference.services import model_ensure_active

    return model_ensure_active()


@pytest.fixture
def curator(db):  # type: ignore[no-untyped-def]
    from tests.factories import CuratorFactory

    return CuratorFactory(username="curator1")


@pytest.fixture
def viewer(db):  # type: ignore[no-untyped-def]
    from tests.factories import ViewerFactory

    return ViewerFactory(username="viewer1")


@pytest.fixture
def curator_client(client, curator):  # type: ignore[no-untyped-def]
    client.force_login(curator)
    return client


@pytest.fixture
def viewer_client(client, viewer):  # type: ignore[no-untyped-def]
    client.force_login(viewer)
    return client


@pytest.fixture
def broker():  # type: ignore[no-untyped-def]
    """The real test Redis, emptied before and after the test."""
    import redis
    from django.conf import settings

    url = settings.CELERY_BROKER_URL
    client = (
        redis.Redis(unix_socket_path=url.removeprefix("redis+socket://"))
        if url.startswith("redis+socket")
        else redis.Redis.from_url(url)
    )
    client.flushdb()
    yield client
    client.flushdb()


class WorkerProcess:
    """A real `celery worker` process on the test database, broker, media folder and tiny model."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.processes: list = []

    def start(self, *, warm: bool = True):  # type: ignore[no-untyped-def]
        import subprocess
        import sys

        env = {**self.env, "ARTSITE_WARM_MODEL_ON_START": "1" if warm else "0"}
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "artsite",
                "worker",
                "--pool=prefork",
                "--concurrency=1",
                "--loglevel=INFO",
                "--without-mingle",
                "--without-gossip",
                "-n",
                f"test{len(self.processes)}@%h",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def kill(self, process) -> None:  # type: ignore[no-untyped-def]
        """SIGKILL the worker and its pool children at once, as the OOM killer or a crashed host would."""
        import os
        import signal

        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                self.kill(process)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def celery_worker_process(transactional_db, settings, model_root, broker, tmp_path):  # type: ignore[no-untyped-def]
    """Start real worker processes with ``.start()``; all are killed at the end of the test.

    Needs committed rows, hence ``transactional_db``: mark such tests
    ``@pytest.mark.django_db(transaction=True, serialized_rollback=True)`` so the seeded types and groups survive.
    """
    from django.db import connection

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "artsite.settings.test",
        "ARTSITE_DATABASE_NAME": connection.settings_dict["NAME"],
        "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "ARTSITE_MODEL_DIRS": str(model_root),
        "ARTSITE_DEFAULT_MODEL": TINY_VERSION,
        "PYTHONUNBUFFERED": "1",
    }
    workers = WorkerProcess(env, tmp_path / "worker.log")
    yield workers
    workers.stop_all()


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.1, *, explain=None):  # type: ignore[no-untyped-def]
    """Poll until ``predicate()`` is truthy; returns its value or fails the test with the timeout (and
    ``explain()``'s text, e.g. the worker's log)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    details = explain() if explain else ""
    pytest.fail(f"condition not met within {timeout:.0f}s\n{details[-4000:]}")
