"""The serving runtime is slim: a fresh web process (the URLconf, the pages, classify/, /healthz, an explanation
map) and a fresh classification worker (its task modules, the warm-up, the classify task run in-process) classify
images without ever importing TensorFlow, Keras, scikit-learn or cleanlab, which only the training requirements
install. Each runs in a subprocess of its own: this test process has imported TensorFlow long ago."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY_VERSION

ROOT = Path(__file__).resolve().parents[2]
TRAINING_ONLY = ("tensorflow", "keras", "sklearn", "cleanlab")

# What the subprocess prints last: the status codes it saw and every training-only module it imported.
REPORT = """
import json, sys
training_only = sorted(m for m in sys.modules if m.split(".")[0] in {training_only!r})
print("REPORT " + json.dumps({{"results": results, "training_only": training_only}}))
"""

WEB = """
import os
from artsite.wsgi import application  # what gunicorn loads: django.setup() and the settings
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import get_resolver

get_resolver().url_patterns  # the whole URLconf: every view module
client = Client(HTTP_HOST="localhost")
client.force_login(get_user_model().objects.get(username=os.environ["TEST_USER"]))
pk = os.environ["TEST_ARTWORK"]
results = {{
    "healthz": client.get("/healthz").status_code,
    "classify": client.post(
        "/api/v1/classify/", {{"image": SimpleUploadedFile("q.png", open(os.environ["TEST_IMAGE"], "rb").read())}}
    ).status_code,
    "artwork": client.get(f"/artworks/{{pk}}/").status_code,
    "explanation": client.get(f"/artworks/{{pk}}/explain/drawings.png").status_code,
    "catalogue": client.get("/").status_code,
    "models": client.get("/models/").status_code,
    "mislabels": client.get("/mislabels/").status_code,
    "admin_versions": client.get("/admin/inference/modelversion/").status_code,
}}
"""

WORKER = """
import os
import django

django.setup()
from artsite.celery import app

app.loader.import_default_modules()  # every task module, as `celery worker` imports them at start
from catalogue.models import Artwork
from catalogue.tasks import classify_artwork, warm_model

warm_model()
pk = int(os.environ["TEST_ARTWORK"])
classify_artwork.apply(args=[pk]).get()
results = {{"status": Artwork.objects.get(pk=pk).status, "tasks": sorted(t for t in app.tasks if "training" in t)}}
"""


def _run(script: str, settings, model_root: Path, **extra: str) -> dict:  # type: ignore[no-untyped-def]
    from django.db import connection

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "artsite.settings.test",
        "ARTSITE_DATABASE_NAME": connection.settings_dict["NAME"],
        "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "ARTSITE_MODEL_DIRS": str(model_root),
        "ARTSITE_DEFAULT_MODEL": TINY_VERSION,
        **extra,
    }
    code = script.format() + REPORT.format(training_only=TRAINING_ONLY)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    report = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    assert done.returncode == 0 and report, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(report[-1].removeprefix("REPORT "))


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_web_process_serves_and_classifies_without_tensorflow(
    active_model, curator, settings, model_root, tmp_path
):
    from catalogue.services.classification import artwork_classify
    from tests.factories import ArtworkFactory
    from tests.images import image_bytes

    artwork = ArtworkFactory()
    artwork_classify(artwork_id=artwork.pk)  # a ready work with its prediction, for its page and its map
    image = tmp_path / "query.png"
    image.write_bytes(image_bytes(77, size=(120, 90), fmt="PNG"))
    report = _run(
        WEB,
        settings,
        model_root,
        TEST_USER=curator.username,
        TEST_ARTWORK=str(artwork.pk),
        TEST_IMAGE=str(image),
    )
    assert report["results"] == {
        "healthz": 200,
        "classify": 200,
        "artwork": 200,
        "explanation": 200,
        "catalogue": 200,
        "models": 200,
        "mislabels": 200,
        "admin_versions": 200,
    }
    assert report["training_only"] == []


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_classification_worker_classifies_without_tensorflow(active_model, settings, model_root):
    from catalogue.models import Artwork
    from tests.factories import ArtworkFactory

    artwork = ArtworkFactory()
    report = _run(WORKER, settings, model_root, TEST_ARTWORK=str(artwork.pk))
    assert report["results"]["status"] == Artwork.Status.READY
    # The training tasks are registered (the worker may route them), their bodies import TensorFlow only when run.
    assert report["results"]["tasks"] == ["catalogue.tasks.training_job_run"]
    assert report["training_only"] == []
