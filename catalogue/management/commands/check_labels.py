"""Check the catalogue's labels now, in this process: the same label check the long-jobs worker runs (the beat starts
one by itself once enough labels changed), with a progress bar, then the summary and the most doubtful works."""

from __future__ import annotations

from typing import IO, Any, cast

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from catalogue.models import LabelCheck
from catalogue.selectors.label_checks import label_check_most_doubtful
from catalogue.services.label_checks import LabelCheckBusy, label_check_request, label_check_run
from inference.loader import configure_threads


class Command(BaseCommand):
    help = (
        "Run a label check now, in this process: out-of-fold predictions for every labelled work, confident "
        "learning flags the doubtful labels (the 'Possible mislabels' queue shows them). Refused while another "
        "check is queued or running."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--top", type=int, default=20, help="How many of the most doubtful works to list (default: 20)."
        )
        parser.add_argument(
            "--threads",
            type=int,
            default=None,
            help="TensorFlow threads (default: ARTSITE_TF_THREADS or CPUs).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        configure_threads(options["threads"])
        try:
            check = label_check_request(enqueue=False)
        except LabelCheckBusy as exc:
            raise CommandError(str(exc)) from None
        console = Console(file=cast(IO[str], self.stdout), width=140)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            task = bar.add_task("Starting", total=None)

            def show(progress: LabelCheck) -> None:
                bar.update(
                    task, description=progress.stage, completed=progress.done, total=progress.total or None
                )

            check = label_check_run(check_id=check.pk, progress=show)
        if check.status != LabelCheck.Status.DONE:
            raise CommandError(f"Label check {check.pk} failed: {check.error}")
        console.print(_doubtful_table(check, options["top"]))
        console.print(
            f"Label check {check.pk}: {check.labelled} labelled works checked, {check.flagged} flagged "
            f"(method: {check.method.get('features')}, {check.folds} folds)."
        )


def _doubtful_table(check: LabelCheck, limit: int) -> Table:
    table = Table(title=f"The {limit} most doubtful labels")
    for column in (
        "artwork",
        "title",
        "label",
        "provenance",
        "suggested",
        "p(suggested)",
        "quality",
        "flagged",
    ):
        table.add_column(column)
    for issue in label_check_most_doubtful(check=check, limit=limit):
        table.add_row(
            str(issue.artwork_id),
            issue.artwork.title[:40],
            issue.label_type.slug,
            issue.artwork.label_provenance or "-",
            issue.suggested_type.slug,
            f"{issue.suggested_probability:.2f}",
            f"{issue.quality:.3f}",
            "yes" if issue.flagged else "",
        )
    return table
