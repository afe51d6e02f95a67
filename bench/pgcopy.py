"""PostgreSQL's binary COPY format for ``bench_search``'s staging table, made with NumPy: a million rows of
(id, type, curator type, vector) go in within seconds."""

from __future__ import annotations

import struct

import numpy as np


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
