"""Write the curators' label decisions to a reviewed corrections file, or apply such a file to the catalogue.

The file is CSV with a header: ``sha256,title,old_type,new_type,decision,note`` (``title`` and ``old_type`` are for
the reader; ``sha256`` finds the artwork, ``new_type`` is its label). A model shipped from relabelled data names its
file, so anyone can rebuild it: import the images, apply the file, train from the catalogue.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalogue.models import LabelCorrection
from catalogue.selectors.label_history import label_decisions
from catalogue.services.labels import label_decisions_apply

COLUMNS = ("sha256", "title", "old_type", "new_type", "decision", "note")


class Command(BaseCommand):
    help = (
        "export FILE: write every label a curator set or confirmed (old and new type, note) as CSV. "
        "apply FILE: give each artwork named by sha256 the file's new_type, audited with source 'file'."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "action", choices=("export", "apply"), help="export the decisions, or apply a file."
        )
        parser.add_argument("file", type=Path, help="The CSV file to write (export) or read (apply).")
        parser.add_argument(
            "--source",
            action="append",
            choices=[s for s in LabelCorrection.Source.values if s != "import"],
            help="export: only decisions last made there (repeatable; default: everywhere but the import).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "export":
            self._export(options["file"], options["source"])
        else:
            self._apply(options["file"])

    def _export(self, path: Path, sources: list[str] | None) -> None:
        decisions = label_decisions(sources=sources)
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            for d in decisions:
                writer.writerow([d.sha256, d.title, d.old_type, d.new_type, d.decision, d.note])
        changed = sum(d.decision == "changed" for d in decisions)
        self.stdout.write(
            self.style.SUCCESS(
                f"Wrote {len(decisions)} decisions to {path}: {changed} changed, {len(decisions) - changed} confirmed."
            )
        )

    def _apply(self, path: Path) -> None:
        try:
            with path.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                missing = {"sha256", "new_type"} - set(reader.fieldnames or ())
                if missing:
                    raise CommandError(f"{path} lacks the column(s) {', '.join(sorted(missing))}.")
                rows = [
                    (r["sha256"].strip(), r["new_type"].strip(), (r.get("note") or "").strip())
                    for r in reader
                ]
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise CommandError(f"Cannot read {path}: {exc}") from exc
        result = label_decisions_apply(decisions=rows, source=LabelCorrection.Source.FILE)
        self.stdout.write(
            self.style.SUCCESS(
                f"{len(rows)} rows: {result.changed} labels changed, {result.confirmed} confirmed, "
                f"{result.unchanged} already so; {len(result.missing)} artworks not in the catalogue, "
                f"{len(result.unknown_types)} rows with an unknown type."
            )
        )
        for slug in sorted(set(result.unknown_types)):
            self.stderr.write(f"unknown type: {slug}")
