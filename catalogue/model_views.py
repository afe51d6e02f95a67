"""The portal's Models page: the active version and its card, what changed since it was trained, which types the
next version learns, training a new version (a background job with live progress), the gate's gold-set comparison,
and activation.

Thin views (STYLE rule 1). Everyone logged in may look; curators (``catalogue.change_artwork``) may train, cancel and
activate. The admin's Models page stays: it lists every version.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from catalogue.models import ArtworkType, TrainingJob
from catalogue.selectors.training import (
    MIN_VERIFIED_TO_LEARN,
    label_changes_since,
    training_job_latest,
    training_job_worker_alive,
    type_readiness,
)
from catalogue.services.model_rollout import model_reembed_progress
from catalogue.services.training_gate import MAX_RECALL_DROP
from catalogue.services.training_jobs import (
    TrainingJobRefused,
    training_job_activate,
    training_job_cancel,
    training_job_start,
)
from inference.models import ModelVersion
from inference.registry import ModelUnavailable
from inference.selectors import model_version_active

LOG_TAIL = 8000  # characters of the log the status endpoint sends
CARD_FIGURES = ("evaluated_on", "n", "accuracy", "macro_f1", "ece", "precision_at_5", "per_type")


def _per_type_rows(comparison: dict[str, Any], names: dict[str, str]) -> list[dict[str, Any]]:
    """One row per type of the comparison: gold works and both recalls (a version that does not know a type has
    recall 0 there; the active version's is None for a type it does not know: compared as new)."""
    new, active = comparison["new"], comparison.get("active")
    rows = []
    for slug in comparison["classes"]:
        after = new["per_type"][slug]["recall"]
        before = active["per_type"][slug]["recall"] if active and slug in active["known"] else None
        change = after - before if before is not None else None
        rows.append(
            {
                "slug": slug,
                "name": names.get(slug, slug),
                "support": new["per_type"][slug]["support"],
                "active": before,
                "new": after,
                "change_points": None if change is None else round(100 * change, 1),
                "falls": change is not None and change < -MAX_RECALL_DROP - 1e-9,
                "is_new": before is None and active is not None,
                "new_knows": slug in new["known"],
            }
        )
    return rows


def _confusion(
    metrics: dict[str, Any] | None, classes: list[str], names: dict[str, str]
) -> dict[str, Any] | None:
    if not metrics:
        return None
    return {
        "version": metrics["version"],
        "header": [names.get(slug, slug) for slug in classes],
        "rows": [
            {
                "name": names.get(slug, slug),
                "cells": [{"count": n, "diagonal": i == j} for j, n in enumerate(row)],
            }
            for i, (slug, row) in enumerate(zip(classes, metrics["confusion"], strict=True))
        ],
    }


def _job_context(job: TrainingJob | None, names: dict[str, str]) -> dict[str, Any]:
    if job is None:
        return {"job": None}
    context: dict[str, Any] = {
        "job": job,
        "job_active": job.status in TrainingJob.ACTIVE,
        # Queued with no worker yet, or running with its worker gone (the next start or cancel clears it).
        "worker_gone": job.status != TrainingJob.Status.QUEUED
        and job.status in TrainingJob.ACTIVE
        and not training_job_worker_alive(job_id=job.pk),
    }
    comparison = (job.gate or {}).get("comparison")
    if comparison and comparison.get("new"):
        classes = comparison["classes"]
        context.update(
            comparison=comparison,
            per_type=_per_type_rows(comparison, names),
            confusions=[
                c
                for c in (
                    _confusion(comparison.get("active"), classes, names),
                    _confusion(comparison["new"], classes, names),
                )
                if c
            ],
        )
    version = ModelVersion.objects.filter(version=job.version).first() if job.version else None
    context["trained_version"] = version
    if version is not None and version.status == ModelVersion.Status.EMBEDDING:
        context["reembed"] = model_reembed_progress(version=version)
    return context


@login_required
def models_page(request: HttpRequest) -> HttpResponse:
    active = model_version_active()
    names = dict(ArtworkType.objects.values_list("slug", "name"))
    job = training_job_latest()
    context = {
        "active": active,
        # Every figure the page shows, of the copy that serves; None where the card lacks it (an older card).
        "metrics": {key: (active.serving_metrics if active else {}).get(key) for key in CARD_FIGURES},
        "changes": label_changes_since(version=active),
        "types": type_readiness(active=active),
        "min_verified": MIN_VERIFIED_TO_LEARN,
        "can_train": request.user.has_perm("catalogue.change_artwork"),
        **_job_context(job, names),
    }
    return render(request, "catalogue/models.html", context)


@login_required
def training_job_status(request: HttpRequest, job_id: int) -> JsonResponse:
    """Polled by the Models page (static/js/models.js) while a job is queued or running."""
    job = get_object_or_404(TrainingJob, pk=job_id)
    return JsonResponse(
        {
            "id": job.pk,
            "status": job.status,
            "status_display": job.get_status_display(),
            "active": job.status in TrainingJob.ACTIVE,
            "stage": job.stage,
            "member": job.member,
            "members": job.members,
            "epoch": job.epoch,
            "epochs": job.epochs,
            "log": job.log[-LOG_TAIL:],
            "version": job.version,
            "error": job.error,
        }
    )


@require_POST
@login_required
@permission_required("catalogue.change_artwork", raise_exception=True)
def training_start(request: HttpRequest) -> HttpResponse:
    try:
        job = training_job_start(user=request.user)
    except TrainingJobRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Training job {job.pk} queued: it runs on the training worker.")
    return redirect("catalogue:models")


@require_POST
@login_required
@permission_required("catalogue.change_artwork", raise_exception=True)
def training_cancel(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(TrainingJob, pk=job_id)
    try:
        job = training_job_cancel(job=job)
    except TrainingJobRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.info(
            request,
            f"Training job {job.pk} cancelled."
            if job.status == TrainingJob.Status.CANCELLED
            else f"Training job {job.pk} is stopping; it publishes nothing.",
        )
    return redirect("catalogue:models")


@require_POST
@login_required
@permission_required("catalogue.change_artwork", raise_exception=True)
def training_activate(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(TrainingJob, pk=job_id)
    try:
        version = training_job_activate(job=job)
    except (TrainingJobRefused, ModelUnavailable) as exc:
        messages.error(request, str(exc))
        return redirect("catalogue:models")
    if version.is_active:
        messages.success(request, f"{version.version} is active.")
    else:
        messages.info(
            request,
            f"Re-embedding the catalogue with {version.version}; pages keep the current version until it is done, "
            "then switch.",
        )
    return redirect("catalogue:models")
