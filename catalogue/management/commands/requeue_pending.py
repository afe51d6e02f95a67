"""Send pending artworks (stored while the broker was down) and those whose worker died (their claim's lease ran out)
to the workers.

The same sweep runs every few seconds in the beat (``catalogue.tasks.requeue_pending``, ``CELERY_BEAT_SCHEDULE``);
this command runs it now, e.g. right after Redis is back.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalogue.selectors.artworks import catalogue_counts
from catalogue.services.classification import artworks_requeue_pending


class Command(BaseCommand):
    help = (
        "Queue again every artwork left pending (the broker was down when it was stored) or stuck in processing "
        "(its worker died: its claim's lease ran out); the periodic sweep does the same every ARTSITE_SWEEP_SECONDS."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=int,
            default=0,
            metavar="SECONDS",
            help="Only artworks pending for at least this long (default 0: every pending artwork; the periodic "
            "sweep uses ARTSITE_PENDING_GRACE_SECONDS). Processing artworks are sent once their claim's lease ran out.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        before = catalogue_counts()
        sent = artworks_requeue_pending(pending_after_seconds=max(0, options["older_than"]))
        waiting = before["pending"] + before["processing"]
        if sent == 0 and before["pending"] > 0 and options["older_than"] == 0:
            raise CommandError(
                f"{before['pending']} artwork(s) pending but none could be sent: is the broker (Redis) reachable?"
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Sent {sent} artwork(s) to the workers ({before['pending']} pending, {before['processing']} processing "
                f"before; {waiting - sent} left as they were: still within their grace period)."
            )
        )
