"""Training jobs in real processes: the training queue's own worker runs a job started as the Models page starts it,
and a job killed with SIGKILL in the middle of its training (a real kill) publishes no version folder, leaves the
active version serving and blocks nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from catalogue.models import TrainingJob
from catalogue.services.training_jobs import training_job_run, training_job_start
from inference import registry
from inference.loader import get_classifier
from inference.models import ModelVersion
from tests.catalogue.training_helpers import training_catalogue
from tests.conftest import TINY_VERSION, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_a_killed_training_job_leaves_no_version_and_the_active_version_serving(
    active_model, settings, model_root, tmp_path
):
    from django.db import connection

    models_dir = tmp_path / "models"
    settings.ARTSITE_MODEL_DIRS = [model_root, models_dir]
    training_catalogue(gold=1, train=4)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "artsite.settings.test",
        "ARTSITE_DATABASE_NAME": connection.settings_dict["NAME"],
        "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "ARTSITE_MODEL_DIRS": f"{model_root},{models_dir}",
        "ARTSITE_DEFAULT_MODEL": TINY_VERSION,
    }
    log = tmp_path / "train.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "train_model",
                "--from-catalogue",
                "--epochs",
                "500",
                "--batch-size",
                "4",
            ],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for(
                lambda: TrainingJob.objects.filter(status="running", epoch__gte=2).exists(),
                timeout=180,
                explain=log.read_text,
            )
            os.killpg(process.pid, signal.SIGKILL)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    killed = TrainingJob.objects.get()
    assert killed.status == "running" and killed.epoch < 500, "the kill came after the training had finished"
    # Nothing but the hidden staging folder of the dead job: no version folder, half-written or not.
    assert all(p.name.startswith(".") for p in models_dir.iterdir())
    assert [card["version"] for card in registry.list_cards()] == [TINY_VERSION]
    assert ModelVersion.objects.active().get().version == TINY_VERSION
    probabilities, _ = get_classifier(TINY_VERSION).predict_arrays(np.zeros((1, 32, 32, 3)))
    assert probabilities.shape == (1, 5)

    # The dead job blocks nothing: the next start marks it failed, and the next run clears its staging folder.
    job = training_job_start(options={"epochs": 1, "version": "after-kill"}, enqueue=False)
    killed.refresh_from_db()
    assert killed.status == "failed" and "worker stopped" in killed.error
    assert training_job_run(job_id=job.pk).status == "done"
    assert sorted(p.name for p in models_dir.iterdir()) == ["after-kill"]


def test_the_training_queues_worker_runs_a_started_job(
    active_model, settings, model_root, tmp_path, broker, django_capture_on_commit_callbacks
):
    from django.db import connection

    models_dir = tmp_path / "models"
    settings.ARTSITE_MODEL_DIRS = [model_root, models_dir]
    training_catalogue(gold=1, train=3)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "artsite.settings.test",
        "ARTSITE_DATABASE_NAME": connection.settings_dict["NAME"],
        "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "ARTSITE_MODEL_DIRS": f"{model_root},{models_dir}",
        "ARTSITE_DEFAULT_MODEL": TINY_VERSION,
    }
    log = tmp_path / "trainer.log"
    with open(log, "wb") as out:
        # As scripts/run.sh starts it: the training queue only, one job at a time, a fresh process per job.
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "artsite",
                "worker",
                "-Q",
                "training",
                "--concurrency",
                "1",
                "--max-tasks-per-child",
                "1",
                "--without-mingle",
                "--without-gossip",
                "-n",
                "training-test@%h",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            with django_capture_on_commit_callbacks(execute=True):
                job = training_job_start(options={"epochs": 1, "version": "from-worker"})
            wait_for(
                lambda: TrainingJob.objects.filter(pk=job.pk, status__in=["done", "failed"]).exists(),
                timeout=240,
                explain=log.read_text,
            )
        finally:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
    job.refresh_from_db()
    assert job.status == "done", job.error + log.read_text()[-3000:]
    assert job.started_at is not None and "Published from-worker" in job.log
    assert sorted(p.name for p in models_dir.iterdir()) == ["from-worker"]
