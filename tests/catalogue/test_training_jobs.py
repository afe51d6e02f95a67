"""Training jobs: queued on their own queue, one at a time, cancellable, never blocked by a dead worker; the real
training (a tiny network on generated images) published with the gate's decision, and nothing published when it
stops half-way."""

import json
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connections, transaction
from django.utils import timezone

from catalogue.models import TrainingJob
from catalogue.services import training_jobs
from catalogue.services.artwork_types import artwork_type_create
from catalogue.services.training_jobs import (
    JobReporter,
    TrainingJobRefused,
    training_job_activate,
    training_job_cancel,
    training_job_run,
    training_job_start,
)
from inference.loader import get_classifier
from inference.models import ModelVersion
from inference.services import model_version_set_active
from tests.catalogue.training_helpers import SLUGS, training_catalogue, work
from tests.conftest import TINY_VERSION

pytestmark = pytest.mark.django_db
FAST = {"epochs": 8, "batch_size": 8}


@pytest.fixture
def models_dir(settings, tmp_path):
    """New versions go to a folder of this test's own (the shipped tiny model stays in the first)."""
    folder = tmp_path / "models"
    settings.ARTSITE_MODEL_DIRS = [*settings.ARTSITE_MODEL_DIRS, folder]
    return folder


def listing(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --- Start, one at a time, cancel, dead workers ---------------------------------------------------------------


def test_start_queues_the_job_on_the_training_queue(curator, broker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job = training_job_start(user=curator, options={"epochs": 2})
    assert (job.status, job.requested_by, job.options) == ("queued", curator, {"epochs": 2})
    assert broker.llen("training") == 1 and broker.llen("celery") == 0
    message = json.loads(broker.lindex("training", 0))
    assert message["headers"]["task"] == "catalogue.tasks.training_job_run"
    assert message["headers"]["argsrepr"] == f"[{job.pk}]"


def test_one_job_at_a_time(db):
    first = training_job_start(enqueue=False)
    with pytest.raises(TrainingJobRefused, match=f"Training job {first.pk} is queued"):
        training_job_start(enqueue=False)
    # The database has the last word, whatever a caller does.
    with pytest.raises(IntegrityError), transaction.atomic():
        TrainingJob.objects.create(status=TrainingJob.Status.RUNNING)


def test_start_refuses_unknown_and_mistyped_options(db):
    with pytest.raises(TrainingJobRefused, match="Unknown training option"):
        training_job_start(options={"epochz": 3}, enqueue=False)
    with pytest.raises(TrainingJobRefused, match="epochs has the wrong type"):
        training_job_start(options={"epochs": "3"}, enqueue=False)
    with pytest.raises(TrainingJobRefused, match="epochs has the wrong type"):
        training_job_start(options={"epochs": True}, enqueue=False)
    assert not TrainingJob.objects.exists()


def test_a_cancelled_queued_job_never_runs_and_frees_the_slot(db):
    job = training_job_cancel(job=training_job_start(enqueue=False))
    assert job.status == "cancelled" and job.finished_at is not None
    assert training_job_run(job_id=job.pk).status == "cancelled"  # its task arrives later: nothing happens
    with pytest.raises(TrainingJobRefused, match="already ended"):
        training_job_cancel(job=job)
    assert training_job_start(enqueue=False).status == "queued"


def test_a_running_job_whose_worker_died_is_failed_and_does_not_block(db):
    dead = TrainingJob.objects.create(status=TrainingJob.Status.RUNNING, started_at=timezone.now())
    job = training_job_start(enqueue=False)
    dead.refresh_from_db()
    assert dead.status == "failed" and "worker stopped" in dead.error
    assert job.status == "queued"


def test_a_running_job_whose_worker_lives_keeps_its_slot(db):
    running = TrainingJob.objects.create(status=TrainingJob.Status.RUNNING, started_at=timezone.now())
    worker = connections.create_connection("default")  # another process's connection, holding the job's lock
    try:
        with worker.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", [training_jobs.TRAINING_LOCK_KEY, running.pk])
        with pytest.raises(TrainingJobRefused, match="is running"):
            training_job_start(enqueue=False)
        running.refresh_from_db()
        assert running.status == "running"
        assert training_job_cancel(job=running).status == "cancelling"  # the live worker is asked to stop
    finally:
        worker.close()  # the "process" dies: PostgreSQL releases its lock
    assert training_job_start(enqueue=False).status == "queued"
    running.refresh_from_db()
    assert running.status == "cancelled"  # it had been asked to stop: it ends as cancelled, not failed


# --- Real trainings -------------------------------------------------------------------------------------------------


def test_the_gate_offers_a_better_version_and_refuses_a_worse_one(active_model, models_dir):
    training_catalogue()  # 5 gold + 8 training works + 1 imported gold-split work per type
    models_dir.mkdir(parents=True)
    (models_dir / ".training-job-999").mkdir()  # left by a training killed earlier

    better = training_job_run(
        job_id=training_job_start(options={**FAST, "version": "better"}, enqueue=False).pk
    )
    assert better.status == "done", better.error
    assert better.version == "better" and better.gate["offered"] is True
    comparison = better.gate["comparison"]
    # Both versions measured on the same 25 gold works; the untrained tiny model is near chance.
    assert comparison["new"]["n"] == comparison["active"]["n"] == 25
    assert comparison["active"]["version"] == TINY_VERSION
    assert comparison["new"]["accuracy"] >= 0.9 > comparison["active"]["accuracy"]
    assert listing(models_dir) == ["better"]  # published by a rename; the stale staging folder removed
    card = json.loads((models_dir / "better" / "card.json").read_text())
    assert card["catalogue_training"]["gate"]["offered"] is True
    assert card["catalogue_training"]["gold_set"]["n"] == 25
    assert card["data"]["n"] == 5 * (8 + 1)  # the gold works were never trained on
    assert card["metrics"]["evaluated_on"] == "val" and card["metrics"]["n"] == 25
    registered = ModelVersion.objects.get(version="better")
    assert registered.status == "available"  # offered, not activated: that is a curator's click
    assert ModelVersion.objects.active().get().version == TINY_VERSION
    assert (better.epoch, better.epochs, better.member, better.members) == (8, 8, 1, 1)
    assert "epoch 8/8" in better.log and "Published better" in better.log

    model_version_set_active(version=registered)  # as if its re-embedding had finished
    worse = training_job_run(
        job_id=training_job_start(
            options={**FAST, "learning_rate": 0.0, "version": "worse"}, enqueue=False
        ).pk
    )
    assert worse.status == "done", worse.error
    assert worse.gate["offered"] is False
    assert "gold accuracy" in worse.gate["reason"] and "(lower)" in worse.gate["reason"]
    assert worse.gate["comparison"]["active"]["version"] == "better"
    with pytest.raises(TrainingJobRefused, match="did not pass the gate"):
        training_job_activate(job=worse)
    assert ModelVersion.objects.active().get().version == "better"


def test_cancel_stops_a_running_training_and_publishes_nothing(active_model, models_dir, monkeypatch):
    training_catalogue(gold=1, train=3)
    job = training_job_start(options={"epochs": 5, "batch_size": 8}, enqueue=False)
    original = JobReporter.on_epoch

    def curator_cancels_after_epoch_one(self, epoch, epochs, logs):
        if epoch == 1:
            training_job_cancel(job=TrainingJob.objects.get(pk=job.pk))
        original(self, epoch, epochs, logs)

    monkeypatch.setattr(JobReporter, "on_epoch", curator_cancels_after_epoch_one)
    job = training_job_run(job_id=job.pk)
    assert job.status == "cancelled" and job.epoch == 1 and "Cancelled" in job.log
    assert listing(models_dir) == []  # no version, no staging folder
    assert list(ModelVersion.objects.values_list("version", flat=True)) == [TINY_VERSION]


def test_a_training_that_breaks_half_way_leaves_nothing_and_the_active_version_serving(
    active_model, models_dir, monkeypatch
):
    training_catalogue(gold=1, train=3)

    def disk_full(self, epoch, epochs, logs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(JobReporter, "on_epoch", disk_full)
    job = training_job_run(job_id=training_job_start(options={"epochs": 3}, enqueue=False).pk)
    assert job.status == "failed" and "No space left on device" in job.error
    assert listing(models_dir) == []
    assert ModelVersion.objects.active().get().version == TINY_VERSION
    probabilities, _ = get_classifier(TINY_VERSION).predict_arrays(np.zeros((1, 32, 32, 3)))
    assert probabilities.shape == (1, 5)


def test_a_new_type_with_twenty_verified_works_is_learned_and_one_with_fewer_is_not(active_model, models_dir):
    artwork_type_create(name="Textile")
    artwork_type_create(name="Photograph")
    training_catalogue(gold=1, train=3)
    for i in range(20):
        work("textile", colour=5, gold_split=i % 5 == 0)
    for _ in range(19):
        work("photograph", colour=6, gold_split=False)
    job = training_job_run(
        job_id=training_job_start(options={"epochs": 2, "batch_size": 8}, enqueue=False).pk
    )
    assert job.status == "done", job.error
    card = json.loads((models_dir / job.version / "card.json").read_text())
    assert card["classes"] == [*SLUGS, "textile"]
    assert card["catalogue_training"]["left_out_types_not_learned"] == {"photograph": 19}
    assert job.gate["new_types"] == ["textile"] and "textile" not in job.gate["compared"]
    # What it can predict is its class list: it never predicts a type it does not know.
    classifier = get_classifier(job.version)
    assert classifier.classes == (*SLUGS, "textile")
    probabilities, _ = classifier.predict_arrays(np.zeros((2, 32, 32, 3)))
    assert probabilities.shape == (2, 6)


def test_train_model_from_catalogue_runs_the_same_job(active_model, models_dir):
    training_catalogue(gold=1, train=3)
    out = StringIO()
    call_command("train_model", "--from-catalogue", "--epochs", "1", "--name", "from-cli", stdout=out)
    job = TrainingJob.objects.get()
    assert (job.status, job.version, job.options) == (
        "done",
        "from-cli",
        {"epochs": 1, "version": "from-cli"},
    )
    output = out.getvalue()
    assert f"Training job {job.pk}" in output and "epoch 1/1" in output and job.gate["reason"] in output
    assert listing(models_dir) == ["from-cli"]
    # Too few gold works (one per type) to compare: it is not offered, and --activate would not switch.
    assert job.gate["offered"] is False and "too few gold works" in job.gate["reason"]


def test_train_model_from_catalogue_refuses_while_a_job_is_active_and_an_empty_catalogue(
    active_model, models_dir
):
    queued = training_job_start(enqueue=False)
    with pytest.raises(CommandError, match="one job at a time"):
        call_command("train_model", "--from-catalogue", stdout=StringIO())
    training_job_cancel(job=queued)
    with pytest.raises(CommandError, match="no ready artworks"):
        call_command("train_model", "--from-catalogue", "--epochs", "1", stdout=StringIO())
    assert TrainingJob.objects.first().status == "failed"
    with pytest.raises(CommandError, match="not both"):
        call_command("train_model", str(models_dir), "--from-catalogue")
