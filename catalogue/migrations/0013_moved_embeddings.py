"""The moved works' embeddings (issue 17): a small side table of the works whose curator label differs from a
version's predicted type, so that "similar works of type T" reads them compactly instead of scanning thousands of
scattered rows of the predictions table (``catalogue.models.MovedEmbedding``).

Backfilled by one INSERT ... SELECT over the labelled works (the partial index ``artwork_labelled``): fast at a million
works, since only about 1 % are labelled. The condition is the one ``moved_embeddings_sync`` compiles from
``catalogue.models.effective_type``: the label is set and is not the predicted type.
"""

import django.db.models.deletion
import pgvector.django.vector
from django.db import migrations, models


BACKFILL = """
INSERT INTO catalogue_movedembedding (artwork_id, model_version_id, predicted_type_id, embedding, artwork_type_id)
SELECT p.artwork_id, p.model_version_id, p.predicted_type_id, p.embedding, a.curator_type_id
FROM catalogue_prediction p JOIN catalogue_artwork a ON a.id = p.artwork_id
WHERE a.curator_type_id IS NOT NULL AND a.curator_type_id <> p.predicted_type_id
"""


class Migration(migrations.Migration):

    dependencies = [
        ('catalogue', '0012_map_layout'),
        ('inference', '0002_active_is_the_status'),
    ]

    operations = [
        migrations.CreateModel(
            name='MovedEmbedding',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('embedding', pgvector.django.vector.VectorField(dimensions=128)),
                ('artwork', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='catalogue.artwork')),
                ('artwork_type', models.ForeignKey(db_index=False, help_text="The curator's type (the effective one).", on_delete=django.db.models.deletion.CASCADE, related_name='+', to='catalogue.artworktype')),
                ('model_version', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='inference.modelversion')),
                ('predicted_type', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='catalogue.artworktype')),
            ],
            options={
                'indexes': [models.Index(fields=['model_version', 'artwork_type'], name='moved_embedding_type')],
                'constraints': [models.UniqueConstraint(fields=('artwork', 'model_version'), name='one_moved_embedding_per_version')],
            },
        ),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
    ]
