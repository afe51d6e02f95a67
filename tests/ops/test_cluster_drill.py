"""A small ``make cluster-drill``: two web servers, two workers and beat, each in a folder of its own, sharing only
the test's PostgreSQL, Redis and an S3 server; a worker SIGKILLed mid-batch, an import from a third process."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from catalogue.models import Artwork, Prediction

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_a_small_cluster_drill_loses_nothing_and_classifies_each_work_once(active_model, broker, s3_server):
    out = StringIO()
    call_command(
        "cluster_drill",
        uploads=6,
        imports=3,
        timeout=240,
        cold_workers=True,
        s3_endpoint=s3_server,
        stdout=out,
    )
    text = out.getvalue()
    assert "OK: every work ready exactly once, every image readable everywhere." in text, text
    assert "SIGKILLed worker-" in text and "FAIL" not in text
    # Checked again here, from the test's own view of the database.
    assert Artwork.objects.filter(status=Artwork.Status.READY).count() == 9
    assert Prediction.objects.count() == 9
    assert set(Prediction.objects.values_list("model_version", flat=True)) == {active_model.pk}
