"""Training a new model version in the background: the Models page's "Train a new version", and
``train_model --from-catalogue``, which runs the same job in its own process.

* :func:`training_job_start` creates the job (one at a time: the database's partial unique index has the last word)
  and sends ``catalogue.tasks.training_job_run`` by name, on commit, to the training queue
  (``CELERY_TASK_ROUTES``), which a worker of its own serves (``-Q training --concurrency 1``): classification never
  waits behind a training.
* :func:`training_job_run` does the work (:func:`catalogue.services.training.model_train_from_catalogue`): stage,
  soup member and epoch go to the row as they change, a line per step to its log, other progress at most once a
  second. Every one of those writes is also where a cancelled job notices it was cancelled and stops.
* A job whose process died (SIGKILL, out of memory, the task's hard time limit) is recognised at once: its process
  held a PostgreSQL advisory lock, which ends with its connection
  (:func:`catalogue.selectors.training.training_jobs_orphaned`). Starting or cancelling a job marks such a job
  failed first, so it never blocks the next one; nothing half-written is left (the version is published by a rename
  at the very end), and the next run removes the hidden staging folder it left.
* A queued job whose task never arrives (no training worker running) can always be cancelled.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from celery import current_app
from celery.exceptions import SoftTimeLimitExceeded
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from catalogue.models import TrainingJob
from catalogue.selectors.training import TRAINING_LOCK_KEY, training_job_current, training_jobs_orphaned
from catalogue.services.model_rollout import model_activate
from inference.models import ModelVersion
from inference.services import model_versions_sync

logger = logging.getLogger(__name__)

#: Sent by name: services must not import the tasks module that calls them.
TRAINING_TASK = "catalogue.tasks.training_job_run"
#: Options a job accepts: the TrainingConfig fields a curator or a test may change, and the version name.
JOB_OPTIONS = {
    "architecture": str,
    "epochs": int,
    "batch_size": int,
    "learning_rate": float,
    "seed": int,
    "input_size": int,
    "holdout_fraction": float,
    "augment": bool,
    "augment_views": int,
    "soup": int,
    "tflite": (str, type(None)),
    "fine_tune_from": str,
    "label_smoothing": float,
    "weight_decay": float,
    "mixup": float,
    "ema_decay": float,
    "body_lr_factor": float,
    "quantized_trunk": bool,
    "version": str,
}
LOG_MAX_CHARS = 50_000
WRITE_INTERVAL = 1.0  # seconds between progress writes within a stage


class TrainingJobRefused(Exception):
    """The job cannot be started, cancelled or activated now; the message says why."""


class TrainingCancelled(Exception):
    """Raised from a progress hook when the job was cancelled: unwinds the training, which leaves nothing behind."""


class TrainingAborted(Exception):
    """Raised from a progress hook when the job is no longer this process's (marked failed as orphaned)."""


# --- Start, cancel, activate (the web process: no TensorFlow here) ------------------------------------------------


def training_jobs_reap() -> list[TrainingJob]:
    """Mark failed (or cancelled, if a curator had asked) every running job whose process has died."""
    reaped = []
    for job in training_jobs_orphaned():
        cancelled = job.status == TrainingJob.Status.CANCELLING
        updated = TrainingJob.objects.filter(pk=job.pk, status=job.status).update(
            status=TrainingJob.Status.CANCELLED if cancelled else TrainingJob.Status.FAILED,
            error=""
            if cancelled
            else "The training worker stopped (killed, out of memory or past its time "
            "limit) before the job finished; nothing was published.",
            finished_at=timezone.now(),
        )
        if updated:
            job.refresh_from_db()
            reaped.append(job)
            logger.warning("training job %s: its worker died; marked %s", job.pk, job.status)
    return reaped


def _option_fits(value: Any, expected: Any) -> bool:
    if isinstance(value, bool):
        return expected is bool
    if expected is float:
        return isinstance(value, int | float)
    return isinstance(value, expected)


def _options_checked(options: dict[str, Any] | None) -> dict[str, Any]:
    """The job's options, checked for names and types (their values are the recipe's to judge, when it runs)."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(JOB_OPTIONS))
    if unknown:
        raise TrainingJobRefused(f"Unknown training option(s): {', '.join(unknown)}.")
    for name, value in options.items():
        if not _option_fits(value, JOB_OPTIONS[name]):
            raise TrainingJobRefused(f"The training option {name} has the wrong type ({value!r}).")
    return options


def training_job_start(
    *, user: Any = None, options: dict[str, Any] | None = None, enqueue: bool = True
) -> TrainingJob:
    """Queue a new training job (``enqueue=False``: the caller runs it, as ``train_model --from-catalogue`` does).

    Raises :class:`TrainingJobRefused` while another job is queued, running or being cancelled, or for options it
    does not know. A job left running by a dead worker is marked failed first.
    """
    options = _options_checked(options)
    training_jobs_reap()
    current = training_job_current()
    if current is not None:
        raise TrainingJobRefused(
            f"Training job {current.pk} is {current.get_status_display().lower()}: one job at a time. "
            "Wait for it or cancel it."
        )
    try:
        with transaction.atomic():
            job = TrainingJob.objects.create(
                options=options, requested_by=user if getattr(user, "pk", None) else None
            )
    except IntegrityError:  # another request started one between the check and the insert
        raise TrainingJobRefused("Another training job was started just now: one job at a time.") from None
    if enqueue:
        job_id = job.pk
        transaction.on_commit(lambda: _training_job_send(job_id=job_id))
    return job


def _training_job_send(*, job_id: int) -> None:
    try:
        current_app.send_task(TRAINING_TASK, args=[job_id], retry=False)
    except Exception as exc:  # kombu raises OperationalError, redis ConnectionError, socket errors...
        logger.warning("broker unreachable: training job %s not queued", job_id, exc_info=True)
        TrainingJob.objects.filter(pk=job_id, status=TrainingJob.Status.QUEUED).update(
            status=TrainingJob.Status.FAILED,
            error=f"The job could not be queued (the broker is unreachable: {exc}). Start it again.",
            finished_at=timezone.now(),
        )


def training_job_cancel(*, job: TrainingJob) -> TrainingJob:
    """Cancel a job: a queued one at once; a running one is asked to stop (it does at its next progress write and
    removes what it had written). Raises :class:`TrainingJobRefused` for a finished job."""
    training_jobs_reap()
    queued = TrainingJob.objects.filter(pk=job.pk, status=TrainingJob.Status.QUEUED)
    running = TrainingJob.objects.filter(pk=job.pk, status=TrainingJob.Status.RUNNING)
    if not (
        queued.update(status=TrainingJob.Status.CANCELLED, stage="cancelled", finished_at=timezone.now())
        or running.update(status=TrainingJob.Status.CANCELLING)
    ):
        job.refresh_from_db()
        if job.status != TrainingJob.Status.CANCELLING:
            raise TrainingJobRefused(
                f"Training job {job.pk} has already ended ({job.get_status_display().lower()})."
            )
    job.refresh_from_db()
    return job


def training_job_activate(*, job: TrainingJob) -> ModelVersion:
    """Activate the version a finished job trained, if the gate offered it: the catalogue is re-embedded in the
    background, then the switch happens (:func:`catalogue.services.model_rollout.model_activate`)."""
    if job.status != TrainingJob.Status.DONE or not job.version:
        raise TrainingJobRefused(f"Training job {job.pk} has no finished version to activate.")
    if not job.gate.get("offered"):
        raise TrainingJobRefused(
            f"{job.version} did not pass the gate on the gold set, so it is not offered for activation."
        )
    model_versions_sync()
    version = ModelVersion.objects.filter(version=job.version).first()
    if version is None:
        raise TrainingJobRefused(f"The folder of {job.version} has gone.")
    return model_activate(version=version)


# --- Running a job (the training worker, or train_model's process) ------------------------------------------------


@contextmanager
def _job_lock(job_id: int) -> Iterator[bool]:
    """Hold the job's advisory lock on this process's connection for the run (see the module docstring)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [TRAINING_LOCK_KEY, job_id])
        row = cursor.fetchone()
    held = bool(row and row[0])
    try:
        yield held
    finally:
        if held:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [TRAINING_LOCK_KEY, job_id])
            except DatabaseError:  # the connection is gone, and the lock with it
                logger.warning("training job %s: could not release its lock", job_id, exc_info=True)


class JobReporter:
    """A running job's progress, written to its row: changes of stage, member and epoch at once, other progress at
    most every ``interval`` seconds. Each write is conditional on the job still running, which is how a cancel (or
    being marked orphaned) reaches the training: the write raises :class:`TrainingCancelled` (or
    :class:`TrainingAborted`) into the progress hook that made it."""

    def __init__(
        self, job: TrainingJob, *, echo: Callable[[str], None] | None = None, interval: float = WRITE_INTERVAL
    ) -> None:
        self.job_id = job.pk
        self.fields: dict[str, Any] = {"stage": job.stage, "member": 0, "members": 0, "epoch": 0, "epochs": 0}
        self.log_text = job.log
        self.echo = echo
        self.interval = interval
        self.written = 0.0

    def line(self, text: str) -> None:
        stamp = timezone.localtime().strftime("%H:%M:%S")
        self.log_text = (self.log_text + f"{stamp} {text}\n")[-LOG_MAX_CHARS:]
        if self.echo is not None:
            self.echo(text)

    def update(self, *, force: bool = False, **fields: Any) -> None:
        self.fields.update(fields)
        if force or time.monotonic() - self.written >= self.interval:
            self.write()

    def write(self) -> None:
        self.written = time.monotonic()
        if TrainingJob.objects.filter(pk=self.job_id, status=TrainingJob.Status.RUNNING).update(
            log=self.log_text, **self.fields
        ):
            return
        status = TrainingJob.objects.filter(pk=self.job_id).values_list("status", flat=True).first()
        if status == TrainingJob.Status.CANCELLING:
            raise TrainingCancelled()
        raise TrainingAborted(f"training job {self.job_id} is {status} now")

    # The training hooks (inference.training.TrainingEvents) and the reading progress.
    def on_stage(self, name: str) -> None:
        self.line(name[:1].upper() + name[1:])
        self.update(force=True, stage=name[:200])

    def on_member(self, number: int, members: int) -> None:
        self.update(force=True, member=number, members=members)

    def on_epoch(self, epoch: int, epochs: int, logs: dict[str, float]) -> None:
        figures = "  ".join(f"{k} {v:.3f}" for k, v in logs.items() if "loss" in k or "accuracy" in k)
        self.line(f"epoch {epoch}/{epochs}  {figures}")
        self.update(force=True, epoch=epoch, epochs=epochs)

    def on_progress(self, done: int, total: int) -> None:
        self.update()


def training_job_run(*, job_id: int, echo: Callable[[str], None] | None = None) -> TrainingJob | None:
    """Run a queued job to its end: done (a new version published with the gate's decision), cancelled or failed.

    Idempotent: a job that is not queued (cancelled before it started, already run, run by another process) is
    left as it is. ``echo`` gets each log line (the command prints them).
    """
    with _job_lock(job_id) as held:
        if not held:
            return TrainingJob.objects.filter(pk=job_id).first()
        claimed = TrainingJob.objects.filter(pk=job_id, status=TrainingJob.Status.QUEUED).update(
            status=TrainingJob.Status.RUNNING, started_at=timezone.now(), stage="starting"
        )
        job = TrainingJob.objects.filter(pk=job_id).first()
        if not claimed or job is None:
            return job
        reporter = JobReporter(job, echo=echo)
        try:
            _train(job, reporter)
        except TrainingCancelled:
            reporter.line("Cancelled; nothing was published.")
            _finish(reporter, TrainingJob.Status.CANCELLED)
        except TrainingAborted:
            logger.warning("training job %s stopped: it was marked finished by another process", job_id)
        except Exception as exc:  # the job records why; the worker stays up for the next one
            error = (
                "The training took longer than its time limit and was stopped."
                if isinstance(exc, SoftTimeLimitExceeded)
                else f"{type(exc).__name__}: {exc}"
            )
            logger.exception("training job %s failed", job_id)
            reporter.line(f"Failed: {error}")
            _finish(reporter, TrainingJob.Status.FAILED, error=error[:2000])
        return TrainingJob.objects.filter(pk=job_id).first()


def _train(job: TrainingJob, reporter: JobReporter) -> None:
    # TensorFlow only in the process that trains: the web process imports this module to start and cancel jobs.
    from catalogue.services.training import (  # noqa: PLC0415
        model_train_from_catalogue,
        staging_folders_remove,
    )
    from inference.loader import configure_threads  # noqa: PLC0415  # TensorFlow on first use only
    from inference.training import TrainingConfig, TrainingEvents  # noqa: PLC0415  # TensorFlow: trainer only

    staging_name = f".training-job-{job.pk}"
    for folder in staging_folders_remove(keep=[staging_name]):
        reporter.line(f"Removed {folder.name}, left by a training that was stopped")
    options = dict(job.options)
    version = options.pop("version", None)
    try:
        config = TrainingConfig.for_architecture(options.pop("architecture", None), **options)
    except (LookupError, ValueError, TypeError) as exc:
        raise ValueError(f"The training options are not valid: {exc}") from exc
    configure_threads()
    reporter.update(force=True, members=config.soup, epochs=config.epochs)
    result = model_train_from_catalogue(
        config=config,
        events=TrainingEvents(
            on_batch=lambda done, steps: reporter.on_progress(done, steps),
            on_epoch=reporter.on_epoch,
            on_stage=reporter.on_stage,
            on_member=reporter.on_member,
        ),
        progress=reporter.on_progress,
        log=reporter.line,
        version=version,
        staging_name=staging_name,
    )
    reporter.line(f"Published {result.version}.")
    TrainingJob.objects.filter(pk=job.pk).update(version=result.version, gate=result.gate)
    _finish(reporter, TrainingJob.Status.DONE)


def _finish(reporter: JobReporter, status: str, *, error: str = "") -> None:
    """The final write: from running or cancelling to ``status`` (not over a job marked orphaned meanwhile)."""
    stage = {"done": "done", "cancelled": "cancelled", "failed": "failed"}[status]
    TrainingJob.objects.filter(
        pk=reporter.job_id, status__in=[TrainingJob.Status.RUNNING, TrainingJob.Status.CANCELLING]
    ).update(
        status=status,
        stage=stage,
        error=error,
        log=reporter.log_text,
        finished_at=timezone.now(),
        **{k: v for k, v in reporter.fields.items() if k != "stage"},
    )
