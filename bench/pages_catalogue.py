"""A catalogue as a curator's pages see it, fast, for ``bench_pages``: ready works with the active version's full
predictions (probabilities, entropy and margin through :func:`catalogue.models.prediction_uncertainty`, embeddings),
1 % with a curator label, a few pending and failed, the works of a finished label check for the mislabels queue.

Rows go in as ``bench_search``'s do: binary COPY of (id, type, curator type, vector) into an unlogged staging table
(:func:`bench.pgcopy.stage_copy_payload`), a text COPY of the rest, then one INSERT ... SELECT per table. Every row
points at one of a few real image files (:func:`bench.seeding.shared_files`), so pages and thumbnails resolve.
Seeded per chunk: a larger catalogue extends a smaller one with the same rows.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import connection

from bench.pgcopy import stage_copy_payload
from bench.seeding import ARTISTS, shared_files
from catalogue.models import EMBEDDING_DIMENSIONS, Artwork, LabelCheck, MovedEmbedding, prediction_uncertainty
from catalogue.services.agreement import agreement_counts_invalidate
from catalogue.services.moved_embeddings import moved_embeddings_sync

CHUNK = 10_000
CURATED = 0.01  # share of works with a curator label (a different type than the model's)
PENDING = 0.002  # ... still waiting for the worker (no prediction)
FAILED = 0.001  # ... failed (no prediction)


@dataclass
class Anchors:
    """The model's outputs for a few varied pictures: each the centre of a cloud of catalogue rows."""

    probabilities: np.ndarray  # (anchors, classes)
    embeddings: np.ndarray  # (anchors, EMBEDDING_DIMENSIONS)
    class_type_ids: np.ndarray  # the ArtworkType id of each class


def stage_create() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_stage, bench_stage_extra")
        cursor.execute(
            "CREATE UNLOGGED TABLE bench_stage (id bigint, type_id bigint, curator_type_id bigint, "
            f"embedding vector({EMBEDDING_DIMENSIONS}))"
        )
        cursor.execute(
            "CREATE UNLOGGED TABLE bench_stage_extra (id bigint, status text, confidence float8, entropy float8, "
            "margin float8, probabilities text)"
        )


def catalogue_extend(
    *, anchors: Anchors, classes: list[str], version_id: int, start: int, stop: int, chunk: int = CHUNK
) -> None:
    """Rows ``start + 1`` .. ``stop`` (multiples of ``chunk``; a smaller one than :data:`CHUNK` only for the
    tests' tiny catalogues, whose rows then differ from the benchmark's)."""
    files = shared_files()
    for index in range(start // chunk, stop // chunk):
        _chunk_load(index, anchors, classes, version_id, files, chunk)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('catalogue_artwork', 'id'), (SELECT max(id) FROM catalogue_artwork))"
        )
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('catalogue_prediction', 'id'), "
            "(SELECT max(id) FROM catalogue_prediction))"
        )
    # The rows went in by COPY, past the services: the quality figures cached for the smaller catalogue are stale.
    agreement_counts_invalidate()
    # ... and the moved works' embeddings of the whole catalogue, at once.
    moved_embeddings_sync(artwork_ids=None)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {MovedEmbedding._meta.db_table}")


def _chunk_load(
    index: int, anchors: Anchors, classes: list[str], version_id: int, files: list[Any], chunk: int
) -> None:
    rng = np.random.default_rng([17, index])
    ids = np.arange(index * chunk + 1, (index + 1) * chunk + 1, dtype=np.int64)
    picks = rng.integers(0, len(anchors.embeddings), chunk)
    noise = rng.normal(0, 1, (chunk, EMBEDDING_DIMENSIONS)).astype(np.float32)
    vectors = anchors.embeddings[picks] + noise * (0.35 / np.sqrt(EMBEDDING_DIMENSIONS))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    probs = anchors.probabilities[picks] + rng.dirichlet(np.ones(len(classes)) * 0.5, chunk) * 0.3
    probs /= probs.sum(axis=1, keepdims=True)
    best = np.argmax(probs, axis=1)
    predicted = anchors.class_type_ids[best]
    curated = np.full(chunk, -1, dtype=np.int64)
    pick = rng.random(chunk) < CURATED
    shift = rng.integers(1, len(classes), int(pick.sum()))
    curated[pick] = anchors.class_type_ids[(best[pick] + shift) % len(classes)]
    draw = rng.random(chunk)
    status = np.where(draw < PENDING, "pending", np.where(draw < PENDING + FAILED, "failed", "ready"))
    extra = io.StringIO()
    for i in range(chunk):
        p = probs[i]
        spread = prediction_uncertainty(p)
        extra.write(
            f"{ids[i]}\t{status[i]}\t{float(p[best[i]])!r}\t{spread['entropy']!r}\t{spread['margin']!r}\t"
            f"{json.dumps({c: round(float(x), 6) for c, x in zip(classes, p, strict=True)})}\n"
        )
    extra.seek(0)
    payload = stage_copy_payload(ids, predicted, curated, vectors.astype(np.float32))
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE bench_stage, bench_stage_extra")
        cursor.cursor.copy_expert("COPY bench_stage FROM STDIN WITH (FORMAT binary)", io.BytesIO(payload))
        cursor.cursor.copy_expert("COPY bench_stage_extra FROM STDIN", extra)
        _rows_insert(cursor, files, version_id)


def _rows_insert(cursor: Any, files: list[tuple[str, str]], version_id: int) -> None:
    # created_at: three works per second, so the catalogue's order has ties for its id tie-breaker to settle.
    # Labels as an import gives them (most of a large collection's): the label check flags only unverified labels,
    # so the mislabels queue's rows (label_check_seed) are open ones, as they are after a real check.
    cursor.execute(
        """
        INSERT INTO catalogue_artwork (id, title, artist, date, accession_number, description, image, thumbnail,
            sha256, width, height, file_size, color_histogram, status, error, attempts, processed_at,
            curator_type_id, label_provenance, uploaded_by_id, created_at, updated_at, notes, claimed_by,
            phash_turns)
        SELECT s.id, 'Bench work ' || lpad(s.id::text, 7, '0'), (%(artists)s::text[])[1 + s.id %% %(n_artists)s],
            '', NULL, '', (%(images)s::text[])[1 + s.id %% %(n_files)s], (%(thumbs)s::text[])[1 + s.id %% %(n_files)s],
            lpad(to_hex(s.id), 64, '0'), 300, 320, 20000, '{}'::jsonb, e.status,
            CASE WHEN e.status = 'failed' THEN 'Bench: a damaged file' ELSE '' END, 1, now(),
            NULLIF(s.curator_type_id, -1), CASE WHEN s.curator_type_id = -1 THEN '' ELSE %(provenance)s END, NULL,
            timestamptz '2026-01-01' + (s.id / 3) * interval '1 second', now(), '', '', '{}'::bigint[]
        FROM bench_stage s JOIN bench_stage_extra e USING (id)
        """,
        {
            "artists": ARTISTS,
            "n_artists": len(ARTISTS),
            "images": [image for image, _ in files],
            "thumbs": [thumb for _, thumb in files],
            "n_files": len(files),
            "provenance": Artwork.Provenance.IMPORTED,
        },
    )
    cursor.execute(
        """
        INSERT INTO catalogue_prediction (artwork_id, model_version_id, predicted_type_id, confidence, probabilities,
            embedding, created_at, entropy, margin)
        SELECT s.id, %s, s.type_id, e.confidence, e.probabilities::jsonb, s.embedding, now(), e.entropy, e.margin
        FROM bench_stage s JOIN bench_stage_extra e USING (id) WHERE e.status = 'ready'
        """,
        [version_id],
    )


def label_check_seed() -> LabelCheck:
    """A finished label check over the labelled works, half of them flagged: the mislabels queue's rows."""
    LabelCheck.objects.all().delete()
    check = LabelCheck.objects.create(status=LabelCheck.Status.DONE, stage="bench", method={"bench": True})
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO catalogue_labelissue (check_run_id, artwork_id, label_type_id, suggested_type_id,
                label_probability, suggested_probability, probabilities, quality, flagged)
            SELECT %s, a.id, a.curator_type_id, p.predicted_type_id, 0.2, 0.7, p.probabilities,
                (a.id %% 1000) / 1000.0, a.id %% 2 = 0
            FROM catalogue_artwork a JOIN catalogue_prediction p ON p.artwork_id = a.id
            WHERE a.curator_type_id IS NOT NULL
            """,
            [check.pk],
        )
        cursor.execute(
            "UPDATE catalogue_labelcheck SET labelled = (SELECT count(*) FROM catalogue_labelissue), "
            "flagged = (SELECT count(*) FROM catalogue_labelissue WHERE flagged), finished_at = now() WHERE id = %s",
            [check.pk],
        )
    return check


def catalogue_reset() -> None:
    with connection.cursor() as cursor:
        # With CASCADE every table that points at these goes too: predictions, map points, history, near-duplicate
        # pairs. The bulk edits and work groups point at none of them, so they are named.
        cursor.execute(
            "TRUNCATE catalogue_labelissue, catalogue_labelcheck, catalogue_labelcorrection, catalogue_prediction, "
            "catalogue_artwork, catalogue_bulkedit, catalogue_workgroup RESTART IDENTITY CASCADE"
        )
    agreement_counts_invalidate()
