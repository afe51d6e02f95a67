"""Synthetic catalogues for ``bench_search`` and ``bench_map``, loaded past the services: PostgreSQL's binary COPY
format for a staging table, made with NumPy (a million rows of (id, type, curator type, vector) go in within
seconds), then the catalogue's rows from it in two INSERT ... SELECT."""

from __future__ import annotations

import io
import struct
from typing import Any

import numpy as np

from catalogue.models import EMBEDDING_DIMENSIONS, Artwork


def stage_create(cursor: Any) -> None:
    """The staging table, empty."""
    cursor.execute("DROP TABLE IF EXISTS bench_stage")
    cursor.execute(
        "CREATE UNLOGGED TABLE bench_stage (id bigint, type_id bigint, curator_type_id bigint, "
        f"embedding vector({EMBEDDING_DIMENSIONS}))"
    )


def stage_load(
    cursor: Any,
    *,
    ids: np.ndarray,
    types: np.ndarray,
    curated: np.ndarray,
    vectors: np.ndarray,
    version_id: int,
    provenance: str,
) -> None:
    """One chunk of ready works with a prediction of ``version_id`` each; ``curated``: the curator's type or -1
    (labels of ``provenance``)."""
    payload = stage_copy_payload(ids, types, curated, vectors.astype(np.float32))
    cursor.execute("TRUNCATE bench_stage")
    cursor.cursor.copy_expert("COPY bench_stage FROM STDIN WITH (FORMAT binary)", io.BytesIO(payload))
    cursor.execute(
        """
        INSERT INTO catalogue_artwork (id, title, artist, date, accession_number, description, image, thumbnail,
            sha256, width, height, file_size, color_histogram, status, error, attempts, processed_at,
            curator_type_id, label_provenance, uploaded_by_id, created_at, updated_at, notes, claimed_by,
            phash_turns)
        SELECT id, 'Bench work ' || id, '', '', NULL, '', 'bench/' || id || '.jpg', '', lpad(to_hex(id), 64, '0'),
            224, 224, 0, '{}'::jsonb, %s, '', 1, now(), NULLIF(curator_type_id, -1),
            CASE WHEN curator_type_id = -1 THEN '' ELSE %s END, NULL, now(), now(), '', '', '{}'::bigint[]
        FROM bench_stage
        """,
        [Artwork.Status.READY, provenance],
    )
    cursor.execute(
        """
        INSERT INTO catalogue_prediction (artwork_id, model_version_id, predicted_type_id, confidence,
            probabilities, embedding, created_at)
        SELECT id, %s, type_id, 0.9, '{}'::jsonb, embedding, now() FROM bench_stage
        """,
        [version_id],
    )


def stage_copy_payload(ids: np.ndarray, types: np.ndarray, curated: np.ndarray, vectors: np.ndarray) -> bytes:
    """The rows as a binary COPY stream for ``bench_stage (id, type_id, curator_type_id, embedding)``: pgvector's
    binary form is int16 dim, int16 unused, big-endian float4s. ``curated`` is -1 where there is no curator type."""
    n, dim = vectors.shape
    record = np.dtype(
        [
            ("fields", ">i2"),
            ("l_id", ">i4"),
            ("id", ">i8"),
            ("l_type", ">i4"),
            ("type", ">i8"),
            ("l_cur", ">i4"),
            ("cur", ">i8"),
            ("l_vec", ">i4"),
            ("dim", ">i2"),
            ("unused", ">i2"),
            ("vec", ">f4", (dim,)),
        ]
    )
    rows = np.zeros(n, dtype=record)
    rows["fields"], rows["l_id"], rows["id"] = 4, 8, ids
    rows["l_type"], rows["type"] = 8, types
    rows["l_cur"], rows["cur"] = 8, curated
    rows["l_vec"], rows["dim"], rows["vec"] = 4 + 4 * dim, dim, vectors
    # A NULL curator type is a field of length -1 with no bytes: write -1 ids, and turn them into NULL in SQL.
    return b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0) + rows.tobytes() + struct.pack(">h", -1)
