"""Prepare a database for use: migrate, register the model versions, and — when asked — make a curator account."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalogue.services.accounts import curator_ensure
from inference import services as model_services

DEV_CURATOR = ("curator", "curator")


class Command(BaseCommand):
    help = (
        "Migrate and register model versions (activating the shipped default). Makes a curator account only when "
        "asked: --username/--password (the password is validated) or, for `make run` alone, --dev-curator."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--username", help="Curator account (staff, Curators group) to create if missing."
        )
        parser.add_argument(
            "--password",
            help="Password for a newly created --username account; checked by the password validators.",
        )
        parser.add_argument(
            "--dev-curator",
            action="store_true",
            help="Development only (`make run`): create curator / curator, no password checks. Refused unless "
            "the settings allow it (ARTSITE_DEV_CURATOR_ALLOWED: local and test settings).",
        )
        parser.add_argument("--no-migrate", action="store_true", help="Skip running migrations.")

    def handle(self, *args: Any, **options: Any) -> None:
        account = self._account(options)
        if not options["no_migrate"]:
            call_command("migrate", interactive=False, verbosity=0)
        active = model_services.model_ensure_active()
        if active is None:
            self.stderr.write(
                self.style.WARNING("No model version found: artworks will fail until one is trained.")
            )
        else:
            self.stdout.write(f"Active model: {active.version}")
        if account is None:
            return
        user, created = curator_ensure(username=account[0], password=account[1])
        if created:
            self.stdout.write(self.style.SUCCESS(f"Created curator account “{user.get_username()}”."))
        else:
            self.stdout.write(f"Curator account “{user.get_username()}” exists (its password is unchanged).")

    def _account(self, options: dict[str, Any]) -> tuple[str, str] | None:
        """(username, password) to ensure, or None; refuses before anything is written."""
        if options["dev_curator"]:
            if not getattr(settings, "ARTSITE_DEV_CURATOR_ALLOWED", False):
                raise CommandError(
                    "--dev-curator makes a staff account with a known password: only `make run` (local settings) "
                    "may; create accounts with --username/--password or createsuperuser."
                )
            return DEV_CURATOR
        username, password = options["username"], options["password"]
        if not username and not password:
            return None
        if not (username and password):
            raise CommandError("Give both --username and --password.")
        try:
            validate_password(password)
        except ValidationError as exc:
            raise CommandError("The password is refused: " + " ".join(exc.messages)) from None
        return username, password
