"""Prepare a database for use: migrate, register the model versions, make sure a curator can log in."""

from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from catalogue.services.accounts import curator_ensure
from inference import services as model_services


class Command(BaseCommand):
    help = "Migrate, register model versions (activating the shipped default) and ensure a curator account exists."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="curator", help="Curator account to create if missing.")
        parser.add_argument(
            "--password",
            default="curator",
            help="Password for a newly created curator account (an existing account keeps its password).",
        )
        parser.add_argument("--no-migrate", action="store_true", help="Skip running migrations.")
        parser.add_argument(
            "--no-curator",
            action="store_true",
            help="Do not create the default curator account (production: create accounts with createsuperuser).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["no_migrate"]:
            call_command("migrate", interactive=False, verbosity=0)
        active = model_services.model_ensure_active()
        if active is None:
            self.stderr.write(
                self.style.WARNING("No model version found: artworks will fail until one is trained.")
            )
        else:
            self.stdout.write(f"Active model: {active.version}")
        if options["no_curator"]:
            return
        user, created = curator_ensure(username=options["username"], password=options["password"])
        if created:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Created curator account — log in as “{user.get_username()}” with password “{options['password']}”."
                )
            )
        else:
            self.stdout.write(f"Curator account “{user.get_username()}” exists.")
