"""Calibrating the near-duplicate rule on real images (``make bench-near-duplicates``; the measuring is
:mod:`bench.near_duplicates`)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench.near_duplicates import (
    ALTERATIONS,
    Outcome,
    Scorer,
    alignments,
    corpus_build,
    data_duplicates,
    hash_distances,
    image_files,
    neighbour_pairs,
    product_rule,
    verified,
)
from catalogue.perceptual_hash import ALIGNMENT_MIN, EMBEDDING_NEIGHBOURS, HASH_MAX_DISTANCE
from inference.loader import configure_threads, get_classifier
from inference.registry import default_version_name

GOAL_RECALL = 0.95
GOAL_FALSE = 0.01  # share of works shown at least one false pair


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class Command(BaseCommand):
    help = (
        "Mix seeded altered copies (crop, rescale, JPEG q40, rotate 90°, greyscale, colour shift, border) into a "
        "folder of originals; compute the product's perceptual hashes and the shipped model's embeddings; print "
        "the recall of the copies and the false pairs among distinct works for a sweep of thresholds, and the rule "
        "that meets recall >= 0.95 with <= 1 % of works shown a false pair."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "folders",
            nargs="*",
            type=Path,
            default=[Path("../shared/data/art-images/train"), Path("../shared/data/art-images/val")],
            help="Folders of originals (default: ../shared/data/art-images/train and val).",
        )
        parser.add_argument("--copies", type=int, default=300, help="Altered copies to make (default 300).")
        parser.add_argument("--seed", type=int, default=18, help="Seed of the copies (default 18).")
        parser.add_argument(
            "--threads", type=int, default=None, help="Model threads (default: ARTSITE_TF_THREADS or CPUs)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        files = image_files(options["folders"])
        if not files:
            raise CommandError(f"No images under {', '.join(map(str, options['folders']))}.")
        configure_threads(options["threads"])
        console = Console(file=cast(IO[str], self.stdout), width=150)
        console.print(f"load average at start: {_load()}")
        version = default_version_name()
        if version is None:
            raise CommandError("No default model version (ARTSITE_DEFAULT_MODEL).")
        classifier = get_classifier(version)
        started = time.perf_counter()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            task = bar.add_task("decode + hash", total=len(files) + options["copies"])
            corpus = corpus_build(
                files,
                copies=options["copies"],
                seed=options["seed"],
                model_size=classifier.input_size,
                progress=lambda: bar.advance(task),
            )
        hashed = time.perf_counter() - started
        started = time.perf_counter()
        embeddings = np.concatenate(
            [
                classifier.predict_images(corpus.images[i : i + 64])[1]
                for i in range(0, len(corpus.images), 64)
            ]
        )
        corpus.images = []
        embedded = time.perf_counter() - started
        console.print(
            f"{corpus.originals} originals, {len(corpus.source)} copies; decode + 4 pHashes {hashed:.1f} s, "
            f"embeddings ({classifier.version}, {classifier.backend}) {embedded:.1f} s; load average {_load()}"
        )
        self._sweep(console, corpus, embeddings)
        console.print(f"load average at the end: {_load()}")

    def _sweep(self, console: Console, corpus: Any, embeddings: np.ndarray) -> None:
        hashes = np.array(corpus.hashes, dtype=np.int64)
        scorer = Scorer(corpus)
        plain = hash_distances(hashes, turns=False)
        turned = hash_distances(hashes, turns=True)
        similarity = embeddings @ embeddings.T
        dups = data_duplicates(corpus, turned, similarity)
        pairs = neighbour_pairs(similarity, k=2)
        started = time.perf_counter()
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console
        ) as bar:
            task = bar.add_task("alignment of neighbours", total=len(pairs))
            aligned = alignments(corpus, pairs, lambda: bar.advance(task))
        console.print(
            f"alignment of {len(pairs)} neighbour pairs: {time.perf_counter() - started:.1f} s "
            f"({1000 * (time.perf_counter() - started) / max(1, len(pairs)):.1f} ms a pair); load average {_load()}; "
            f"{int(np.triu(dups, 1).sum())} pairs of originals are the same image saved twice"
        )
        table = Table(
            title="Near-duplicate rules: recall of the altered copies, false pairs among distinct works"
        )
        for column in (
            "rule",
            "recall",
            *ALTERATIONS,
            "false pairs",
            "works with a false pair",
            "w/o data dups",
        ):
            table.add_column(column, justify="right")

        def row(name: str, candidate: np.ndarray) -> Outcome:
            outcome, strict = scorer.score(candidate, ignore=dups), scorer.score(candidate)
            table.add_row(
                name,
                f"{strict.recall:.3f}",
                *(f"{strict.recall_by_kind.get(kind, 0):.2f}" for kind in ALTERATIONS),
                str(strict.false_pairs),
                f"{strict.works_with_false_pair} ({strict.work_false_rate:.2%})",
                f"{outcome.work_false_rate:.2%}",
            )
            return strict

        for bits in (4, 10):
            row(f"pHash ≤ {bits} (no turns)", plain <= bits)
        for bits in (4, 8, 12):
            row(f"pHash ≤ {bits} (4 turns)", turned <= bits)
        for sim in (0.95, 0.99):
            row(f"cosine ≥ {sim}", similarity >= sim)

        for k in (1, 2):
            for minimum in (0.86, 0.88, 0.90, 0.92):
                for bits in (4, 6):
                    row(
                        f"pHash ≤ {bits} or top-{k} aligned ≥ {minimum}",
                        (turned <= bits) | verified(pairs, aligned, turned, k=k, minimum=minimum),
                    )
        shipped = row(
            f"[bold]shipped[/]: pHash ≤ {HASH_MAX_DISTANCE} or top-{EMBEDDING_NEIGHBOURS} aligned ≥ {ALIGNMENT_MIN}",
            product_rule(pairs, aligned, turned),
        )
        console.print(table)
        met = shipped.recall >= GOAL_RECALL and shipped.work_false_rate <= GOAL_FALSE
        console.print(
            f"shipped rule: recall {shipped.recall:.3f} ({shipped.found}/{shipped.positives}), works with a false "
            f"pair {shipped.work_false_rate:.2%} ({shipped.works_with_false_pair}/{shipped.works}), false pairs "
            f"{shipped.false_pairs} of {shipped.distinct_pairs:,} distinct pairs: goal (recall ≥ {GOAL_RECALL}, "
            f"≤ {GOAL_FALSE:.0%} of works) {'met' if met else 'NOT met'}"
        )
