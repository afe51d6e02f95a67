"""Activate a model version: re-embed the catalogue with it (in the background or here), then switch at once."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from catalogue.services.model_rollout import model_activate, model_reembed_batch, model_reembed_progress
from inference import registry
from inference.models import ModelVersion
from inference.services import model_versions_sync


class Command(BaseCommand):
    help = (
        "Activate a model version. Pages and the API keep using the current version while the catalogue is "
        "re-embedded with the new one; they switch when every artwork has it. Re-activating a previous version "
        "switches at once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("version", nargs="?", help="Version name (a folder in ARTSITE_MODEL_DIRS).")
        parser.add_argument(
            "--list", action="store_true", help="List the versions and their metrics, then exit."
        )
        parser.add_argument(
            "--here",
            action="store_true",
            help="Re-embed in this process instead of by the Celery workers (no worker needed).",
        )
        parser.add_argument(
            "--no-wait",
            action="store_true",
            help="Queue the re-embedding and return without showing progress.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        model_versions_sync()
        if options["list"] or not options["version"]:
            self._list()
            return
        try:
            version = ModelVersion.objects.get(version=options["version"])
            registry.find_version(version.version)
        except (ModelVersion.DoesNotExist, registry.ModelNotFound):
            known = ", ".join(ModelVersion.objects.values_list("version", flat=True)) or "none"
            raise CommandError(f"Unknown model version {options['version']!r}. Known: {known}.") from None

        try:
            version = model_activate(version=version, enqueue=not options["here"])
        except registry.ModelUnavailable as exc:  # e.g. no model.tflite with a passing check: it cannot serve
            raise CommandError(str(exc)) from None
        if version.is_active:
            self.stdout.write(self.style.SUCCESS(f"{version.version} is active."))
            return
        if options["no_wait"] and not options["here"]:
            self.stdout.write(f"Re-embedding with {version.version} queued; it becomes active when done.")
            return
        self._follow(version, here=options["here"])

    def _follow(self, version: ModelVersion, *, here: bool) -> None:
        started = time.monotonic()
        progress = model_reembed_progress(version=version)
        columns = (TextColumn("re-embedding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns) as bar:
            task = bar.add_task("embed", total=progress.total, completed=progress.done)
            while True:
                progress = (
                    model_reembed_batch(version=version) if here else model_reembed_progress(version=version)
                )
                bar.update(task, total=progress.total, completed=progress.done)
                version.refresh_from_db()
                if version.is_active or version.status != ModelVersion.Status.EMBEDDING:
                    break
                if not here:
                    time.sleep(1.0)
        elapsed = time.monotonic() - started
        if version.is_active:
            self.stdout.write(
                self.style.SUCCESS(
                    f"{version.version} is active: {progress.total} artworks embedded in {elapsed:.1f}s."
                )
            )
        else:
            self.stdout.write(
                self.style.WARNING(f"Activation of {version.version} was superseded by another version.")
            )

    def _list(self) -> None:
        for version in ModelVersion.objects.order_by("-created_at"):
            metrics = version.metrics
            marker = "*" if version.is_active else " "
            accuracy = metrics.get("accuracy")
            self.stdout.write(
                f"{marker} {version.version:40} {version.status:10} "
                f"accuracy={accuracy if accuracy is None else f'{accuracy:.3f}'} "
                f"predictions={version.predictions.count()}"
            )
