"""A million works (issue 17): entropy and margin stored on each prediction, and the indexes the pages order by.

The review queue used to compute entropy and margin from the probabilities of every row, then sort; now they are
columns (backfilled here through :func:`catalogue.models.prediction_uncertainty`, the one definition) and each of the
queue's three orders is an index. The catalogue's default order (newest first, id as tie-breaker) gets one index for
keyset pages; the labelled and the unfinished works (few, in a large catalogue) get partial indexes so that they are
counted exactly while the ready majority is estimated.

Non-atomic: the backfill commits batch by batch and the indexes are built CONCURRENTLY, so migrating a large
catalogue blocks neither uploads nor the queue.
"""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models
from psycopg2.extras import execute_values

from catalogue.models import prediction_uncertainty

BATCH = 5000


def backfill(apps, schema_editor):
    Prediction = apps.get_model("catalogue", "Prediction")
    last = 0
    while True:
        rows = list(
            Prediction.objects.filter(pk__gt=last, entropy__isnull=True)
            .order_by("pk")
            .values_list("pk", "probabilities")[:BATCH]
        )
        if not rows:
            return
        values = []
        for pk, probabilities in rows:
            spread = prediction_uncertainty((probabilities or {}).values())
            values.append((pk, spread["entropy"], spread["margin"]))
        with schema_editor.connection.cursor() as cursor:
            execute_values(
                cursor.cursor,
                "UPDATE catalogue_prediction AS p SET entropy = v.entropy, margin = v.margin "
                "FROM (VALUES %s) AS v (id, entropy, margin) WHERE p.id = v.id",
                values,
                page_size=BATCH,
            )
        last = rows[-1][0]


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("catalogue", "0008_history_near_duplicates")]

    operations = [
        migrations.AddField(
            model_name="prediction",
            name="entropy",
            field=models.FloatField(blank=True, help_text="Entropy of the probabilities (nats).", null=True),
        ),
        migrations.AddField(
            model_name="prediction",
            name="margin",
            field=models.FloatField(blank=True, help_text="Top probability minus the runner-up's.", null=True),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
        # (model_version, confidence) is the prefix of the review queue's confidence index below.
        RemoveIndexConcurrently(model_name="prediction", name="catalogue_p_model_v_585c6f_idx"),
        AddIndexConcurrently(
            model_name="artwork",
            index=models.Index(fields=["-created_at", "-id"], name="artwork_created_id"),
        ),
        AddIndexConcurrently(
            model_name="artwork",
            index=models.Index(
                condition=models.Q(("curator_type__isnull", False)),
                fields=["curator_type", "status"],
                name="artwork_labelled",
            ),
        ),
        AddIndexConcurrently(
            model_name="artwork",
            index=models.Index(
                condition=models.Q(("status", "ready"), _negated=True),
                fields=["status", "id"],
                name="artwork_unfinished",
            ),
        ),
        AddIndexConcurrently(
            model_name="prediction",
            index=models.Index(
                fields=["model_version", "confidence", "artwork"], name="prediction_review_confidence"
            ),
        ),
        AddIndexConcurrently(
            model_name="prediction",
            index=models.Index(
                models.F("model_version"),
                models.OrderBy(models.F("entropy"), descending=True, nulls_last=True),
                models.F("confidence"),
                models.F("artwork"),
                name="prediction_review_entropy",
            ),
        ),
        AddIndexConcurrently(
            model_name="prediction",
            index=models.Index(
                models.F("model_version"),
                models.OrderBy(models.F("margin"), nulls_last=True),
                models.F("confidence"),
                models.F("artwork"),
                name="prediction_review_margin",
            ),
        ),
    ]
