from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("catalogue", "0010_search")]

    operations = [
        migrations.AddField(
            model_name="artwork",
            name="claimed_by",
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.AddField(
            model_name="artwork",
            name="claim_expires_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
