"""Compute a model version's collection map now, in this process (or queue it for the worker with --queue): the
same layout the worker computes when a version becomes active or a curator asks for it on the map page."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from catalogue.services.maps import EmbeddingsIncomplete, map_layout_compute, map_layout_request
from inference.models import ModelVersion
from inference.selectors import model_version_active


class Command(BaseCommand):
    help = (
        "Compute the collection map of a model version (default: the active one): two principal axes fitted on a "
        "sample of its embeddings, and every work it classified placed along them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("version", nargs="?", help="The model version (default: the active version).")
        parser.add_argument(
            "--queue", action="store_true", help="Send it to the worker instead of computing it here."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["version"]
        version = ModelVersion.objects.filter(version=name).first() if name else model_version_active()
        if version is None:
            raise CommandError(f"No model version {name!r}." if name else "No model version is active.")
        if options["queue"]:
            with transaction.atomic():
                map_layout_request(version=version, force=True)
            self.stdout.write(f"Queued the map layout of {version.version}.")
            return
        try:
            layout = map_layout_compute(version=version)
        except EmbeddingsIncomplete:
            raise CommandError(
                f"{version.version} is still re-embedding the catalogue; try when it is active."
            ) from None
        variance = " and ".join(f"{share:.1%}" for share in layout.explained_variance)
        self.stdout.write(
            f"Map layout of {version.version}: {layout.placed:,} works placed in {layout.seconds:.1f} s "
            f"(axes fitted on {layout.sample_size:,} embeddings; {variance} of the variance)."
        )
