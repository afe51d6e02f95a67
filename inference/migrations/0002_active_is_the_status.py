"""The active version was recorded twice (``is_active`` and ``status``); the status alone says it now."""

from django.db import migrations, models


def status_from_is_active(apps, schema_editor):  # type: ignore[no-untyped-def]
    ModelVersion = apps.get_model("inference", "ModelVersion")
    ModelVersion.objects.filter(status="active", is_active=False).update(status="available")
    ModelVersion.objects.filter(is_active=True).update(status="active")


class Migration(migrations.Migration):
    dependencies = [("inference", "0001_initial")]

    operations = [
        migrations.RemoveConstraint(model_name="modelversion", name="one_active_model_version"),
        migrations.RunPython(status_from_is_active, migrations.RunPython.noop),
        migrations.RemoveField(model_name="modelversion", name="is_active"),
        migrations.AddConstraint(
            model_name="modelversion",
            constraint=models.UniqueConstraint(
                condition=models.Q(status="active"), fields=("status",), name="one_active_model_version"
            ),
        ),
    ]
