"""The embeddings of the works curators moved out of the model's type (:class:`catalogue.models.MovedEmbedding`),
kept exact: one function recomputes an artwork's rows from the truth (its label, its predictions), and every write
that changes a label or stores a prediction calls it inside its own transaction:

- a label set, confirmed or put back: ``catalogue.services.labels`` (``_label_write``, ``label_restore``), which the
  portal, the review and mislabels queues, the admin, the API, corrections files, bulk edits and their undo use;
- a prediction stored: ``classification.prediction_store`` (the workers, the bulk import, the re-embedding of a
  new version). A work given a label when it is created (``artworks.artwork_create``, the bulk import) has no
  prediction yet, so no row: its first prediction writes it (the import stores its predictions after its labels, in
  the same transaction).

Deleting an artwork or a model version deletes its rows (foreign keys). Bulk loads that write rows with COPY
(the benchmarks) call it once for the whole catalogue.
"""

from __future__ import annotations

from collections.abc import Collection

from django.db import connection, transaction
from django.db.models import F

from catalogue.models import Artwork, MovedEmbedding, Prediction, effective_type


def moved_embeddings_sync(*, artwork_ids: Collection[int] | None) -> int:
    """Recompute the moved-embedding rows of ``artwork_ids`` (None: of every artwork, for bulk loads) from their
    labels and predictions; returns how many rows they have now.

    A work has a row for each model version whose predicted type is not its effective type
    (:func:`catalogue.models.effective_type`, the one rule: a curator's label that overrules the model), holding that
    version's embedding. Three statements: the artworks locked, their rows deleted, their rows inserted again from
    one ``INSERT ... SELECT``.

    The lock (``FOR NO KEY UPDATE``, in id order as bulk edits lock) makes two writes to one work serialise here: a
    label changed while a worker stores a prediction of the work each read the other's committed row, where without
    it each could read the other's state from before and leave a row missing or stale. The label services hold the
    row already; ``prediction_store`` takes it before writing the predictions.
    """
    moved = (
        Prediction.objects.filter(artwork__curator_type__isnull=False)  # the labelled works' partial index
        .annotate(
            effective=effective_type(
                curator_type="artwork__curator_type_id", predicted_type="predicted_type_id"
            )
        )
        .exclude(effective=F("predicted_type_id"))
        .values_list("artwork_id", "model_version_id", "predicted_type_id", "embedding", "effective")
    )
    table = MovedEmbedding._meta.db_table
    with transaction.atomic():
        if artwork_ids is None:
            MovedEmbedding.objects.all().delete()
        else:
            ids = sorted({int(i) for i in artwork_ids})
            if not ids:
                return 0
            list(
                Artwork.objects.select_for_update(no_key=True)
                .filter(pk__in=ids)
                .order_by("pk")
                .values_list("pk", flat=True)
            )
            MovedEmbedding.objects.filter(artwork_id__in=ids).delete()
            moved = moved.filter(artwork_id__in=ids)
        sql, params = moved.query.sql_with_params()
        with connection.cursor() as cursor:
            # The columns by their names in the compiled SELECT, whatever order Django puts them in.
            cursor.execute(
                f"INSERT INTO {table} (artwork_id, model_version_id, predicted_type_id, embedding, artwork_type_id) "
                "SELECT s.artwork_id, s.model_version_id, s.predicted_type_id, s.embedding, s.effective "
                f"FROM ({sql}) s",
                params,
            )
            return int(cursor.rowcount)
