"""Check a version's serving copy against its Keras model (``manage.py check_model [VERSION] [--record]``)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.registry import ModelUnavailable, default_version_name
from inference.services import model_version_check


class Command(BaseCommand):
    help = (
        "Load a version's model.tflite (through ai-edge-litert, as serving does) and its model.keras (through "
        "TensorFlow: needs requirements-training.txt), compare their calibrated probabilities and embeddings on "
        "the verification images and report the figures against the card's limits. A version serves only with a "
        "passing check on its card: --record puts this one there. Exits non-zero when the check fails."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "version",
            nargs="?",
            default=None,
            help="Version to check (default: ARTSITE_DEFAULT_MODEL, else inference/weights/DEFAULT).",
        )
        parser.add_argument(
            "--record",
            action="store_true",
            help="Write the result onto the version's card (card.json 'serving.check', MODEL_CARD.md).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        version = options["version"] or default_version_name()
        if not version:
            raise CommandError("No version given and no default version.")
        try:
            check = model_version_check(version=version, record=options["record"])
        except ModelUnavailable as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"{version}: model.tflite ({check['runtime']}) against model.keras on {check['inputs']}\n"
            f"  top-1 agreement             {check['top1_agreement']:.3f}\n"
            f"  largest probability diff    {check['max_probability_diff']:.4f}  (limit "
            f"{check['max_probability_diff_limit']})\n"
            f"  smallest embedding cosine   {check['min_embedding_cosine']:.4f}  (limit "
            f"{check['min_embedding_cosine_limit']})"
        )
        if options["record"]:
            self.stdout.write("  recorded on the card (card.json serving.check, MODEL_CARD.md)")
        if not check["passed"]:
            raise CommandError(f"{version}: the TFLite copy fails its check; it cannot be activated.")
        self.stdout.write(self.style.SUCCESS(f"{version}: passed"))
