"""One partial HNSW index per artwork type (``WHERE predicted_type_id = <type>``), next to the global one.

Why: pgvector 0.6 (the embedded PostgreSQL) has no iterative index scan. "Similar works of type T" through the global
index gets ef_search candidates and filters them afterwards; when T is rare among a work's neighbours, none may
pass and the selector must scan the whole type exactly (hundreds of milliseconds at a million works). A partial
index per type hands out only works of that type, so the filtered search stays an index search
(``catalogue.selectors.embedding_nearest``; figures in ``make bench-search``).

The type ids are read when the migration runs (the five types are seeded by 0002). Built CONCURRENTLY, so migrating
a large catalogue does not block uploads; hence a non-atomic migration.
"""

from django.db import migrations

M = 16
EF_CONSTRUCTION = 64


def index_name(slug: str) -> str:
    return f"prediction_hnsw_{slug}"[:63]


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    ArtworkType = apps.get_model("catalogue", "ArtworkType")
    for artwork_type in ArtworkType.objects.all():
        schema_editor.execute(
            f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{index_name(artwork_type.slug)}" ON catalogue_prediction '
            f"USING hnsw (embedding vector_cosine_ops) WITH (m = {M}, ef_construction = {EF_CONSTRUCTION}) "
            f"WHERE predicted_type_id = {int(artwork_type.pk)}"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    ArtworkType = apps.get_model("catalogue", "ArtworkType")
    for artwork_type in ArtworkType.objects.all():
        schema_editor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{index_name(artwork_type.slug)}"')


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("catalogue", "0002_seed_types_and_groups")]

    operations = [migrations.RunPython(create, drop)]
